//! Every template under `templates/` renders each of its sample contexts under
//! `tests/template_contexts/TEMPLATE/*.json` in handlebars strict mode, and the
//! program that reads the rendered file accepts it: `nginx -t`, `systemd-analyze
//! verify`, `python3` (compile, then run), a real `postgres` started on the
//! config (and a standby that streams from the primary sample), a real
//! `pg_hba.conf` loaded without errors, a real `redis-server` answering `PING`
//! (and a replica that links to the primary sample). Nothing is skipped: a
//! missing program fails with the `apt-get` line that installs it.
//!
//! The contexts are also checked against `templates/README.md`: every field a
//! sample has is documented there, and every documented field is in every
//! sample.
//!
//! Sample contexts name production paths (`/srv/sitec/...`, `/var/lib/...`). The
//! test moves every such path under a scratch directory (see `common::RELOCATED`), so
//! each rendered file points at a tree this test owns and deletes.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    eventually, relocate, repo, require_root, run, walk, Postgres, Redis, Running, Scratch,
};
use handlebars::Handlebars;
use serde_json::Value;

/// The program that checks a rendered template, chosen by the template's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checker {
    Nginx,
    Systemd,
    Python,
    PostgresConf,
    PostgresHba,
    /// The roles script: run twice by psql against a real server.
    PostgresRoles,
    Redis,
    /// sitec's own TOML configs: parsed as TOML, the agent's also by
    /// `sitec agent --check`.
    Toml,
    /// Shell scripts: `bash -n` and `shellcheck`.
    Shell,
    /// `authorized_keys`: `ssh-keygen -l` lists every key.
    AuthorizedKeys,
    /// A private key: `ssh-keygen -y` reads it (header left out).
    SshKey,
    /// An sshd config: `sshd -t`.
    Sshd,
    /// A TLS certificate or key (PEM): `openssl x509` or `openssl pkey`
    /// reads it, header and all.
    Pem,
    /// An environment file: `sh` reads it (as `manage.sh` does) to exactly
    /// the values systemd reads (quotes gone, `\` `"` `` ` `` `$` unescaped).
    Environment,
    /// A bus key: `sitec agent --check` reads it as the agent's key file.
    BusKey,
    /// A logrotate config: `logrotate -f` rotates a log in each of its
    /// folders, the app's own as the app's user (`su`).
    Logrotate,
    /// A polkit rule: loaded by a real polkitd (on a bus of its own), which
    /// `pkcheck` asks for each unit and verb.
    Polkit,
    /// A tmpfiles.d file: `systemd-tmpfiles --create` in a scratch root.
    Tmpfiles,
}

fn checker(template: &str) -> Option<Checker> {
    if template.starts_with("runner/nginx") {
        Some(Checker::Nginx)
    } else if (template.starts_with("systemd/") || template.starts_with("backup/"))
        && [".service", ".timer", ".socket", ".mount"]
            .iter()
            .any(|s| template.ends_with(s))
    {
        Some(Checker::Systemd)
    } else if template.ends_with(".sh") {
        Some(Checker::Shell)
    } else if template == "backup/authorized_keys" {
        Some(Checker::AuthorizedKeys)
    } else if template == "backup/ssh-key" {
        Some(Checker::SshKey)
    } else if template.starts_with("balancer/tls.")
        || template.starts_with("tls/")
        || (template.starts_with("gluster/") && !template.ends_with(".sh"))
    {
        Some(Checker::Pem)
    } else if template.starts_with("bus/") && template.ends_with(".key") {
        Some(Checker::BusKey)
    } else if template == "backup/sshd.conf" {
        Some(Checker::Sshd)
    } else if template.ends_with(".py") {
        Some(Checker::Python)
    } else if template == "postgres/postgresql.conf" {
        Some(Checker::PostgresConf)
    } else if template == "postgres/pg_hba.conf" {
        Some(Checker::PostgresHba)
    } else if template == "postgres/roles.sql" {
        Some(Checker::PostgresRoles)
    } else if template.starts_with("redis/") {
        Some(Checker::Redis)
    } else if template.ends_with(".toml") {
        Some(Checker::Toml)
    } else if template == "runner/environment" {
        Some(Checker::Environment)
    } else if template == "runner/logrotate" {
        Some(Checker::Logrotate)
    } else if template.ends_with(".rules") {
        Some(Checker::Polkit)
    } else if template == "polkit/tmpfiles.conf" {
        Some(Checker::Tmpfiles)
    } else {
        None
    }
}

/// Template names: paths below `templates/` without `.hbs` (`runner/nginx-app.conf`).
fn templates() -> Vec<String> {
    walk(&repo().join("templates"), ".hbs")
        .into_iter()
        .map(|t| t.trim_end_matches(".hbs").to_owned())
        .collect()
}

struct Sample {
    template: String,
    name: String,
    context: Value,
}

impl Sample {
    fn label(&self) -> String {
        format!("{} with {}.json", self.template, self.name)
    }
}

fn samples(template: &str) -> Vec<Sample> {
    let dir = repo().join("tests/template_contexts").join(template);
    if !dir.is_dir() {
        return Vec::new();
    }
    walk(&dir, ".json")
        .into_iter()
        .map(|file| {
            let path = dir.join(&file);
            let text = fs::read_to_string(&path).expect("sample context readable");
            let context = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            Sample {
                template: template.to_owned(),
                name: file.trim_end_matches(".json").to_owned(),
                context,
            }
        })
        .collect()
}

/// Every sample of every template `which` checks.
fn samples_for(which: Checker) -> Vec<Sample> {
    templates()
        .iter()
        .filter(|t| checker(t) == Some(which))
        .flat_map(|t| samples(t))
        .collect()
}

