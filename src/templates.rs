//! The templates under `templates/`, embedded in the binary, and the
//! handlebars registry that renders them: strict mode (a missing field is an
//! error, never an empty string in a config) and no HTML escaping.

use handlebars::Handlebars;

mod open;
pub use open::Open;

/// Every template: its name (path below `templates/` without `.hbs`) and text.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "agent/agent.toml",
        include_str!("../templates/agent/agent.toml.hbs"),
    ),
    (
        "backup/authorized_keys",
        include_str!("../templates/backup/authorized_keys.hbs"),
    ),
    (
        "backup/pull.service",
        include_str!("../templates/backup/pull.service.hbs"),
    ),
    (
        "backup/pull.timer",
        include_str!("../templates/backup/pull.timer.hbs"),
    ),
    (
        "backup/pull.toml",
        include_str!("../templates/backup/pull.toml.hbs"),
    ),
    (
        "backup/snapshot.service",
        include_str!("../templates/backup/snapshot.service.hbs"),
    ),
    (
        "backup/snapshot.timer",
        include_str!("../templates/backup/snapshot.timer.hbs"),
    ),
    (
        "backup/snapshot.toml",
        include_str!("../templates/backup/snapshot.toml.hbs"),
    ),
    (
        "backup/ssh-key",
        include_str!("../templates/backup/ssh-key.hbs"),
    ),
    (
        "backup/sshd.conf",
        include_str!("../templates/backup/sshd.conf.hbs"),
    ),
    (
        "balancer/balancer.toml",
        include_str!("../templates/balancer/balancer.toml.hbs"),
    ),
    (
        "balancer/tls.key",
        include_str!("../templates/balancer/tls.key.hbs"),
    ),
    (
        "balancer/tls.pem",
        include_str!("../templates/balancer/tls.pem.hbs"),
    ),
    (
        "bus/balancer.key",
        include_str!("../templates/bus/balancer.key.hbs"),
    ),
    (
        "bus/host.key",
        include_str!("../templates/bus/host.key.hbs"),
    ),
    (
        "django/sitec_redis.py",
        include_str!("../templates/django/sitec_redis.py.hbs"),
    ),
    (
        "django/sitec_settings.py",
        include_str!("../templates/django/sitec_settings.py.hbs"),
    ),
    (
        "gluster/ca.pem",
        include_str!("../templates/gluster/ca.pem.hbs"),
    ),
    (
        "gluster/tls.key",
        include_str!("../templates/gluster/tls.key.hbs"),
    ),
    (
        "gluster/tls.pem",
        include_str!("../templates/gluster/tls.pem.hbs"),
    ),
    (
        "gluster/volume.sh",
        include_str!("../templates/gluster/volume.sh.hbs"),
    ),
    (
        "polkit/sitec-agent.rules",
        include_str!("../templates/polkit/sitec-agent.rules.hbs"),
    ),
    (
        "polkit/tmpfiles.conf",
        include_str!("../templates/polkit/tmpfiles.conf.hbs"),
    ),
    (
        "postgres/clone-standby.sh",
        include_str!("../templates/postgres/clone-standby.sh.hbs"),
    ),
    (
        "postgres/pg_hba.conf",
        include_str!("../templates/postgres/pg_hba.conf.hbs"),
    ),
    (
        "postgres/postgresql.conf",
        include_str!("../templates/postgres/postgresql.conf.hbs"),
    ),
    (
        "postgres/roles.sql",
        include_str!("../templates/postgres/roles.sql.hbs"),
    ),
    (
        "redis/redis.conf",
        include_str!("../templates/redis/redis.conf.hbs"),
    ),
    (
        "runner/environment",
        include_str!("../templates/runner/environment.hbs"),
    ),
    (
        "runner/gunicorn.conf.py",
        include_str!("../templates/runner/gunicorn.conf.py.hbs"),
    ),
    (
        "runner/logrotate",
        include_str!("../templates/runner/logrotate.hbs"),
    ),
    (
        "runner/manage.sh",
        include_str!("../templates/runner/manage.sh.hbs"),
    ),
    (
        "runner/nginx-app.conf",
        include_str!("../templates/runner/nginx-app.conf.hbs"),
    ),
    (
        "systemd/app-run.service",
        include_str!("../templates/systemd/app-run.service.hbs"),
    ),
    (
        "systemd/app-run.socket",
        include_str!("../templates/systemd/app-run.socket.hbs"),
    ),
    (
        "systemd/celery-worker.service",
        include_str!("../templates/systemd/celery-worker.service.hbs"),
    ),
    (
        "systemd/gunicorn.service",
        include_str!("../templates/systemd/gunicorn.service.hbs"),
    ),
    (
        "systemd/media.mount",
        include_str!("../templates/systemd/media.mount.hbs"),
    ),
    (
        "systemd/sitec-agent.service",
        include_str!("../templates/systemd/sitec-agent.service.hbs"),
    ),
    (
        "systemd/sitec-balancer.service",
        include_str!("../templates/systemd/sitec-balancer.service.hbs"),
    ),
    (
        "tls/fleet-ca.pem",
        include_str!("../templates/tls/fleet-ca.pem.hbs"),
    ),
    (
        "tls/server.key",
        include_str!("../templates/tls/server.key.hbs"),
    ),
    (
        "tls/server.pem",
        include_str!("../templates/tls/server.pem.hbs"),
    ),
];

