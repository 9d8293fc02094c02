//! Generates realistic specs of any size for the benchmarks: three
//! providers, `hosts` hosts (balancers, runners, database hosts), and `apps`
//! apps, each with domains, settings, static files, databases and a worker.

/// The sizes a benchmark runs: all of them under `cargo bench` (which passes
/// `--bench`), the first alone when `cargo test --all-targets` runs the
/// benchmark once to see that it works. The code measured is the same at
/// every size, and an unoptimized build of the largest takes minutes.
/// (src/expand's tests include this file for `spec` alone.)
#[allow(dead_code)]
pub fn sizes(all: &[(usize, usize)]) -> &[(usize, usize)] {
    if std::env::args().any(|arg| arg == "--bench") {
        all
    } else {
        &all[..1]
    }
}

pub fn spec(hosts: usize, apps: usize) -> String {
    let mut out = String::from("use std/platform\n\nprovider colo { user = \"root\" }\nprovider linode { user = \"root\" }\nprovider ec2 { user = \"admin\" }\n\n");
    let providers = ["colo", "linode", "ec2"];
    let databases = (hosts / 10).max(2);
    for n in 0..hosts {
        let provider = providers[n % 3];
        let roles = match n % 10 {
            0 | 1 => "[balancer]",
            2 => "[postgres, redis]",
            _ => "[runner]",
        };
        out.push_str(&format!(
            "host h{n} {{ provider = {provider}  address = \"10.{}.{}.{}\"  roles = {roles} }}\n",
            n / 65536,
            (n / 256) % 256,
            n % 256
        ));
    }
    out.push_str("\nsettings base {\n  DEBUG = false\n  TIME_ZONE = \"UTC\"\n}\n\n");
    // Database hosts are h2, h12, h22, ...; they pair up (h2 with h12, h22
    // with h32, ...) so no host is both primary and standby of a cluster.
    let pairs = (hosts / 20).max(1);
    for d in 0..databases {
        let pair = d % pairs;
        let primary = (pair * 20 + 2) % hosts;
        let standby = (pair * 20 + 12) % hosts;
        out.push_str(&format!(
            "database db{d} {{ engine = postgres  primary = h{primary}  standby = h{standby} }}\n"
        ));
    }
    for a in 0..apps {
        let db = a % databases;
        out.push_str(&format!(
            r#"
# App number {a}.
app app{a} {{
  source = "apps/app{a}"
  python = "3.11"
  wsgi = "app{a}.wsgi:application"
  domains = ["app{a}.example.com", "www.app{a}.example.com"]
  replicas = 2
  paths = [".", "apps"]
  max_body = 10MB
  static "/static/" = "collected_static"
  databases {{ default = db{db} }}
  settings {{
    SITE_TITLE = "App {a}"
    SECRET_KEY = secret("app{a}.secret_key")
    CACHE_TIMEOUT = 300
  }}
  worker celery {{ command = "celery -A app{a} worker" }}
}}
"#
        ));
    }
    out
}
