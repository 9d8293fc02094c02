//! What a spec names on the operator's machine: each app's source folder
//! (relative to the spec's folder), the requirements file in it, the
//! module its `wsgi` names, and its TLS certificate and key. The one stage before `plan` that reads the file
//! system; it never writes.
//!
//! `sitec check` and `sitec render` report what is missing as warnings: a
//! spec may be checked, or its files snapshot-tested, where the apps' code
//! is not. `sitec plan` and `apply` pack each release from the folder and
//! build its wheelhouse from the requirements, so for them those two are
//! errors ([`needed_by_plan`]), reported at the spec's line before anything
//! is built or any host contacted. A WSGI module not found stays a warning
//! everywhere: it may come from a package the requirements install.

use crate::diagnostic::Diagnostic;
use crate::model::{App, Fleet};
use crate::source::Span;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The app's `source` is not a folder.
pub const SOURCE_MISSING: &str = "E270";
/// No requirements file in the app's source.
pub const REQUIREMENTS_MISSING: &str = "E271";
/// The module of the app's `wsgi` is not in its source.
pub const WSGI_MISSING: &str = "E272";
/// A file of the app's `tls` is missing.
pub const TLS_FILE_MISSING: &str = "E273";
/// The app's certificate does not name one of its domains.
pub const TLS_NAME_MISSING: &str = "E274";
/// The app's `tls` files are not a certificate chain and its key.
pub const TLS_UNUSABLE: &str = "E275";
/// The app's certificate has expired, soon will, or is not valid yet.
pub const TLS_EXPIRY: &str = "E276";
/// A line of the app's requirements that no wheelhouse can hold (an
/// editable install, a VCS checkout, a URL, a local path), or an include
/// that cannot be read.
pub const REQUIREMENT_UNBUILDABLE: &str = "E277";
/// The project's settings module is not where `settings_module` (or its
/// default) says, or the project's WSGI module names another.
pub const SETTINGS_MODULE_ELSEWHERE: &str = "E279";
/// The project asks for another Python (`runtime.txt`, `.python-version`)
/// than the app's `python`.
pub const PYTHON_DISAGREES: &str = "E280";
/// The app's release would hold the spec's own files (the spec, its
/// secrets or override file, a local fleet's keys, a TLS file).
pub const RELEASE_HOLDS_SPEC: &str = "E278";

/// Whether `plan` cannot go on past this diagnostic.
pub fn needed_by_plan(diagnostic: &Diagnostic) -> bool {
    matches!(
        diagnostic.code,
        SOURCE_MISSING
            | REQUIREMENTS_MISSING
            | REQUIREMENT_UNBUILDABLE
            | RELEASE_HOLDS_SPEC
            | TLS_FILE_MISSING
            | TLS_UNUSABLE
    )
}

/// The text of an app's TLS certificate and key, read from beside the spec;
/// the error says which could not be read (`check` reports it: E273, E275).
pub fn tls_files(tls: &crate::model::Tls, base: &Path) -> Result<(String, String), (Span, String)> {
    let read = |(file, span): &(String, Span)| {
        std::fs::read_to_string(base.join(file))
            .map_err(|e| (*span, format!("`{file}` cannot be read: {e}")))
    };
    Ok((read(&tls.cert)?, read(&tls.key)?))
}

