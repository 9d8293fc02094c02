//! Rule `inline_secret` (E264): a secret written into the spec as it is. A
//! spec is committed, reviewed and copied; a secret belongs in the secrets
//! file, named by `secret("app.name")`. A setting counts when its name says
//! it is secret (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*_KEY`, ...) and its
//! value is text that is not a module path or a file's path, or when its
//! value has the shape of a credential whatever the name (a key with a
//! provider's prefix, a private key, a URL with a password in it). Maps
//! and lists are looked into: `CACHES`' `PASSWORD`, an `ADMINS` pair.

use crate::diagnostic::Diagnostic;
use crate::model::{Fleet, Target};
use crate::syntax::ast::{Value, ValueKind};

/// Words in a setting's name that say its value is secret.
const SECRET_WORDS: [&str; 7] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "PRIVATE",
    "CREDENTIAL",
    "API_KEY",
];

/// How credentials that services hand out begin.
const CREDENTIAL_PREFIXES: [&str; 16] = [
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "django-insecure-",
    "AKIA",
    "AIza",
    "-----BEGIN",
];

pub fn inline_secret(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for layer in &fleet.settings {
        let app = match layer.target {
            Target::App(app) | Target::AppOnHost(app, _) => Some(fleet.apps[app].name.as_str()),
            Target::Base | Target::Host(_) => None,
        };
        for (key, value) in &layer.values {
            look(key, key, value, app, &mut found);
        }
    }
    found
}

/// `setting` is the layer's key, `key` the name nearest the value (a map's
/// own key inside it).
fn look(setting: &str, key: &str, value: &Value, app: Option<&str>, found: &mut Vec<Diagnostic>) {
    match &value.kind {
        ValueKind::Str(text) | ValueKind::Text(text) => {
            let by_name = secret_name(key) && !harmless(text);
            if by_name || looks_like_credential(text) {
                found.push(report(setting, key, value, app, by_name));
            }
        }
        ValueKind::List(list) => {
            for item in &list.items {
                look(setting, key, item, app, found);
            }
        }
        ValueKind::Map(block) => {
            for entry in &block.entries {
                if let Some(inner) = entry.value() {
                    look(setting, &entry.key.text, inner, app, found);
                }
            }
        }
        _ => {}
    }
}

fn report(setting: &str, key: &str, value: &Value, app: Option<&str>, by_name: bool) -> Diagnostic {
    let name = key.to_ascii_lowercase();
    let secret = match app {
        Some(app) => format!("{app}.{name}"),
        None => name,
    };
    let why = if by_name {
        format!("`{key}` names a secret")
    } else {
        "this looks like a credential".to_string()
    };
    let fix = if key == setting {
        format!("`{setting} = secret(\"{secret}\")`")
    } else {
        format!("`{key} = secret(\"{secret}\")` inside `{setting}`")
    };
    Diagnostic::error(
        "E264",
        format!("a secret is written into the spec, in `{setting}`"),
    )
    .primary(value.span, format!("{why}, and its value stands here"))
    .help(format!(
        "keep it out of the spec: write {fix}; sitec keeps the value in the secrets file beside the spec (put yours there, or let sitec generate one)"
    ))
}

/// Whether a setting's name says its value is secret.
fn secret_name(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| key.contains(w)) || key.ends_with("_KEY") || key == "KEY"
}

/// Text under a secret-sounding name that is no secret: nothing, a module
/// or class path (`PASSWORD_HASHERS`), a file's path (`SSL_KEY`).
fn harmless(text: &str) -> bool {
    let dotted = text.contains('.') && text.split('.').all(crate::names::is_python_name);
    text.trim().is_empty() || dotted || text.starts_with('/') || text.starts_with("./")
}

/// Whether text has the shape of a credential: a prefix services give
/// their keys, or a URL with a password in it.
fn looks_like_credential(text: &str) -> bool {
    let prefixed = CREDENTIAL_PREFIXES
        .iter()
        .any(|p| text.starts_with(p) && text.len() >= p.len() + 8);
    let url_password = text.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .and_then(|(user, _)| user.split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
    });
    prefixed || url_password
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_say_secret() {
        for key in [
            "SECRET_KEY",
            "EMAIL_HOST_PASSWORD",
            "GITHUB_TOKEN",
            "STRIPE_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(secret_name(key), "{key}");
        }
        for key in ["DEBUG", "TIME_ZONE", "KEY_PREFIX_LENGTH", "ALLOWED_HOSTS"] {
            assert!(!secret_name(key), "{key}");
        }
    }

    #[test]
    fn values_that_are_no_secret_under_such_a_name() {
        assert!(harmless("django.contrib.auth.hashers.PBKDF2PasswordHasher"));
        assert!(harmless("/etc/ssl/private/site.key"));
        assert!(harmless(""));
        assert!(!harmless("hunter2hunter2"));
    }

    #[test]
    fn values_that_look_like_credentials() {
        for text in [
            "sk_live_51Habcdefghijklmnop",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "postgres://app:hunter2@db1/app",
            "redis://:s3cret@cache:6379/0",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
        ] {
            assert!(looks_like_credential(text), "{text}");
        }
        for text in [
            "https://rates.example.com/daily",
            "postgres://app@db1/app",
            "ghp_",
            "The epio blog",
        ] {
            assert!(!looks_like_credential(text), "{text}");
        }
    }
}
