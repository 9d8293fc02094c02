"""The benches/apply workload for pyinfra (see workload.site and README.md).

Run by run.sh as `pyinfra -y INVENTORY pyinfra_deploy.py`; the inventory
names the hosts h1..hN with `ssh_hostname` set to each host's address.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

HERE = Path(__file__).parent

UNIT = """\
[Unit]
Description=benches/apply workload: a static web server
After=network.target

[Service]
User=bench
ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/bench/www
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

server.user(
    name="bench user",
    user="bench",
    system=True,
    home="/srv/bench",
    shell="/usr/sbin/nologin",
    create_home=False,
)

for path, mode in (("/srv/bench", "755"), ("/srv/bench/www", "755"), ("/srv/bench/conf", "750")):
    files.directory(name=f"directory {path}", path=path, user="bench", group="bench", mode=mode)

changes = []
for n in range(1, 11):
    changes.append(
        files.template(
            name=f"page {n:02d}",
            src=str(HERE / "page.html.j2"),
            dest=f"/srv/bench/www/page{n:02d}.html",
            user="root",
            group="root",
            mode="644",
            bench_host=host.name,
            bench_address=host.data.ssh_hostname,
            bench_n=f"{n:02d}",
        )
    )

changes.append(
    files.put(
        name="bench-web unit",
        src=StringIO(UNIT),
        dest="/etc/systemd/system/bench-web.service",
        mode="644",
    )
)

systemd.service(name="bench-web running and enabled", service="bench-web", running=True, enabled=True)
systemd.service(
    name="restart bench-web when its files changed",
    service="bench-web",
    restarted=True,
    daemon_reload=True,
    _if=any_changed(*changes),
)