fn render(template: &str, context: &Value) -> Result<String, String> {
    let path = repo().join("templates").join(format!("{template}.hbs"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_template_string(template, text)
        .map_err(|e| format!("{template}: {e}"))?;
    hb.render(template, context)
        .map_err(|e| format!("{template}: {e}"))
}

/// Renders `sample` with its paths moved below `root`.
fn render_relocated(sample: &Sample, root: &Path) -> Result<(Value, String), String> {
    let mut context = sample.context.clone();
    relocate(&mut context, root);
    move_ports(&mut context);
    let text = render(&sample.template, &context)?;
    Ok((context, text))
}

/// Moves every `port` and `primary_port` of a context to `moved_port`.
fn move_ports(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(move_ports),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v.as_u64() {
                    Some(port) if key == "port" || key == "primary_port" => {
                        *v = Value::from(moved_port(port));
                    }
                    _ => move_ports(v),
                }
            }
        }
        _ => {}
    }
}

/// The loopback port this run uses for a sample's port (postgres
/// 15432-15433, redis 16379-16380, the pg_hba and roles checks' 15434 and
/// 15435): a `common::free_port` per port, the same each time it is asked,
/// so a replica's `primary_port` still finds its primary. Two runs of this
/// test (two checkouts, CI beside a developer) never meet on one.
fn moved_port(port: u64) -> u64 {
    static MOVED: std::sync::Mutex<std::collections::BTreeMap<u64, u16>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut moved = MOVED.lock().unwrap_or_else(|e| e.into_inner());
    u64::from(*moved.entry(port).or_insert_with(common::free_port))
}

fn field<'a>(context: &'a Value, name: &str) -> &'a str {
    context[name]
        .as_str()
        .unwrap_or_else(|| panic!("context field `{name}` is not a string"))
}

fn port(context: &Value, name: &str) -> u64 {
    context[name]
        .as_u64()
        .unwrap_or_else(|| panic!("context field `{name}` is not a number"))
}