/// The value of an `each` scope a template's context is built from (see
/// `expand::VALUES` for the scopes that give each), for the templates
/// that need one: used outside those scopes, a file can't be rendered
/// (E224), which `check` says at the field.
pub fn needs(name: &str) -> Option<&'static str> {
    Some(match name {
        "runner/nginx-app.conf"
        | "runner/gunicorn.conf.py"
        | "runner/environment"
        | "runner/logrotate"
        | "runner/manage.sh"
        | "django/sitec_settings.py"
        | "django/sitec_redis.py"
        | "systemd/gunicorn.service"
        | "systemd/app-run.socket"
        | "systemd/app-run.service"
        | "balancer/tls.pem"
        | "balancer/tls.key" => "app",
        "systemd/celery-worker.service" => "worker",
        "gluster/volume.sh" | "systemd/media.mount" => "media",
        "postgres/postgresql.conf"
        | "postgres/pg_hba.conf"
        | "postgres/clone-standby.sh"
        | "postgres/roles.sql" => "cluster",
        "redis/redis.conf" => "redis",
        backup if backup.starts_with("backup/") => match backup {
            "backup/authorized_keys" | "backup/sshd.conf" => return None,
            _ => "backup",
        },
        _ => return None,
    })
}

pub struct Templates {
    registry: Handlebars<'static>,
    /// The templates of your own, by the module that names one and the path
    /// as written there: the template's name ([`crate::own_templates::File`]).
    own: std::collections::HashMap<(crate::source::FileId, String), String>,
}

/// What a template of your own is registered as: never one of sitec's names.
fn own_key(name: &str) -> String {
    format!("own:{name}")
}

impl Templates {
    /// Registers every embedded template. A template that does not compile
    /// is a bug in sitec, caught by the tests that render each one.
    pub fn new() -> Result<Templates, String> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, text) in TEMPLATES {
            registry
                .register_template_string(name, *text)
                .map_err(|e| format!("template `{name}`: {e}"))?;
        }
        Ok(Templates {
            registry,
            own: std::collections::HashMap::new(),
        })
    }

    /// Every embedded template and the spec's templates of your own that
    /// parsed, in the one registry: the same strict mode and helpers.
    pub fn with_own(files: &crate::own_templates::Files) -> Result<Templates, String> {
        let mut templates = Templates::new()?;
        for (file, written, own) in files.uses() {
            if let Ok(template) = &own.parsed {
                templates
                    .registry
                    .register_template(&own_key(&own.name), template.clone());
                templates
                    .own
                    .insert((file, written.to_string()), own.name.clone());
            }
        }
        Ok(templates)
    }

    /// The name of the template of your own the module `file` names as
    /// `written`, if it parsed.
    pub fn own(&self, file: crate::source::FileId, written: &str) -> Option<&str> {
        (self.own.get(&(file, written.to_string()))).map(String::as_str)
    }

    /// Renders the template of your own `name` ([`Templates::own`]).
    pub fn render_own(&self, name: &str, context: serde_json::Value) -> Result<String, String> {
        self.render_owned(&own_key(name), context)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.registry.has_template(name)
    }

    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, String> {
        self.registry
            .render(name, context)
            .map_err(|e| e.to_string())
    }

    /// [`Templates::render`] for a context given away: handlebars takes it
    /// as it is instead of serializing a copy.
    pub fn render_owned(&self, name: &str, context: serde_json::Value) -> Result<String, String> {
        self.registry
            .render_with_context(name, &handlebars::Context::from(context))
            .map_err(|e| e.to_string())
    }

    /// Renders `name` for one file and, when there are `open` fields and
    /// the template only prints them as they are, also returns the text with
    /// those fields of `context` left open ([`Open`]), for files whose
    /// contexts differ only in them. The file's text is the same either way.
    pub fn render_open(
        &self,
        name: &str,
        mut context: serde_json::Value,
        open: &[&str],
    ) -> Result<(String, Option<Open>), String> {
        let openable = !open.is_empty()
            && (self.registry.get_template(name)).is_some_and(|t| open::can_open(t, open));
        let values = if openable {
            open::marked(&mut context, open)
        } else {
            None
        };
        let text = self.render_owned(name, context)?;
        let Some(values) = values else {
            return Ok((text, None));
        };
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        Ok(match Open::split(&text, open.len()) {
            Some(opened) => (opened.fill(&values), Some(opened)),
            // Not reached: `marked` saw no NUL in the context, `can_open` none in the template.
            None => {
                return Err(format!(
                    "template `{name}`: its open fields went astray (a bug in sitec)"
                ))
            }
        })
    }

    pub fn names() -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut stack = vec![root.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).expect("templates folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(rel) = path.strip_prefix(&root).ok().and_then(|p| p.to_str()) {
                    if let Some(name) = rel.strip_suffix(".hbs") {
                        found.push(name.to_string());
                    }
                }
            }
        }
        found.sort();
        let embedded: Vec<String> = Templates::names().map(str::to_string).collect();
        assert_eq!(found, embedded, "templates/ and TEMPLATES differ");
        assert!(Templates::new().is_ok());
    }

    /// `needs` says what `context::build` does: a template whose context
    /// needs a scope's item fails outside every `each`, and only such.
    #[test]
    fn needs_agrees_with_the_contexts() {
        crate::context::with_example("epio.site", |inputs| {
            let fleet = inputs.fleet;
            let vault = fleet.host_named("vault").expect("vault");
            for name in Templates::names() {
                let built = crate::context::build(name, inputs, vault, &Default::default());
                let outside = built.err().is_some_and(|e| e.contains("outside"));
                assert_eq!(outside, needs(name).is_some(), "{name}");
            }
        });
    }
}