/// Every app's files, looked up from `base`, the spec's folder. All are
/// warnings here; `plan` raises those it needs (`needed_by_plan`). A file lookup costs about
/// 2 µs here, so a spec of thousands of apps looks them up on every core,
/// in slices, each keeping its apps' order.
pub fn check(fleet: &Fleet, base: &Path) -> Vec<Diagnostic> {
    let tls: Vec<PathBuf> = (fleet.apps.iter())
        .filter_map(|a| a.tls.as_ref())
        .flat_map(|t| [PathBuf::from(&t.cert.0), PathBuf::from(&t.key.0)])
        .collect();
    let spec_files = crate::plan::release::spec_files(base, &tls);
    let spec_files = &spec_files;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let slice = fleet.apps.len().div_ceil(threads).max(256);
    std::thread::scope(|scope| {
        let lookups: Vec<_> = fleet
            .apps
            .chunks(slice)
            .map(|apps| {
                scope.spawn(move || {
                    (apps.iter())
                        .flat_map(|app| check_app(app, base, spec_files))
                        .collect::<Vec<Diagnostic>>()
                })
            })
            .collect();
        lookups
            .into_iter()
            .flat_map(|lookup| {
                lookup
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// An app whose source holds its requirements and its module costs two
/// lookups; the folder itself is looked at only when the first fails.
fn check_app(app: &App, base: &Path, spec_files: &[PathBuf]) -> Vec<Diagnostic> {
    let source = base.join(&app.source);
    let mut found = tls_checks(app, base);
    found.extend(holds_spec_files(app, &source, spec_files));
    if !source.join(&app.requirements).is_file() {
        if !source.is_dir() {
            found.push(source_missing(app, base, &source));
            return found;
        }
        found.push(requirements_missing(app, &source));
    } else {
        found.extend(unbuildable_requirements(app, &source));
    }
    found.extend(wsgi_missing(app, &source));
    found.extend(settings_module_elsewhere(app, &source));
    found.extend(python_disagrees(app, &source));
    found
}

/// E273 for each file of the app's `tls` that is not a file; else what
/// the files hold (`tls_problems`, or E275 when one cannot be read).
fn tls_checks(app: &App, base: &Path) -> Vec<Diagnostic> {
    let Some(tls) = &app.tls else {
        return Vec::new();
    };
    let missing: Vec<Diagnostic> = [("certificate", &tls.cert), ("key", &tls.key)]
        .into_iter()
        .filter(|(_, (file, _))| !base.join(file).is_file())
        .map(|(what, (file, span))| {
            Diagnostic::warning(
                TLS_FILE_MISSING,
                format!("the TLS {what} of app `{}`, `{file}`, is not a file", app.name),
            )
            .primary(*span, format!("looked for {}", shown(&base.join(file))))
            .help(format!(
                "name the PEM file beside the spec (relative to {}), as certbot writes them: `cert` the fullchain.pem, `key` the privkey.pem",
                shown(base)
            ))
        })
        .collect();
    if !missing.is_empty() {
        return missing;
    }
    match tls_files(tls, base) {
        Ok((cert, key)) => tls_problems(app, tls, &cert, &key),
        Err((span, why)) => vec![unusable(app, span, why)],
    }
}

/// E275 when the files are not a PEM certificate chain and the key that
/// fits its first certificate (the balancer would refuse them at apply);
/// else E274 for each domain of the app (but `*`) that the certificate does
/// not name, which clients would refuse.
fn tls_problems(app: &App, tls: &crate::model::Tls, cert: &str, key: &str) -> Vec<Diagnostic> {
    use crate::balancer::{certified_key, PairProblem, Unfit};
    let provider = rustls::crypto::ring::default_provider();
    let pair = match certified_key(cert.as_bytes(), key.as_bytes(), &provider) {
        Ok(pair) => pair,
        Err(problem) => {
            let (span, what) = match problem {
                PairProblem::Certificates(e) => (
                    tls.cert.1,
                    format!("the certificate file cannot be read: {e}"),
                ),
                PairProblem::NoCertificate => (
                    tls.cert.1,
                    "the certificate file holds no PEM certificate".to_string(),
                ),
                PairProblem::Key(e) => {
                    (tls.key.1, format!("the key file holds no private key: {e}"))
                }
                PairProblem::Unfit(why @ Unfit::Leaf) => (tls.cert.1, why.to_string()),
                PairProblem::Unfit(why) => (tls.key.1, why.to_string()),
            };
            return vec![unusable(app, span, what)];
        }
    };
    let Ok(leaf) = webpki::EndEntityCert::try_from(&pair.cert[0]) else {
        return vec![unusable(
            app,
            tls.cert.1,
            "its first certificate cannot be parsed".into(),
        )];
    };
    let names = (app.domains.iter())
        .filter(|(domain, _)| domain != "*")
        .filter(|(domain, _)| {
            // A wildcard domain stands for one label: any name in it.
            let name = domain.replacen('*', "any", 1);
            rustls::pki_types::ServerName::try_from(name.as_str())
                .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_err())
        })
        .map(|(domain, span)| {
            Diagnostic::warning(
                TLS_NAME_MISSING,
                format!("the certificate of app `{}` does not name `{domain}`", app.name),
            )
            .primary(*span, "clients refuse https for this domain")
            .secondary(tls.cert.1, "this certificate")
            .help(format!(
                "get a certificate that names it too (certbot: `-d {domain}`), or drop it from `domains`"
            ))
        });
    names
        .chain(expiry(app, tls, &pair.cert[0], SystemTime::now()))
        .collect()
}

/// E276 when the certificate (`leaf`, DER) has expired, expires within
/// `EXPIRY_WARNING` of `now`, or is not valid yet.
fn expiry(app: &App, tls: &crate::model::Tls, leaf: &[u8], now: SystemTime) -> Option<Diagnostic> {
    let (not_before, not_after) = crate::balancer::validity(leaf)?;
    let (what, label, help) = expiry_words(not_before, not_after, now)?;
    Some(
        Diagnostic::warning(
            TLS_EXPIRY,
            format!("the certificate of app `{}` {what}", app.name),
        )
        .primary(tls.cert.1, label)
        .help(help),
    )
}

/// What E276 says of a certificate valid from `not_before` to `not_after`
/// at `now` (its message's end, label and help), if anything.
fn expiry_words(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
) -> Option<(String, &'static str, &'static str)> {
    use crate::balancer::{date, standing, Standing};
    let renew = "renew it (`certbot renew`, or from your CA) and run `sitec apply`: the balancers serve what the files hold when it runs";
    match standing(not_before, not_after, now) {
        Standing::Valid => None,
        Standing::Expired => Some((
            format!("expired on {}", date(not_after)),
            "clients refuse it",
            renew,
        )),
        Standing::NotYet => Some((
            format!("is not valid before {}", date(not_before)),
            "clients refuse it until then",
            "a certificate from the future: check this machine's clock, or wait for the date",
        )),
        Standing::ExpiresSoon(left) => {
            let days = match left.as_secs() / 86_400 {
                0 => "in less than a day".to_string(),
                1 => "in 1 day".to_string(),
                n => format!("in {n} days"),
            };
            Some((
                format!("expires on {} ({days})", date(not_after)),
                "renew it before then",
                renew,
            ))
        }
    }
}

/// E275: the app's TLS files, at `span`, are not what `what` says.
fn unusable(app: &App, span: Span, what: String) -> Diagnostic {
    Diagnostic::warning(
        TLS_UNUSABLE,
        format!("the TLS files of app `{}`: {what}", app.name),
    )
    .primary(span, "this file")
    .help("`cert` is the PEM certificate chain, leaf first (certbot's fullchain.pem); `key` its private key (privkey.pem)")
}

fn source_missing(app: &App, base: &Path, source: &Path) -> Diagnostic {
    let what = if source.exists() {
        "is not a folder"
    } else {
        "does not exist"
    };
    let written = Path::new(app.source.trim_end_matches('/'));
    let sibling = written.file_name().and_then(|name| {
        let names = sorted_entries(source.parent()?, Path::is_dir);
        let name = name.to_string_lossy();
        crate::suggest::closest(&name, names.iter().map(String::as_str)).map(str::to_string)
    });
    let parent = written.parent().filter(|p| !p.as_os_str().is_empty());
    let help = match (sibling, parent) {
        (_, Some(folder)) if source.is_file() => format!(
            "did you mean the folder that holds it, `source = \"{}\"`?",
            folder.display()
        ),
        (Some(name), _) => format!(
            "did you mean `source = \"{}\"`?",
            written.with_file_name(name).display()
        ),
        _ => format!(
            "`source` is relative to the spec's folder ({}): name the folder that holds the app's code (its manage.py)",
            shown(base)
        ),
    };
    Diagnostic::warning(
        SOURCE_MISSING,
        format!("the source of app `{}`, `{}`, {what}", app.name, app.source),
    )
    .primary(
        app.source_span,
        if base.as_os_str().is_empty() {
            "not beside the spec".to_string()
        } else {
            format!("looked for {}", source.display())
        },
    )
    .help(help)
}

fn requirements_missing(app: &App, source: &Path) -> Diagnostic {
    let wanted = Path::new(&app.requirements);
    let folder = source.join(wanted.parent().unwrap_or(Path::new("")));
    let files = sorted_entries(&folder, Path::is_file);
    let name = wanted
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let similar = crate::suggest::closest(&name, files.iter().map(String::as_str)).or_else(|| {
        files
            .iter()
            .map(String::as_str)
            .find(|f| f.contains("requirements") && f.ends_with(".txt"))
    });
    let help = match similar {
        Some(file) => format!(
            "did you mean `requirements = \"{}\"`?",
            wanted.with_file_name(file).display()
        ),
        None => "sitec builds the app's wheelhouse from a pip requirements file: add one \
                 (`pip freeze > requirements.txt`), or name yours with `requirements = \"...\"`"
            .to_string(),
    };
    let diagnostic = Diagnostic::warning(
        REQUIREMENTS_MISSING,
        format!(
            "app `{}` has no requirements file `{}` in its source `{}`",
            app.name, app.requirements, app.source
        ),
    );
    match app.requirements_span {
        Some(span) => diagnostic.primary(span, "no such file in the source"),
        None => diagnostic.primary(
            app.source_span,
            format!("no {} here (the default `requirements`)", app.requirements),
        ),
    }
    .help(help)
}

/// E278 when the app's release would hold files sitec keeps beside the
/// spec for itself: the spec's folder is inside the source, and the
/// project's ignore files do not leave them out.
fn holds_spec_files(app: &App, source: &Path, spec_files: &[PathBuf]) -> Option<Diagnostic> {
    let held = match crate::plan::release::holding_spec_files(source, spec_files) {
        Ok(held) => held,
        Err(why) => {
            return Some(
                Diagnostic::error(
                    RELEASE_HOLDS_SPEC,
                    format!("the release of app `{}`: {why}", app.name),
                )
                .primary(app.source_span, "this folder"),
            )
        }
    };
    let first = held.first()?;
    let mut shown: Vec<String> = held
        .iter()
        .take(3)
        .map(|p| format!("`{}`", p.display()))
        .collect();
    if held.len() > 3 {
        shown.push(format!("and {} more", held.len() - 3));
    }
    let folder = first.parent().filter(|p| !p.as_os_str().is_empty());
    let ignore = folder.map_or_else(
        || format!("/{}", first.display()),
        |f| format!("/{}/", f.display()),
    );
    Some(
        Diagnostic::error(
            RELEASE_HOLDS_SPEC,
            format!(
                "the release of app `{}` would ship the spec's own files to every runner: {}",
                app.name,
                shown.join(", ")
            ),
        )
        .primary(app.source_span, "this folder holds the spec's folder")
        .help(format!(
            "keep the spec outside the app's source, or leave its folder out of the release: add `{ignore}` to a `.sitecignore` in the source"
        )),
    )
}

/// The Python a project asks for, as `major.minor`, and the file that says
/// so: `.python-version` (pyenv, uv: `3.12`, `3.12.1`) or `runtime.txt`
/// (Heroku's: `python-3.12.1`).
fn project_python(source: &Path) -> Option<(String, &'static str)> {
    [".python-version", "runtime.txt"]
        .into_iter()
        .find_map(|file| {
            let text = std::fs::read_to_string(source.join(file)).ok()?;
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))?;
            let version = line.strip_prefix("python-").unwrap_or(line);
            let mut parts = version.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            let numeric = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
            (numeric(major) && numeric(minor)).then(|| (format!("{major}.{minor}"), file))
        })
}

/// E280: the project says which Python it runs on, and the app's `python`
/// (or its default) is another.
fn python_disagrees(app: &App, source: &Path) -> Option<Diagnostic> {
    let (asked, file) = project_python(source)?;
    if asked == app.python || (app.python == "3" && asked.starts_with("3.")) {
        return None;
    }
    let span = app.python_span.unwrap_or(app.source_span);
    let written = if app.python_span.is_some() {
        ""
    } else {
        " (the default)"
    };
    Some(
        Diagnostic::warning(
            PYTHON_DISAGREES,
            format!(
                "app `{}` runs on Python {}{written}, but its `{file}` asks for {asked}",
                app.name, app.python
            ),
        )
        .primary(span, format!("the hosts build its virtualenv with Python {}", app.python))
        .help(format!(
            "say `python = \"{asked}\"` (a host that lacks it gets sitec's build of CPython, which plan shows), or make the project's `{file}` say {}",
            app.python
        )),
    )
}

/// The file of Python module `module` in the source, under one of the
/// app's `paths` (`a/b.py` or `a/b/__init__.py`).
fn module_file(app: &App, source: &Path, module: &str) -> Option<PathBuf> {
    let relative: PathBuf = module.split('.').collect();
    app.paths
        .iter()
        .flat_map(|p| {
            let dir = below(source, p).join(&relative);
            [dir.with_extension("py"), dir.join("__init__.py")]
        })
        .find(|c| c.is_file())
}

/// The settings module a project's WSGI module asks for:
/// `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "X")`, as
/// `django-admin startproject` and project templates write it.
fn wsgi_settings_default(text: &str) -> Option<&str> {
    let at = text.find("DJANGO_SETTINGS_MODULE")?;
    let rest = text[at + "DJANGO_SETTINGS_MODULE".len()..].trim_start();
    let rest = rest.strip_prefix(['"', '\''])?.trim_start();
    let rest = rest.strip_prefix(',')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(&value[..value.find(quote)?])
}

/// E279: the settings module the app runs with is not in its source, or
/// (when the spec leaves `settings_module` to its default) the project's
/// WSGI module asks for another, which production usually means.
fn settings_module_elsewhere(app: &App, source: &Path) -> Option<Diagnostic> {
    let wsgi_module = app.wsgi.split(':').next().unwrap_or_default();
    let asked = module_file(app, source, wsgi_module)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| wsgi_settings_default(&text).map(str::to_string));
    let span = app.settings_module_span.unwrap_or(app.wsgi_span);
    let module = &app.settings_module;
    // A settings package's production module, beside the one the WSGI
    // module asks for (project templates point it at their dev settings).
    let production = asked.as_deref().and_then(|asked| {
        let package = asked.rsplit_once('.')?.0;
        ["production", "prod"]
            .iter()
            .map(|name| format!("{package}.{name}"))
            .find(|m| module_file(app, source, m).is_some())
    });
    if let (None, Some(asked)) = (app.settings_module_span, &asked) {
        if asked != module && module_file(app, source, asked).is_some() {
            let (suggested, why) = match &production {
                Some(production) => (
                    production.as_str(),
                    "the settings package's production module",
                ),
                None => (asked.as_str(), "the one its WSGI module names"),
            };
            return Some(
                Diagnostic::warning(
                    SETTINGS_MODULE_ELSEWHERE,
                    format!(
                        "app `{}` runs with the settings module `{module}` (the default), but its WSGI module asks for `{asked}`",
                        app.name
                    ),
                )
                .primary(span, format!("`settings_module` is left to its default, `{module}`"))
                .help(format!("say which: `settings_module = \"{suggested}\"` ({why}), or `settings_module = \"{module}\"`")),
            );
        }
    }
    if module_file(app, source, module).is_some() {
        return None;
    }
    let help = match (production, asked.filter(|a| module_file(app, source, a).is_some())) {
        (Some(production), _) => format!("the settings package has `{production}`: `settings_module = \"{production}\"`"),
        (None, Some(asked)) => format!("its WSGI module names `{asked}`: `settings_module = \"{asked}\"`"),
        (None, None) => "name the project's Django settings module, as `DJANGO_SETTINGS_MODULE` would: `settings_module = \"mysite.settings.production\"`".into(),
    };
    Some(
        Diagnostic::warning(
            SETTINGS_MODULE_ELSEWHERE,
            format!(
                "the settings module of app `{}`, `{module}`, is not in its source",
                app.name
            ),
        )
        .primary(span, "sitec's settings import this module")
        .help(help),
    )
}

/// E277 for each line of the requirements (and the files they include)
/// that a wheelhouse cannot hold, with the file and line.
fn unbuildable_requirements(app: &App, source: &Path) -> Vec<Diagnostic> {
    let (_, problems) = crate::requirements::read(source, &app.requirements);
    let span = app.requirements_span.unwrap_or(app.source_span);
    problems
        .into_iter()
        .map(|problem| {
            Diagnostic::warning(
                REQUIREMENT_UNBUILDABLE,
                format!(
                    "the requirements of app `{}`: {}: {}",
                    app.name, problem.at, problem.message
                ),
            )
            .primary(span, "in these requirements")
            .help(problem.help)
        })
        .collect()
}

/// `None` when the module is in the source under one of the app's `paths`
/// (as `a/b.py` or `a/b/__init__.py`), or `wsgi` is empty.
fn wsgi_missing(app: &App, source: &Path) -> Option<Diagnostic> {
    let (module, callable) = app
        .wsgi
        .split_once(':')
        .unwrap_or((&app.wsgi, "application"));
    if module.is_empty() {
        return None;
    }
    let relative: PathBuf = module.split('.').collect();
    let candidates: Vec<PathBuf> = app
        .paths
        .iter()
        .flat_map(|p| {
            let dir = below(source, p).join(&relative);
            [dir.with_extension("py"), dir.join("__init__.py")]
        })
        .collect();
    if candidates.iter().any(|c| c.is_file()) {
        return None;
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    let field = if app.asgi { "asgi" } else { "wsgi" };
    let help = match wsgi_files(source, &format!("{field}.py"))
        .iter()
        .find_map(|f| module_of(app, source, f))
    {
        Some(found) => format!("did you mean `{field} = \"{found}:{callable}\"`?"),
        None => format!(
            "name the module gunicorn imports, as in Python (`mysite.{field}:application` \
             for mysite/{field}.py); one installed by the requirements is fine too"
        ),
    };
    Some(
        Diagnostic::warning(
            WSGI_MISSING,
            format!(
                "the {} module of app `{}`, `{module}`, is not in its source",
                field.to_uppercase(),
                app.name
            ),
        )
        .primary(app.wsgi_span, "gunicorn imports this module")
        .note(format!("looked for {}", looked.join(", ")))
        .help(help),
    )
}

/// `dir/relative` without the `.` parts (`paths = ["."]` is the source).
fn below(dir: &Path, relative: &str) -> PathBuf {
    Path::new(relative)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .fold(dir.to_path_buf(), |path, c| path.join(c))
}

/// The dotted module a file stands for under one of the app's `paths`.
fn module_of(app: &App, source: &Path, file: &Path) -> Option<String> {
    app.paths.iter().find_map(|p| {
        let rest = file.strip_prefix(below(source, p)).ok()?.with_extension("");
        let parts: Vec<&str> = rest.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        parts
            .iter()
            .all(|part| crate::names::is_python_name(part))
            .then(|| parts.join("."))
    })
}

/// Every `file` (`wsgi.py`, `asgi.py`) in the source, shallowest first, not
/// looking into hidden folders, virtualenvs or caches, nor deeper than four
/// levels.
fn wsgi_files(source: &Path, file: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![source.to_path_buf()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for dir in level {
            for name in sorted_entries(&dir, |_| true) {
                let path = dir.join(&name);
                if path.is_dir() {
                    let skipped = name.starts_with('.')
                        || matches!(
                            name.as_str(),
                            "__pycache__" | "node_modules" | "site-packages"
                        )
                        || path.join("pyvenv.cfg").exists();
                    if !skipped {
                        next.push(path);
                    }
                } else if name == file {
                    found.push(path);
                }
            }
        }
        level = next;
    }
    found
}

/// The names in `dir` whose paths pass `keep`, sorted (a folder that cannot
/// be read has none).
fn sorted_entries(dir: &Path, keep: fn(&Path) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .into_iter()
    .flatten()
    .flatten()
    .filter(|entry| keep(&entry.path()))
    .filter_map(|entry| entry.file_name().into_string().ok())
    .collect();
    names.sort();
    names
}

/// A folder as the operator would write it (`.` for the current one).
fn shown(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".to_string()
    } else {
        dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    /// The codes `check` gives for one app of `fields` whose source is
    /// `apps/a` in a folder holding `files`, and their help lines.
    fn found(fields: &str, files: &[&str]) -> Vec<(&'static str, Option<String>)> {
        found_for(r#""a.example.com""#, fields, files)
    }

    /// `found` for an app of these domains.
    fn found_for(
        domains: &str,
        fields: &str,
        files: &[&str],
    ) -> Vec<(&'static str, Option<String>)> {
        let base = tempfile::tempdir().expect("temp dir");
        for file in files {
            let path = base.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, "").expect("write");
        }
        let spec = format!(
            "use std/platform\nprovider p {{ kind = local }}\n\
             host h {{ provider = p  roles = [balancer, runner, postgres] }}\n\
             checks {{ balancer_redundancy = off }}\n\
             app a {{ source = \"apps/a\"  domains = [{domains}]  {fields} }}\n"
        );
        let mut sources = SourceMap::new();
        let (done, diagnostics) =
            crate::compile::with_fleet_text(&mut sources, "t.site", &spec, |fleet, _| {
                check(fleet, base.path())
            });
        let done = done.unwrap_or_else(|| panic!("{diagnostics:?}"));
        // The settings module has tests of its own (settings_module_*).
        (done.into_iter())
            .filter(|d| d.code != SETTINGS_MODULE_ELSEWHERE || fields.contains("settings_module"))
            .map(|d| (d.code, d.help))
            .collect()
    }

    /// An app `a` whose `wsgi` is `mysite.wsgi:application`, source `.`.
    fn test_app() -> App {
        let spec = "use std/platform\nprovider p { kind = local }\n\
             host h { provider = p  roles = [balancer, runner, postgres] }\n\
             checks { balancer_redundancy = off }\n\
             app a { source = \".\"  wsgi = \"mysite.wsgi:application\"  domains = [\"a.example.com\"] }\n";
        let mut sources = SourceMap::new();
        let (app, diagnostics) =
            crate::compile::with_fleet_text(&mut sources, "t.site", spec, |fleet, _| {
                fleet.apps[0].clone()
            });
        app.unwrap_or_else(|| panic!("{diagnostics:?}"))
    }

    #[test]
    fn the_python_a_project_asks_for_is_read_and_compared() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            python_disagrees(&test_app(), dir.path()).map(|d| d.message),
            None
        );
        std::fs::write(dir.path().join("runtime.txt"), "python-3.12.1\n").expect("write");
        assert_eq!(
            project_python(dir.path()),
            Some(("3.12".into(), "runtime.txt"))
        );
        let found = python_disagrees(&test_app(), dir.path()).expect("E280");
        assert_eq!(
            found.message,
            "app `a` runs on Python 3.11 (the default), but its `runtime.txt` asks for 3.12"
        );
        std::fs::write(dir.path().join(".python-version"), "3.11\n").expect("write");
        assert_eq!(
            project_python(dir.path()),
            Some(("3.11".into(), ".python-version"))
        );
        assert_eq!(
            python_disagrees(&test_app(), dir.path()).map(|d| d.message),
            None
        );
    }

    #[test]
    fn settings_module_default_and_the_wsgi_modules_choice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("mysite/wsgi.py", "import os\nos.environ.setdefault(\n    'DJANGO_SETTINGS_MODULE', \"mysite.settings.production\")\n");
        write("mysite/settings/__init__.py", "");
        write("mysite/settings/production.py", "");
        assert_eq!(
            wsgi_settings_default(
                &std::fs::read_to_string(dir.path().join("mysite/wsgi.py")).expect("read")
            ),
            Some("mysite.settings.production")
        );
        let app = |module: Option<&str>| App {
            settings_module: module.unwrap_or("mysite.settings").to_string(),
            settings_module_span: module.map(|_| Span::default()),
            ..test_app()
        };
        let asked = settings_module_elsewhere(&app(None), dir.path()).expect("E279");
        assert!(
            asked
                .message
                .contains("its WSGI module asks for `mysite.settings.production`"),
            "{}",
            asked.message
        );
        assert_eq!(
            settings_module_elsewhere(&app(Some("mysite.settings.production")), dir.path())
                .map(|d| d.message),
            None
        );
        let missing = settings_module_elsewhere(&app(Some("mysite.settings.prod")), dir.path())
            .expect("E279");
        assert!(
            missing.message.contains("is not in its source"),
            "{}",
            missing.message
        );
        assert_eq!(missing.help.as_deref(), Some("the settings package has `mysite.settings.production`: `settings_module = \"mysite.settings.production\"`"));
    }

    #[test]
    fn a_module_is_found_under_any_path_as_a_file_or_a_package() {
        let files = [
            "apps/a/requirements.txt",
            "apps/a/src/site/wsgi/__init__.py",
        ];
        assert_eq!(
            found(r#"wsgi = "site.wsgi:app"  paths = [".", "src"]"#, &files),
            []
        );
        let files = ["apps/a/requirements.txt", "apps/a/./a/wsgi.py"];
        assert_eq!(found(r#"wsgi = "a.wsgi:application""#, &files), []);
    }

    #[test]
    fn the_suggested_module_is_dotted_from_a_path_and_skips_virtualenvs() {
        let files = [
            "apps/a/requirements.txt",
            "apps/a/.venv/lib/wsgi.py",
            "apps/a/venv/pyvenv.cfg",
            "apps/a/venv/wsgi.py",
            "apps/a/src/mysite/wsgi.py",
        ];
        assert_eq!(
            found(r#"wsgi = "wsgi:application"  paths = ["src"]"#, &files),
            [(
                WSGI_MISSING,
                Some("did you mean `wsgi = \"mysite.wsgi:application\"`?".to_string())
            )]
        );
    }

    /// The codes `check` gives for an app of `domains` whose `tls` is the
    /// fixture `NAME.pem` and `NAME.key` of tests/balancer/tls.
    fn tls_codes(domains: &str, name: &str) -> Vec<&'static str> {
        let fixture = format!("{}/tests/balancer/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        let fields = format!(
            "wsgi = \"a.wsgi\"  tls {{ cert = \"{fixture}.pem\"  key = \"{fixture}.key\" }}"
        );
        let files = ["apps/a/requirements.txt", "apps/a/a/wsgi.py"];
        (found_for(domains, &fields, &files).iter())
            .map(|d| d.0)
            .collect()
    }

    #[test]
    fn a_wildcard_certificate_names_the_domains_it_covers() {
        let codes = |domains: &str| tls_codes(domains, "wild");
        assert_eq!(
            codes(r#""shop.b.example.com", "*.b.example.com", "*""#),
            Vec::<&str>::new()
        );
        assert_eq!(codes(r#""b.example.com""#), [TLS_NAME_MISSING]);
    }

    #[test]
    fn only_the_folder_and_the_requirements_stop_a_plan() {
        let codes: Vec<_> = found(r#"wsgi = "a.wsgi:application""#, &["apps/a/x.py"]);
        assert_eq!(
            codes.iter().map(|c| c.0).collect::<Vec<_>>(),
            [REQUIREMENTS_MISSING, WSGI_MISSING]
        );
        let d = |code| Diagnostic::warning(code, "");
        assert!(needed_by_plan(&d(SOURCE_MISSING)) && needed_by_plan(&d(REQUIREMENTS_MISSING)));
        assert!(!needed_by_plan(&d(WSGI_MISSING)));
        // A certificate past its date or close to it is worth a warning, not
        // a plan stopped: the fix (a renewal) is shipped by a plan too.
        assert!(!needed_by_plan(&d(TLS_EXPIRY)) && !needed_by_plan(&d(TLS_NAME_MISSING)));
    }

    #[test]
    fn a_certificate_is_warned_of_when_expired_close_to_expiry_or_not_yet_valid() {
        use std::time::Duration;
        let day = |n: u64| std::time::UNIX_EPOCH + Duration::from_secs(n * 86_400);
        let (from, until) = (day(20_000), day(20_090));
        let said = |now| expiry_words(from, until, now).map(|(what, _, _)| what);
        assert_eq!(said(day(20_000)), None);
        assert_eq!(said(day(20_076)), None);
        assert_eq!(
            said(day(20_077)).as_deref(),
            Some("expires on 2025-01-02 (in 13 days)")
        );
        assert_eq!(
            said(day(20_089)).as_deref(),
            Some("expires on 2025-01-02 (in 1 day)")
        );
        let last_hour = day(20_090) - Duration::from_secs(3600);
        assert_eq!(
            said(last_hour).as_deref(),
            Some("expires on 2025-01-02 (in less than a day)")
        );
        assert_eq!(said(day(20_090)).as_deref(), Some("expired on 2025-01-02"));
        assert_eq!(
            said(day(19_999)).as_deref(),
            Some("is not valid before 2024-10-04")
        );
        // Through `check`, with a certificate that expired in 2020.
        let codes = tls_codes(r#""expired.localhost""#, "expired");
        assert_eq!(codes, [TLS_EXPIRY]);
    }
}