/// Runs every sample through `check`, then fails once with every failure.
fn check_all(which: Checker, mut check: impl FnMut(&Sample) -> Result<(), String>) {
    let samples = samples_for(which);
    assert!(!samples.is_empty(), "no template is checked by {which:?}");
    let mut failures = String::new();
    for sample in &samples {
        if let Err(e) = check(sample) {
            let _ = writeln!(failures, "--- {}:\n{e}\n", sample.label());
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn every_template_has_samples_a_checker_and_a_header() {
    let templates = templates();
    assert!(!templates.is_empty(), "no templates under templates/");
    let mut failures = Vec::new();
    for template in &templates {
        if checker(template).is_none() {
            failures.push(format!(
                "{template}: no program checks it (add a Checker in tests/templates.rs)"
            ));
        }
        let samples = samples(template);
        if samples.is_empty() {
            failures.push(format!(
                "{template}: no sample context (add tests/template_contexts/{template}/NAME.json)"
            ));
        }
        for sample in samples {
            match render(template, &sample.context) {
                Err(e) => failures.push(format!("{}: {e}", sample.label())),
                Ok(text) => {
                    let origin = field(&sample.context, "origin");
                    // A script's `#!` line stands before the header.
                    let head: Vec<&str> = (text.lines())
                        .skip_while(|l| l.starts_with("#!"))
                        .take(3)
                        .collect();
                    let comment = if template.ends_with(".sql") {
                        "--"
                    } else if template.ends_with(".rules") {
                        "//"
                    } else {
                        "#"
                    };
                    let first = format!("{comment} Generated by sitec from {origin}");
                    if !head.first().is_some_and(|l| l.starts_with(&first))
                        || !head.iter().any(|l| l.contains("do not edit by hand"))
                    {
                        failures.push(format!(
                            "{}: must open with `{first}` and say `do not edit by hand`",
                            sample.label()
                        ));
                    }
                }
            }
        }
    }
    // A context folder whose template is gone is a stale sample.
    for file in walk(&repo().join("tests/template_contexts"), ".json") {
        let template = Path::new(&file).parent().expect("in a folder");
        if !templates.iter().any(|t| Path::new(t) == template) {
            failures.push(format!(
                "tests/template_contexts/{file}: no template templates/{}.hbs",
                template.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_context_field_is_needed() {
    // Strict mode turns a missing field into an error: removing any top-level
    // field of a sample must break its rendering, or the field is documented
    // but unused.
    let mut failures = Vec::new();
    for template in templates() {
        let text = fs::read_to_string(repo().join("templates").join(format!("{template}.hbs")))
            .expect("template readable");
        for sample in samples(&template) {
            let Value::Object(map) = &sample.context else {
                failures.push(format!("{}: not a JSON object", sample.label()));
                continue;
            };
            for key in map.keys() {
                let mut smaller = map.clone();
                smaller.remove(key);
                // `{{#if}}` treats a missing field as false even in strict mode:
                // such fields are checked against templates/README.md instead.
                let optional = text.contains(&format!("{{{{#if {key}}}}}"));
                if !optional && render(&template, &Value::Object(smaller)).is_ok() {
                    failures.push(format!("{}: renders without `{key}`", sample.label()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_hop_waits_longer_than_its_client() {
    // The balancer drops idle backend connections after
    // `balancer_idle_timeout_seconds`; nginx and gunicorn must keep them longer,
    // or a request can be sent on a connection the server is closing.
    for template in templates() {
        for sample in samples(&template) {
            let c = &sample.context;
            if let (Some(idle), Some(keep)) = (
                c["balancer_idle_timeout_seconds"].as_u64(),
                c["keepalive_seconds"].as_u64(),
            ) {
                assert!(
                    keep > idle,
                    "{}: keepalive_seconds {keep} must exceed balancer_idle_timeout_seconds {idle}",
                    sample.label()
                );
            }
        }
    }
}

#[test]
fn nginx_accepts_every_vhost() {
    if !require_root("nginx -t opens its pid and log files as root") {
        return;
    }
    check_all(Checker::Nginx, |sample| {
        let scratch = Scratch::new("nginx");
        let dir = scratch.path();
        let (context, text) = render_relocated(sample, dir)?;
        for log in ["access_log", "error_log"] {
            let folder = Path::new(field(&context, log)).parent().unwrap_or(dir);
            fs::create_dir_all(folder).map_err(|e| e.to_string())?;
        }
        fs::write(dir.join("site.conf"), text).map_err(|e| e.to_string())?;
        common::nginx_test(dir, &[dir.join("site.conf")])
    });
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    check_all(Checker::Systemd, |sample| {
        let scratch = Scratch::new("systemd");
        let dir = scratch.path();
        let (_, text) = render_relocated(sample, dir)?;
        // The programs the context placed under the scratch tree become stubs.
        common::stub_unit_programs(&text, dir)?;
        let name = Path::new(&sample.template)
            .file_name()
            .expect("template file name");
        // A mount unit is named after its `Where=` (relocated here).
        let unit = match text.lines().find_map(|l| l.strip_prefix("Where=")) {
            Some(place) if sample.template.ends_with(".mount") => dir.join(format!(
                "{}.mount",
                sitec::model::volumes::mount_unit(place)
            )),
            _ => dir.join(name),
        };
        fs::write(&unit, &text).map_err(|e| e.to_string())?;
        let mut units = vec![unit];
        // A socket that accepts connections starts its service's template
        // (`X.socket` -> `X@.service`), rendered from the same-named sample.
        if let Some(stem) = sample.template.strip_suffix(".socket") {
            let service = samples(&format!("{stem}.service"))
                .into_iter()
                .find(|s| s.name == sample.name)
                .ok_or_else(|| format!("no sample {stem}.service/{}.json", sample.name))?;
            let (_, text) = render_relocated(&service, dir)?;
            common::stub_unit_programs(&text, dir)?;
            let file_name = Path::new(stem).file_name().expect("stem");
            let template = dir.join(format!("{}@.service", file_name.to_string_lossy()));
            fs::write(&template, text).map_err(|e| e.to_string())?;
            units.push(template);
        }
        common::verify_units(&units)
    });
}

#[test]
fn shell_scripts_pass_bash_and_shellcheck() {
    check_all(Checker::Shell, |sample| {
        let scratch = Scratch::new("shell");
        let (_, text) = render_relocated(sample, scratch.path())?;
        let script = scratch.path().join("script.sh");
        fs::write(&script, text).map_err(|e| e.to_string())?;
        common::shell_check(&[script])
    });
}

/// What systemd makes of a double-quoted `EnvironmentFile=` value: the
/// quotes gone, a backslash before `\` `"` `` ` `` `$` dropped, any other
/// kept (systemd's `SHELL_NEED_ESCAPE`).
fn systemd_value(quoted: &str) -> String {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(next)) if "\\\"`$".contains(*next) => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn sh_reads_every_environment_file_as_systemd_does() {
    check_all(Checker::Environment, |sample| {
        let scratch = Scratch::new("environment");
        let text = render(&sample.template, &sample.context)?;
        let file = scratch.path().join("environment");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        let read = std::process::Command::new("sh")
            .env_clear()
            .args(["-c", "set -a; . \"$1\"; set +a; env -0", "sh"])
            .arg(&file)
            .output()
            .map_err(|e| e.to_string())?;
        if !read.status.success() {
            return Err(format!(
                "sh cannot read it: {}",
                String::from_utf8_lossy(&read.stderr)
            ));
        }
        let got = String::from_utf8_lossy(&read.stdout).into_owned();
        for variable in sample.context["variables"].as_array().into_iter().flatten() {
            let name = field(variable, "name");
            let want = systemd_value(field(variable, "value"));
            if !got.split('\0').any(|line| line == format!("{name}={want}")) {
                return Err(format!("sh read {name} differently from `{want}`: {got:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn ssh_keygen_reads_every_key() {
    check_all(Checker::AuthorizedKeys, |sample| {
        let scratch = Scratch::new("authorized-keys");
        let text = render(&sample.template, &sample.context)?;
        let file = scratch.path().join("authorized_keys");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        let keys = sample.context["keys"].as_array().map_or(0, Vec::len);
        common::authorized_keys_check(&file, keys)
    });
    check_all(Checker::SshKey, |sample| {
        let scratch = Scratch::new("ssh-key");
        let text = render(&sample.template, &sample.context)?;
        let file = scratch.path().join("key");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        common::private_key_check(&file, scratch.path()).map(drop)
    });
}

#[test]
fn openssl_reads_every_certificate_and_key() {
    check_all(Checker::Pem, |sample| {
        let scratch = Scratch::new("pem");
        let text = render(&sample.template, &sample.context)?;
        let file = scratch.path().join("file.pem");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        let kind = if sample.template.ends_with(".key") {
            "pkey"
        } else {
            "x509"
        };
        let out = std::process::Command::new("openssl")
            .args([kind, "-noout", "-in"])
            .arg(&file)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {kind}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
}

#[test]
fn sshd_accepts_every_config() {
    if !require_root("sshd -t wants its privilege separation folder, /run/sshd") {
        return;
    }
    check_all(Checker::Sshd, |sample| {
        let scratch = Scratch::new("sshd");
        let (_, text) = render_relocated(sample, scratch.path())?;
        let file = scratch.path().join("sshd.conf");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        common::sshd_check(&file, scratch.path())
    });
}

/// Each folder gets a log; the app's own folder and its log belong to
/// `nobody` (standing for the app's user, which the config's `su` names),
/// and a forced rotation as root rotates both, the app's as `nobody`
/// (without `su`, logrotate refuses that folder).
#[test]
fn logrotate_rotates_each_folder_as_its_owner() {
    if !require_root("logrotate's `su` switches to the app's user") {
        return;
    }
    let logrotate = common::require("logrotate", "logrotate");
    check_all(Checker::Logrotate, |sample| {
        let scratch = Scratch::new("logrotate");
        let mut context = sample.context.clone();
        context["user"] = Value::from("nobody");
        context["group"] = Value::from("nogroup");
        let as_nobody = Sample {
            template: sample.template.clone(),
            name: sample.name.clone(),
            context,
        };
        let (context, text) = render_relocated(&as_nobody, scratch.path())?;
        let (root_dir, app_dir) = (field(&context, "log_dir"), field(&context, "app_log_dir"));
        let io = |e: std::io::Error| e.to_string();
        fs::create_dir_all(app_dir).map_err(io)?;
        fs::write(Path::new(root_dir).join("worker-celery.log"), "a line\n").map_err(io)?;
        let own_log = Path::new(app_dir).join("django.log");
        fs::write(&own_log, "a line\n").map_err(io)?;
        let nobody =
            |path: &Path| std::os::unix::fs::chown(path, Some(65534), Some(65534)).map_err(io);
        nobody(Path::new(app_dir))?;
        nobody(&own_log)?;
        // Group-writable by a group not root's: logrotate refuses to work
        // there as root, and does only as the folder's user, by `su`.
        fs::set_permissions(app_dir, fs::Permissions::from_mode(0o770)).map_err(io)?;
        let conf = scratch.path().join("logrotate.conf");
        fs::write(&conf, &text).map_err(io)?;
        run(Command::new(&logrotate)
            .arg("-f")
            .arg("-s")
            .arg(scratch.path().join("state"))
            .arg(&conf))?;
        for rotated in [
            Path::new(root_dir).join("worker-celery.log.1"),
            Path::new(app_dir).join("django.log.1"),
        ] {
            if !rotated.exists() {
                return Err(format!("{} was not made:\n{text}", rotated.display()));
            }
        }
        let owner = fs::metadata(Path::new(app_dir).join("django.log.1"))
            .map_err(io)?
            .uid();
        if owner != 65534 {
            return Err(format!(
                "the app's log was rotated as uid {owner}, not its user's"
            ));
        }
        Ok(())
    });
}

/// The script that loads a rule into a real polkitd and asks it: in a mount
/// namespace of its own (`unshare -m`), the rule is the only one in polkit's
/// two rules folders and `/etc/passwd` names the agent's user (when this
/// machine has none), polkitd and a `dbus-daemon` of its own talk on a
/// socket in the scratch folder, and `pkcheck` asks for a process of that
/// user, and of `nobody`, each line of `cases` (`unit verb`), printing
/// `user unit verb -> pkcheck's exit code` (0 allowed, 1 refused).
const POLKIT_CHECK: &str = r#"
dir=$1 user=$2
uid=$(id -u "$user" 2>/dev/null) || {
  uid=61234
  cp /etc/passwd "$dir/passwd"
  echo "$user:x:$uid:$uid::/nonexistent:/usr/sbin/nologin" >> "$dir/passwd"
  mount --bind "$dir/passwd" /etc/passwd
}
mkdir -p "$dir/empty"
mount --bind "$dir/rules" /etc/polkit-1/rules.d
mount --bind "$dir/empty" /usr/share/polkit-1/rules.d
dbus-daemon --config-file="$dir/bus.conf" --fork --print-pid > "$dir/dbus.pid"
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/bus"
/usr/lib/polkit-1/polkitd > "$dir/polkitd.log" 2>&1 &
polkitd=$!
setpriv --reuid="$uid" --regid="$uid" --clear-groups sleep 60 & agent=$!
setpriv --reuid=65534 --regid=65534 --clear-groups sleep 60 & other=$!
trap 'kill $polkitd $agent $other $(cat "$dir/dbus.pid")' EXIT
for _ in $(seq 200); do
  grep -q "Acquired the name" "$dir/polkitd.log" && break
  sleep 0.1
done
while read -r unit verb; do
  for who in "$user:$agent" "nobody:$other"; do
    pkcheck --action-id org.freedesktop.systemd1.manage-units --process "${who#*:}" \
      --detail unit "$unit" --detail verb "$verb" > /dev/null 2>&1
    echo "${who%%:*} $unit $verb -> $?"
  done
done < "$dir/cases"
"#;

const PRIVATE_SYSTEM_BUS: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=DIR/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

/// polkitd loads each rule without an error, and grants the agent's user
/// exactly its verbs on units named like an app's (`unit_prefix`...
/// `.service`): any other unit or verb is refused it, and every request
/// refused to another user.
#[test]
fn polkit_grants_the_agent_only_its_verbs_on_app_units() {
    if !require_root("polkitd runs in a mount namespace of its own") {
        return;
    }
    for (program, package) in [
        ("pkcheck", "polkitd"),
        ("dbus-daemon", "dbus"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
    ] {
        common::require(program, package);
    }
    check_all(Checker::Polkit, |sample| {
        let scratch = Scratch::new("polkit");
        let dir = scratch.path();
        let text = render(&sample.template, &sample.context)?;
        let io = |e: std::io::Error| e.to_string();
        fs::create_dir_all(dir.join("rules")).map_err(io)?;
        fs::write(dir.join("rules/50-sitec-agent.rules"), &text).map_err(io)?;
        let bus = PRIVATE_SYSTEM_BUS.replace("DIR", &dir.display().to_string());
        fs::write(dir.join("bus.conf"), bus).map_err(io)?;
        let (user, prefix) = (
            field(&sample.context, "user"),
            field(&sample.context, "unit_prefix"),
        );
        let granted: Vec<&str> = (sample.context["verbs"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let app_units = [
            format!("{prefix}blog.service"),
            format!("{prefix}blog-worker-mail_2.service"),
        ];
        let other_units = [
            "ssh.service".to_string(),
            "sitec-agent.service".to_string(),
            format!("{prefix}blog.socket"),
            format!("{prefix}Blog.service"),
            format!("{prefix}.service"),
            format!("x{prefix}blog.service"),
        ];
        let mut cases = String::new();
        let mut expected = Vec::new();
        for verb in ["start", "stop", "restart", "reload", "try-restart"] {
            for (unit, app) in
                (app_units.iter().map(|u| (u, true))).chain(other_units.iter().map(|u| (u, false)))
            {
                writeln!(cases, "{unit} {verb}").expect("to a string");
                let allowed = app && granted.contains(&verb);
                expected.push(format!(
                    "{user} {unit} {verb} -> {}",
                    if allowed { 0 } else { 1 }
                ));
                expected.push(format!("nobody {unit} {verb} -> refused"));
            }
        }
        fs::write(dir.join("cases"), cases).map_err(io)?;
        let out = run(Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "bash",
                "-c",
                POLKIT_CHECK,
                "polkit-check",
            ])
            .arg(dir)
            .arg(user))?;
        let log = fs::read_to_string(dir.join("polkitd.log")).unwrap_or_default();
        if !log.contains("Finished loading, compiling and executing 1 rules")
            || log.contains("Error")
        {
            return Err(format!(
                "polkitd did not load the rule cleanly:\n{log}\n{text}"
            ));
        }
        // Another user's requests are left to the other rules, which refuse
        // them (1) or ask for a password (2, which no one can give here).
        let got: Vec<String> = (out.lines().filter(|l| l.contains(" -> ")))
            .map(
                |l| match l.strip_prefix("nobody ").map(|r| r.rsplit_once(" -> ")) {
                    Some(Some((request, "1" | "2"))) => format!("nobody {request} -> refused"),
                    _ => l.to_string(),
                },
            )
            .collect();
        if got != expected {
            return Err(format!(
                "pkcheck's verdicts:\n{}\nexpected:\n{}\n{text}",
                got.join("\n"),
                expected.join("\n")
            ));
        }
        Ok(())
    });
}

/// `systemd-tmpfiles --create` in a scratch root (this machine's users and
/// groups) gives polkit's rules folder, as Debian's package leaves it
/// (polkitd's, 0700), back to root, group polkitd, 0750.
#[test]
fn systemd_tmpfiles_gives_the_polkit_rules_folder_to_root() {
    if !require_root("systemd-tmpfiles changes owners") {
        return;
    }
    let tmpfiles = common::require("systemd-tmpfiles", "systemd");
    check_all(Checker::Tmpfiles, |sample| {
        let scratch = Scratch::new("tmpfiles");
        let root = scratch.path().join("root");
        let io = |e: std::io::Error| e.to_string();
        fs::create_dir_all(root.join("etc")).map_err(io)?;
        for f in ["passwd", "group"] {
            fs::copy(Path::new("/etc").join(f), root.join("etc").join(f)).map_err(io)?;
        }
        let rules_dir = field(&sample.context, "rules_dir").trim_start_matches('/');
        let folder = root.join(rules_dir);
        fs::create_dir_all(&folder).map_err(io)?;
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let conf = scratch.path().join("polkitd.conf");
        let text = render(&sample.template, &sample.context)?;
        fs::write(&conf, &text).map_err(io)?;
        run(Command::new(&tmpfiles)
            .arg(format!("--root={}", root.display()))
            .arg("--create")
            .arg(&conf))?;
        let meta = fs::metadata(&folder).map_err(io)?;
        let group = run(Command::new("getent").args(["group", field(&sample.context, "group")]))?;
        let gid: u32 = group
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .ok_or("no such group")?;
        if (meta.uid(), meta.gid(), meta.mode() & 0o7777) != (0, gid, 0o750) {
            return Err(format!(
                "{rules_dir} is {}:{} {:o} after systemd-tmpfiles, not root:{gid} 750:\n{text}",
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777
            ));
        }
        Ok(())
    });
}

/// Writes the `runner/environment` sample `blog` at `path` (gunicorn's
/// config reads the app's environment); its variables as systemd reads them.
fn write_sample_environment(path: &Path) -> Result<Vec<String>, String> {
    let sample = (samples("runner/environment").into_iter())
        .find(|s| s.name == "blog")
        .ok_or("no runner/environment sample blog.json")?;
    let text = render(&sample.template, &sample.context)?;
    fs::create_dir_all(path.parent().ok_or("a folder")?).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| e.to_string())?;
    Ok(
        (sample.context["variables"].as_array().into_iter().flatten())
            .map(|v| format!("{}={}", field(v, "name"), systemd_value(field(v, "value"))))
            .collect(),
    )
}

#[test]
fn python_compiles_and_runs_every_module() {
    check_all(Checker::Python, |sample| {
        let scratch = Scratch::new("python");
        let (context, text) = render_relocated(sample, scratch.path())?;
        if let Some(environment) = context.get("environment_file").and_then(Value::as_str) {
            write_sample_environment(Path::new(environment))?;
        }
        let name = Path::new(&sample.template).file_name().expect("file name");
        let module = scratch.path().join(name);
        fs::write(&module, text).map_err(|e| e.to_string())?;
        // The project's settings module that sitec's imports: a stub.
        let project = scratch.path().join("project");
        let settings = sample
            .context
            .get("settings_module")
            .and_then(Value::as_str);
        common::stub_modules(&project, &settings.into_iter().collect::<Vec<_>>())?;
        common::python_compile_and_run(&[module], &[project])
    });
}

/// gunicorn's config reads the app's environment file into `raw_env`
/// (at start and at each reload) exactly as systemd's `EnvironmentFile=`
/// does: every variable, quotes and escapes as systemd takes them.
#[test]
fn gunicorn_reads_the_environment_as_systemd_does() {
    for sample in samples("runner/gunicorn.conf.py") {
        let scratch = Scratch::new("gunicorn-environment");
        let (context, text) = render_relocated(&sample, scratch.path()).expect("renders");
        let environment = Path::new(field(&context, "environment_file"));
        let want = write_sample_environment(environment).expect("written");
        let config = scratch.path().join("gunicorn.conf.py");
        fs::write(&config, text).expect("written");
        let read = run(Command::new("python3").arg("-c").arg(
            "import runpy, sys\nsys.stdout.write('\\0'.join(runpy.run_path(sys.argv[1])['raw_env']))",
        ).arg(&config))
        .unwrap_or_else(|e| panic!("{}: {e}", sample.label()));
        let got: Vec<&str> = read.split('\0').collect();
        assert_eq!(got, want, "{}", sample.label());
    }
}

/// A Django-like app whose workers take a second to import it, for the
/// reload test: a request answers `ok`.
const SLOW_APP: &str = "import time\ntime.sleep(1.0)\n\ndef application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n";

/// The number of gunicorn workers (the master's children) now.
fn workers_of(master: u32) -> usize {
    let out = Command::new("pgrep")
        .args(["-P", &master.to_string()])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// gunicorn with sitec's config, reloaded twice within a second (two
/// `sitec set env` in a row, a failover's repoint after an apply): every
/// request is answered, each reload's hook retires its old workers once
/// its new ones have loaded the app, and the master is back to its
/// workers, with nothing failing in the hook. (Each reload runs the config
/// file again, so each hook has a module, and a pipe, of its own.)
/// Debian's gunicorn.
#[test]
fn gunicorn_takes_two_close_reloads_without_a_failed_request() {
    let Some(sample) = samples("runner/gunicorn.conf.py").into_iter().next() else {
        panic!("no runner/gunicorn.conf.py sample");
    };
    let scratch = Scratch::new("gunicorn-reloads");
    let (context, text) = render_relocated(&sample, scratch.path()).expect("renders");
    write_sample_environment(Path::new(field(&context, "environment_file"))).expect("written");
    let config = scratch.path().join("gunicorn.conf.py");
    fs::write(&config, text).expect("written");
    // The release folder the config names (gunicorn checks it as it loads).
    let app = Path::new(field(&context, "release_dir")).to_path_buf();
    fs::create_dir_all(&app).expect("app folder");
    fs::write(app.join("slowapp.py"), SLOW_APP).expect("app written");
    let port = common::free_port();
    let log = scratch.path().join("gunicorn.log");
    let mut master = Command::new(common::require("gunicorn", "gunicorn"))
        .arg("-c")
        .arg(&config)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--workers", "2"])
        .args(["--worker-class", "sync", "--graceful-timeout", "30"])
        .arg("--pythonpath")
        .arg(&app)
        .arg("slowapp:application")
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(fs::File::create(scratch.path().join("gunicorn.err")).expect("log"))
        .spawn()
        .expect("gunicorn starts");
    let url = format!("http://127.0.0.1:{port}/");
    let get = || {
        Command::new("curl")
            .args(["-s", "--max-time", "20", &url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let up = common::eventually(Duration::from_secs(30), || get() == "ok");
    let logs = || {
        fs::read_to_string(&log).unwrap_or_default()
            + &fs::read_to_string(scratch.path().join("gunicorn.err")).unwrap_or_default()
    };
    assert!(up, "gunicorn did not answer: {}", logs());
    let pid = master.id();
    // A client asking all the while, from before the first reload to after
    // both have retired their old workers.
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let client = {
        let asking = asking.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            let (mut asked, mut failed) = (0, Vec::new());
            while asking.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args(["-s", "--max-time", "20", &url])
                    .output();
                let body = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
                asked += 1;
                if body.as_deref().ok() != Some("ok") {
                    failed.push(format!("{body:?}"));
                }
            }
            (asked, failed)
        })
    };
    common::signal(pid, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    common::signal(pid, "HUP");
    let retired = common::eventually(Duration::from_secs(40), || {
        logs().matches("reloaded:").count() >= 2 && workers_of(pid) == 2
    });
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    let (asked, failed) = client.join().expect("the client");
    common::signal(pid, "TERM");
    let _ = common::wait_exit(&mut master, Duration::from_secs(30));
    let said = logs();
    assert!(retired, "not back to 2 workers after both reloads: {said}");
    assert!(
        !said.contains("Traceback") && !said.contains("Exception"),
        "{said}"
    );
    assert!(
        asked > 0 && failed.is_empty(),
        "{} of {asked} failed: {failed:?}",
        failed.len()
    );
}

/// The pg_hba.conf the postgresql.conf samples run with (pg_hba.conf samples
/// are checked on their own): the test connects through the socket, the
/// standby replicates over loopback.
const TEST_HBA: &str = "local all all peer\n\
    host all all 127.0.0.1/32 scram-sha-256\n\
    host replication all 127.0.0.1/32 scram-sha-256\n";

#[test]
fn postgres_starts_on_every_config() {
    if !require_root("the server runs as the postgres user, through runuser") {
        return;
    }
    let pg = Postgres::installed();
    let scratch = Scratch::new("postgres");
    // One initdb, copied for every primary: initdb is the slow part.
    let template = scratch.path().join("template-cluster");
    pg.init_template(&template).expect("initdb");

    // Samples run in name order and primaries stay up, so a standby sample
    // really streams from the primary sample on its `primary_port`: its data
    // directory is a pg_basebackup of that primary, through the replication
    // role and slot the standby's context names.
    let mut primaries: Vec<Running> = Vec::new();
    check_all(Checker::PostgresConf, |sample| {
        let dir = scratch.path().join(&sample.name);
        pg.own(&dir)?;
        let (context, text) = render_relocated(sample, &dir)?;
        let data = Path::new(field(&context, "data_directory"));
        // The server's certificate, and the CA a standby checks its primary with.
        let key = Path::new(field(&context, "ssl_key_file"));
        let ca = dir.join("etc/sitec/fleet-ca.pem");
        common::database_tls(Path::new(field(&context, "ssl_cert_file")), key, &ca)?;
        pg.own(key)?;
        pg.write(Path::new(field(&context, "hba_file")), TEST_HBA)?;
        pg.write(Path::new(field(&context, "ident_file")), "")?;
        let socket = field(&context, "unix_socket_directory");
        pg.own(Path::new(socket))?;
        let standby = &context["standby"];
        if standby.is_null() {
            pg.copy_cluster(&template, data)?;
        } else {
            let primary = primaries
                .iter()
                .find(|p| Some(p.port) == standby["primary_port"].as_u64())
                .ok_or("a standby sample must follow a primary sample on its primary_port")?;
            let (user, password) = (
                field(standby, "replication_user"),
                field(standby, "replication_password"),
            );
            primary.psql(&format!(
                "create role {user} with replication login password '{password}'"
            ))?;
            primary.psql(&format!(
                "select pg_create_physical_replication_slot('{}')",
                field(standby, "slot_name")
            ))?;
            pg.own(data.parent().expect("in a folder"))?;
            run(pg
                .command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    user,
                    "-X",
                    "stream",
                    "--no-sync",
                    "-p",
                ])
                .arg(primary.port.to_string())
                .arg("-D")
                .arg(data)
                .env("PGPASSWORD", password))
            .map_err(|e| primary.with_log(&e))?;
            pg.write(&data.join("standby.signal"), "")?;
        }
        let config = dir.join("config");
        pg.write(&config.join("postgresql.conf"), &text)?;
        let server = pg.start(
            &config,
            &dir.join("server.log"),
            socket,
            port(&context, "port"),
            "",
        )?;
        let recovering = server.psql("select pg_is_in_recovery()")?;
        if standby.is_null() {
            if recovering != "f" {
                return Err(format!("a primary in recovery: {recovering:?}"));
            }
            primaries.push(server);
            return Ok(());
        }
        if recovering != "t" {
            return Err(server.with_log(&format!("a standby not in recovery: {recovering:?}")));
        }
        let primary = primaries
            .iter()
            .find(|p| Some(p.port) == standby["primary_port"].as_u64())
            .expect("found above");
        let query = format!(
            "select state from pg_stat_replication where application_name = '{}'",
            field(&context, "host")
        );
        if eventually(Duration::from_secs(10), || {
            primary.psql(&query).is_ok_and(|s| s == "streaming")
        }) {
            Ok(())
        } else {
            Err(server.with_log("the standby never streamed from its primary"))
        }
    });
    drop(primaries);

    check_all(Checker::PostgresHba, |sample| {
        let dir = scratch.path().join(&sample.name);
        pg.own(&dir)?;
        let (_, text) = render_relocated(sample, &dir)?;
        let data = dir.join("data");
        pg.copy_cluster(&template, &data)?;
        pg.write(&data.join("pg_hba.conf"), &text)?;
        let socket = dir.join("socket");
        pg.own(&socket)?;
        let socket = socket.to_string_lossy().into_owned();
        let port = moved_port(15434);
        // SSL on, as rendered: a `hostssl` line is an error without it.
        let (cert, key) = (dir.join("db.pem"), dir.join("db.key"));
        common::database_tls(&cert, &key, &dir.join("fleet-ca.pem"))?;
        pg.own(&key)?;
        pg.write(
            &data.join("postgresql.auto.conf"),
            &format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n\
                 ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert.display(),
                key.display()
            ),
        )?;
        // A server refuses to start on a pg_hba.conf it cannot read; once up,
        // pg_hba_file_rules lists every line it kept and any error in one.
        let server = pg.start(&data, &dir.join("server.log"), &socket, port, "")?;
        let errors = server.psql(
            "select count(*) filter (where error is not null) || ' errors, ' || count(*) || ' rules' from pg_hba_file_rules",
        )?;
        if errors.starts_with("0 errors") {
            Ok(())
        } else {
            Err(format!("pg_hba_file_rules: {errors}"))
        }
    });

    // The roles script runs on every apply that changes it: twice must work,
    // and leave each app its role (able to log in) owning its database.
    check_all(Checker::PostgresRoles, |sample| {
        let dir = scratch.path().join(&sample.name);
        pg.own(&dir)?;
        let (context, text) = render_relocated(sample, &dir)?;
        let data = dir.join("data");
        pg.copy_cluster(&template, &data)?;
        let script = dir.join("roles.sql");
        pg.write(&script, &text)?;
        let socket = dir.join("socket");
        pg.own(&socket)?;
        let socket = socket.to_string_lossy().into_owned();
        let port = moved_port(15435);
        pg.write(
            &data.join("postgresql.auto.conf"),
            &format!(
                "port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{socket}'\n"
            ),
        )?;
        let server = pg.start(&data, &dir.join("server.log"), &socket, port, "")?;
        server.psql_file(&script)?;
        server.psql_file(&script)?;
        for app in context["apps"].as_array().into_iter().flatten() {
            let (role, database) = (field(app, "role"), field(app, "database"));
            let owner = server.psql(&format!(
                "select r.rolname || ' ' || r.rolcanlogin from pg_database d join pg_roles r on r.oid = d.datdba where d.datname = '{database}'"
            ))?;
            if owner != format!("{role} true") {
                return Err(format!(
                    "database {database}: owner and login {owner:?}, wanted `{role} true`"
                ));
            }
        }
        if !context["replication"].is_null() {
            let repl =
                server.psql("select rolreplication from pg_roles where rolname = 'replicator'")?;
            if repl != "t" {
                return Err(format!("replicator: rolreplication {repl:?}"));
            }
            let slot = field(&context["replication"], "slot");
            let kept = server.psql(&format!(
                "select slot_type from pg_replication_slots where slot_name = '{slot}'"
            ))?;
            if kept != "physical" {
                return Err(format!("slot {slot}: {kept:?}, wanted a physical slot"));
            }
        }
        Ok(())
    });
}

/// `redis-cli` to the server a sample context describes (TLS only).
fn sample_cli(context: &Value, args: &[&str]) -> Result<String, String> {
    let host = context["bind"][0].as_str().unwrap_or("127.0.0.1");
    common::redis_cli_tls(
        host,
        port(context, "port"),
        field(context, "password"),
        Path::new(field(context, "tls_ca_file")),
        args,
    )
}

#[test]
fn redis_starts_on_every_config() {
    let scratch = Scratch::new("redis");
    // All samples run at once, so a replica sample can follow the primary sample.
    let mut running = Vec::new();
    let mut failures = String::new();
    for sample in samples_for(Checker::Redis) {
        let dir = scratch.path().join(&sample.name);
        let started = render_relocated(&sample, &dir).and_then(|(context, text)| {
            fs::create_dir_all(field(&context, "dir")).map_err(|e| e.to_string())?;
            for file in ["log_file", "pid_file"] {
                let parent = Path::new(field(&context, file))
                    .parent()
                    .expect("in a folder");
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            common::database_tls(
                Path::new(field(&context, "tls_cert_file")),
                Path::new(field(&context, "tls_key_file")),
                Path::new(field(&context, "tls_ca_file")),
            )?;
            let conf = dir.join("redis.conf");
            fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok((context, Redis::start(&conf, &[])?))
        });
        match started {
            Ok(started) => running.push((sample, started)),
            Err(e) => {
                let _ = writeln!(failures, "--- {}:\n{e}\n", sample.label());
            }
        }
    }
    assert!(
        !running.is_empty() || !failures.is_empty(),
        "no redis samples"
    );
    for (sample, (context, _)) in &running {
        let up = eventually(Duration::from_secs(5), || {
            sample_cli(context, &["ping"]).is_ok_and(|out| out.trim() == "PONG")
        });
        let replica = !context["replicaof"].is_null();
        let linked = !replica
            || eventually(Duration::from_secs(10), || {
                sample_cli(context, &["info", "replication"])
                    .is_ok_and(|out| out.contains("master_link_status:up"))
            });
        let pid_written = Path::new(field(context, "pid_file")).is_file();
        // The agent's user may ask ROLE, and nothing else.
        let as_agent = |args: &[&str]| {
            let cli = common::require("redis-cli", "redis-tools");
            run(Command::new(cli)
                .args(["-h", "127.0.0.1", "-p"])
                .arg(port(context, "port").to_string())
                .args(["--tls", "--cacert", field(context, "tls_ca_file")])
                .args(["--no-auth-warning", "--user", field(context, "agent_user")])
                .args(["-a", field(context, "agent_password")])
                .args(args))
            .unwrap_or_else(|e| e)
        };
        let role = as_agent(&["role"]);
        let refused = as_agent(&["get", "x"]);
        if !role.starts_with(if replica { "slave" } else { "master" })
            || !refused.contains("NOPERM")
        {
            let _ = writeln!(
                failures,
                "--- {}: as the agent's user, ROLE answered {role:?} and GET {refused:?}",
                sample.label()
            );
        }
        if !up || !linked || !pid_written {
            let log = fs::read_to_string(field(context, "log_file")).unwrap_or_default();
            let _ = writeln!(
                failures,
                "--- {}: {}\nredis log:\n{log}\n",
                sample.label(),
                if !up {
                    "no PONG"
                } else if !linked {
                    "replica never linked to its primary"
                } else {
                    "no pid file"
                }
            );
        }
    }
    for (_, (context, _)) in &running {
        let _ = sample_cli(context, &["shutdown", "nosave"]);
    }
    drop(running);
    assert!(failures.is_empty(), "{failures}");
}

/// Field paths per template, from the tables of templates/README.md
/// (`static[].url` is the key `url` of each element of the list `static`).
fn documented_fields() -> Vec<(String, Vec<String>)> {
    let readme =
        fs::read_to_string(repo().join("templates/README.md")).expect("templates/README.md");
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in readme.lines() {
        if let Some(name) = line
            .strip_prefix("## `")
            .and_then(|l| l.strip_suffix(".hbs`"))
        {
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some(row), Some((_, fields))) =
            (line.strip_prefix("| `"), sections.last_mut())
        {
            if let Some((field, _)) = row.split_once('`') {
                fields.push(field.to_owned());
            }
        }
    }
    sections
}

/// Every field path of a context, in the README's notation.
fn field_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.push(path.clone());
        match value {
            Value::Object(_) => field_paths(value, &path, out),
            Value::Array(items) => {
                for item in items {
                    field_paths(item, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn readme_documents_every_context_field() {
    let documented = documented_fields();
    let mut failures = Vec::new();
    for template in templates() {
        let Some((_, fields)) = documented.iter().find(|(t, _)| *t == template) else {
            failures.push(format!(
                "templates/README.md has no section ## `{template}.hbs`"
            ));
            continue;
        };
        for sample in samples(&template) {
            let mut paths = Vec::new();
            field_paths(&sample.context, "", &mut paths);
            for path in &paths {
                if !fields.contains(path) {
                    failures.push(format!(
                        "{}: `{path}` is not in templates/README.md",
                        sample.label()
                    ));
                }
            }
            for field in fields.iter().filter(|f| !f.contains(['.', '['])) {
                if !paths.contains(field) {
                    failures.push(format!(
                        "{}: lacks `{field}` (send optional fields as null)",
                        sample.label()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn toml_configs_parse() {
    check_all(Checker::Toml, |sample| {
        let text = render(&sample.template, &sample.context)?;
        text.parse::<toml_edit::DocumentMut>()
            .map_err(|e| format!("not TOML: {e}\n{text}"))?;
        // sitec's own readers check what they read.
        let side = match sample.template.as_str() {
            "backup/snapshot.toml" => "snapshot",
            "backup/pull.toml" => "pull",
            "agent/agent.toml" => {
                let dir = Scratch::new("agent-toml");
                let key = bus_key_file(&dir, "3Yl5ocPvw@.(c0&RtuY-){3#Qe{5u&.DKu00)E[k\n")?;
                let text = text.replace("/etc/sitec/bus/host.key", &key.display().to_string());
                return agent_check(&dir, &text);
            }
            _ => return Ok(()),
        };
        let dir = Scratch::new("data-toml");
        let path = dir.path().join("config.toml");
        fs::write(&path, &text).map_err(|e| e.to_string())?;
        run(std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(["data", side, "--check", "--config"])
            .arg(&path))
        .map(|_| ())
    });
}

/// Writes a key file (0600) with `text` in `dir`.
fn bus_key_file(dir: &Scratch, text: &str) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("bus.key");
    fs::write(&key, text).map_err(|e| e.to_string())?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    Ok(key)
}

/// `sitec agent --check` on an agent config with `text`.
fn agent_check(dir: &Scratch, text: &str) -> Result<(), String> {
    let path = dir.path().join("agent.toml");
    fs::write(&path, text).map_err(|e| e.to_string())?;
    run(std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args(["agent", "--check", "--config"])
        .arg(&path))
    .map(|_| ())
}

#[test]
fn the_agent_reads_every_bus_key() {
    check_all(Checker::BusKey, |sample| {
        let dir = Scratch::new("bus-key");
        let key = bus_key_file(&dir, &render(&sample.template, &sample.context)?)?;
        let key = key.display();
        let operator = "Vkv-^(V(GkZ3{e&R0/#P8dFJ12?UL7L)r89x4BUp";
        agent_check(
            &dir,
            &format!("host = \"run1\"\nstate_dir = \"/var/lib/sitec-agent\"\n[bus]\ncontrol = \"tcp://127.0.0.1:7701\"\nheartbeat = \"tcp://127.0.0.1:7702\"\nkey_file = \"{key}\"\noperator = \"{operator}\"\n"),
        )
    });
}
