//! The shapes of the strings a spec hands to other programs as they are:
//! an app's domains (nginx's `server_name`, Django's `ALLOWED_HOSTS`, the
//! balancer's routes), a host's address (ssh, `/etc/hosts`, the balancer's
//! backends), an app's WSGI callable (gunicorn's `wsgi_app`), Python
//! version, static URL and folder (nginx's `location` and `alias`), a
//! setting's name (the rendered settings module), a file's mode, a role's
//! paths on the host, and every one-line string (systemd's `ExecStart=`).
//! One definition each, used by the compiler (E113, E114 and E225, at the
//! place in the spec), the balancer's own config check (a file may be
//! written by hand), the local override file and `sitec set`.
//!
//! Each check answers what is wrong and how to write it instead, or `None`.

/// What is wrong with a value, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl Problem {
    /// The problem as one line of an error about `place` (a key, a file's
    /// line): "PLACE: WHAT; FIX".
    pub fn at(&self, place: &str) -> String {
        format!("{place}: {}; {}", self.what, self.fix)
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Option<Problem> {
    Some(Problem {
        what: what.into(),
        fix: fix.into(),
    })
}

/// A domain an app answers: `blog.example.com`, `*.example.com` (the names
/// under it) or `*` (every Host no other app claims). Letters, digits, `-`
/// and `_` in dot-separated labels of 1 to 63 characters, 253 at most.
pub fn domain_problem(domain: &str) -> Option<Problem> {
    const EXAMPLES: &str = "write a host name such as `blog.example.com`, `*.example.com` or `*`";
    if domain == "*" {
        return None;
    }
    if let Some((scheme, rest)) = domain.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        return problem(
            format!("`{domain}` is a URL, not a domain"),
            format!("write the host name alone, without `{scheme}://` or a path: `{host}`"),
        );
    }
    let name = domain.strip_prefix("*.").unwrap_or(domain);
    if name.contains('*') {
        return problem(
            format!("`{domain}` has a `*` inside it"),
            "a wildcard stands first and alone in its label: `*.example.com`, or `*` for every Host",
        );
    }
    if let Some((host, _)) = name.split_once('/') {
        return problem(
            format!("`{domain}` holds a path"),
            format!("domains route by Host only; write `{host}`"),
        );
    }
    if let Some((host, _)) = name.split_once(':') {
        return problem(
            format!("`{domain}` holds a port"),
            format!("the balancer's listeners set the ports; write `{host}`"),
        );
    }
    if name.chars().any(char::is_whitespace) || name.contains(',') {
        return problem(
            format!("`{domain}` holds spaces or commas"),
            "one domain per string: [\"a.example.com\", \"b.example.com\"]",
        );
    }
    if let Some(bare) = name.strip_suffix('.').filter(|b| !b.is_empty()) {
        return problem(
            format!("`{domain}` ends with a dot"),
            format!("write it without the final dot: `{bare}` (a request for `{domain}` still finds it)"),
        );
    }
    if name.is_empty() || name.len() > 253 {
        return problem(format!("`{domain}` is not a domain"), EXAMPLES);
    }
    if let Some(label) = name.split('.').find(|l| !label_ok(l)) {
        let odd = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')));
        let what = match odd {
            _ if label.is_empty() => {
                format!("`{domain}` has an empty label (two dots together, or a dot first)")
            }
            Some(c) => format!("`{domain}` holds `{c}`, which a host name cannot"),
            None if label.len() > 63 => {
                format!("`{domain}` has a label longer than 63 characters")
            }
            None => format!("`{domain}` has a label that starts or ends with `-`"),
        };
        let fix = if odd.is_some_and(|c| !c.is_ascii()) {
            format!("{EXAMPLES}; an international name in its `xn--` (punycode) form")
        } else {
            EXAMPLES.to_string()
        };
        return problem(what, fix);
    }
    None
}

fn label_ok(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A host's address: an IPv4 or IPv6 address, or a DNS name.
pub fn address_problem(address: &str) -> Option<Problem> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if let Some((user, host)) = address.split_once('@') {
        return problem(
            format!("`{address}` holds a user"),
            format!("write `{host}`, and the user as `user = \"{user}\"` in the host's provider"),
        );
    }
    if let Some((host, port)) = address.rsplit_once(':').filter(|(h, p)| {
        // An IPv6 address is colons all along; its port comes after `]`.
        p.parse::<u16>().is_ok() && (!h.contains(':') || h.starts_with('[') && h.ends_with(']'))
    }) {
        return problem(
            format!("`{address}` holds a port"),
            format!("write `{host}`, and the SSH port as `port = {port}` in the host's provider"),
        );
    }
    let name = address.strip_suffix('.').unwrap_or(address);
    // A name's last label is never all digits: this is an IPv4 address
    // with a number out of range, or too few or many numbers.
    let last = name.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return problem(
            format!("`{address}` is not an IPv4 address"),
            "an IPv4 address is four numbers from 0 to 255, such as `203.0.113.10`",
        );
    }
    let ipv6_like = address
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '[' | ']'));
    if address.contains(':') && ipv6_like {
        return problem(
            format!("`{address}` is not an IPv6 address"),
            "write an IPv6 address such as `2001:db8::10`, without brackets or a port",
        );
    }
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return problem(
            format!("`{address}` is neither an IP address nor a DNS name"),
            "write an IP address such as `203.0.113.10` or a name such as `web1.example.com`",
        );
    }
    None
}

/// A host's address, where the balancer dials its runners and nginx lets
/// the balancers in: an IP address (neither resolves a DNS name).
pub fn ip_address_problem(address: &str) -> Option<Problem> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    address_problem(address).or_else(|| {
        problem(
            format!("`{address}` is a name, not an IP address"),
            "write the host's IP address, such as `203.0.113.10`: the balancers dial it, and nginx lets only addresses in",
        )
    })
}

/// Whether `s` is a Python name (a module path's part, a callable).
pub fn is_python_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// An app's WSGI callable as gunicorn takes it: a dotted module path, then
/// optionally `:` and the name of the callable in it (`application` if left
/// out), or a call of a factory (`create_app()`).
pub fn wsgi_problem(wsgi: &str) -> Option<Problem> {
    let (module, callable) = wsgi.split_once(':').unwrap_or((wsgi, "application"));
    if module.ends_with(".py") || module.contains('/') {
        let dotted = module.trim_end_matches(".py").replace('/', ".");
        return problem(
            format!("`{wsgi}` is a file path"),
            format!("write the module's dotted name: `{dotted}:application`"),
        );
    }
    if !module.split('.').all(is_python_name) {
        return problem(
            format!("`{wsgi}`: `{module}` is not a Python module path"),
            "write `module.path:name`, e.g. `blog.wsgi:application`",
        );
    }
    if callable.contains(['"', '\\']) {
        return problem(
            format!("`{wsgi}`: a factory's arguments hold `\"` or `\\`"),
            "write a factory's string arguments in single quotes, without backslashes: `app:create_app('production')`",
        );
    }
    let name = callable.split_once('(').map_or(callable, |(n, _)| n);
    if !is_python_name(name) || (callable.contains('(') && !callable.ends_with(')')) {
        return problem(
            format!("`{wsgi}`: `{callable}` is not a name in the module"),
            "after the `:`, the callable's name (`application`) or a factory's call (`create_app()`)",
        );
    }
    None
}

/// An app's Python version as the hosts name their interpreters
/// (`python3.11`): `3.11`, or `3` for whichever `python3` is.
pub fn python_problem(version: &str) -> Option<Problem> {
    let numbers = |v: &str| {
        let mut parts = v.split('.');
        parts.next() == Some("3")
            && parts
                .next()
                .is_none_or(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_none()
    };
    if numbers(version) {
        return None;
    }
    let bare = version
        .trim_start_matches("python")
        .trim_start_matches("Python")
        .trim();
    let fix = if numbers(bare) {
        format!("write the version alone: \"{bare}\"")
    } else {
        let two = bare.split('.').take(2).collect::<Vec<_>>().join(".");
        if numbers(&two) {
            format!("write major.minor: \"{two}\" (the patch level is the host's)")
        } else {
            "write a Python 3 version as major.minor, e.g. \"3.11\"".to_string()
        }
    };
    problem(format!("`{version}` is not a Python version"), fix)
}

/// Where a folder of static files is served (nginx's `location`): a URL
/// path that starts and ends with `/`, in the characters a URL path holds
/// unescaped. The final `/` matters: `location /static` with its folder as
/// `alias` would serve `/static../` from the folder's parent.
pub fn url_prefix_problem(url: &str) -> Option<Problem> {
    let kept: Vec<&str> = url
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let fixed = match kept.is_empty() {
        true => "/static/".to_string(),
        false => format!("/{}/", kept.join("/")),
    };
    if !url.starts_with('/') || !url.ends_with('/') {
        return problem(
            format!("`{url}` must start and end with `/`"),
            format!("write \"{fixed}\""),
        );
    }
    let inner = url.get(1..url.len() - 1).unwrap_or_default();
    if inner.trim_matches('/').is_empty() {
        return problem(
            format!("`{url}` is the app's own root"),
            "gunicorn answers `/`; serve the files under a path of their own, e.g. \"/static/\"",
        );
    }
    let segments: Vec<&str> = inner.split('/').collect();
    if segments.contains(&"..") {
        return problem(
            format!("`{url}` has a `..` segment"),
            "write the path it stands for, without `..`",
        );
    }
    if segments.iter().any(|s| s.is_empty() || *s == ".") {
        return problem(
            format!("`{url}` has an empty or `.` segment"),
            format!("write \"{fixed}\""),
        );
    }
    if let Some(c) = url.chars().find(|c| !path_char(*c)) {
        return problem(
            format!("`{url}` holds `{c}`"),
            "use letters, digits and `-._~` between the slashes, e.g. \"/static/\"",
        );
    }
    None
}

/// A folder inside the app's release (`collected_static`): relative, no
/// `..`, in characters that need no quoting in nginx's config.
pub fn folder_problem(folder: &str) -> Option<Problem> {
    if folder.starts_with('/') {
        return problem(
            format!("`{folder}` is an absolute path"),
            "name a folder inside the app's release, relative to its source: \"collected_static\"",
        );
    }
    if folder.split('/').any(|s| s == "..") {
        return problem(
            format!("`{folder}` climbs out of the app's release with `..`"),
            "name a folder inside the app's release, relative to its source: \"collected_static\"",
        );
    }
    if folder.trim_matches(['.', '/']).is_empty() {
        return problem(
            format!("`{folder}` is the release itself"),
            "name the folder the static files are collected into, e.g. \"collected_static\": the release holds the code and its settings",
        );
    }
    if let Some(c) = folder.chars().find(|c| !path_char(*c)) {
        return problem(
            format!("`{folder}` holds `{c}`"),
            "use letters, digits, `-._~` and `/` in the folder's name",
        );
    }
    None
}

/// An entry of an app's Python path (`PYTHONPATH`, in a systemd unit's
/// `Environment=`): `.` (the release) or a folder inside it, in the
/// characters that need no quoting there (no blank, no `:`).
pub fn python_path_problem(path: &str) -> Option<Problem> {
    if path == "." {
        return None;
    }
    folder_problem(path).map(|p| Problem {
        fix: p.fix.replace("collected_static", "src").replace(
            "the folder the static files are collected into",
            "a folder of the release",
        ),
        what: p.what,
    })
}

/// A one-line string (a command, a user, a mode, a path): no line break or
/// other control character, which would end the line it is rendered into
/// (a systemd unit's `ExecStart=`) and start another.
pub fn one_line_problem(text: &str) -> Option<Problem> {
    let c = text.chars().find(|c| c.is_control())?;
    let what = match c {
        '\n' | '\r' => "a line break".to_string(),
        '\t' => "a tab".to_string(),
        c => format!("the control character U+{:04X}", u32::from(c)),
    };
    problem(
        format!("`{}` holds {what}", text.escape_debug()),
        "it is one line: join commands with `&&` or `;`, and put text of several lines in a file's `content`",
    )
}

/// A Django setting's name, as the settings module sitec renders holds it
/// (`from sitec_settings import *` at the end of the app's own): a Python
/// name (else the module does not compile), not starting with `_` (which
/// `import *` skips), in capitals (Django reads no other name from a
/// settings module).
pub fn setting_name_problem(name: &str) -> Option<Problem> {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    let words: Vec<&str> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let capitals = words.join("_").to_ascii_uppercase();
    let fix = match capitals.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => format!("write `{capitals}`"),
        _ => "a setting's name is letters, digits and `_` in capitals, starting with a letter: `MY_SETTING`".to_string(),
    };
    if !identifier {
        problem(
            format!("`{name}` is not a Python name, so no setting can have it"),
            fix,
        )
    } else if name.starts_with('_') {
        problem(
            format!(
                "`{name}` starts with `_`, and `from sitec_settings import *` skips such names"
            ),
            fix,
        )
    } else if name.chars().any(|c| c.is_ascii_lowercase()) {
        problem(
            format!("`{name}` is not in capitals, and Django reads only names in capitals from settings"),
            fix,
        )
    } else {
        None
    }
}

/// A file's permissions, in octal as chmod takes them: `0644`, `755`,
/// `2775` (three digits, or four with the setuid/setgid/sticky bits).
pub fn mode_problem(mode: &str) -> Option<Problem> {
    if (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let symbolic = mode.len() == 9
        && mode
            .bytes()
            .zip(b"rwxrwxrwx")
            .all(|(got, letter)| got == *letter || got == b'-');
    let fix = if symbolic {
        let bits = mode
            .bytes()
            .fold(0u32, |bits, b| bits << 1 | u32::from(b != b'-'));
        format!("write it in octal: \"{bits:04o}\"")
    } else {
        "write the permissions in octal, in quotes: \"0644\" (a file), \"0755\" (a directory)"
            .to_string()
    };
    problem(format!("`{mode}` is not an octal mode"), fix)
}

/// The longest host name: a DNS label (`/etc/hosts`, the machine's name).
pub const HOST_NAME_LONGEST: usize = 63;
/// The longest app name: its user, `app-NAME`, is at most 32.
pub const APP_NAME_LONGEST: usize = 28;

/// The name of a host or an app, as the agent's config takes it and as
/// it goes into user names (`app-NAME`), unit names and paths: lowercase
/// letters, digits, `_` and `-`, starting with a letter, at most `longest`.
pub fn fleet_name_problem(name: &str, longest: usize) -> Option<Problem> {
    let fix = format!("names are lowercase letters, digits, `_` and `-`, starting with a letter, at most {longest}: `{}`", suggested_name(name, longest));
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return problem(
            format!("`{name}` does not start with a lowercase letter"),
            fix,
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
    {
        return problem(format!("`{name}` holds `{c}`"), fix);
    }
    if name.len() > longest {
        return problem(format!("`{name}` is longer than {longest} characters"), fix);
    }
    None
}

/// `name` written as a fleet name: lowercase, cut to `longest`.
fn suggested_name(name: &str, longest: usize) -> String {
    let lower: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    let trimmed = lower.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut name: String = trimmed.chars().take(longest).collect();
    if name.is_empty() {
        name = "web1".to_string();
    }
    name
}

/// A user (or group) name as a host takes it: an SSH login, a file's
/// owner, a role's `user`. Letters, digits, `.`, `_` and `-`, not first,
/// at most 32 (what `useradd` and POSIX's portable names allow).
pub fn user_problem(user: &str) -> Option<Problem> {
    const FIX: &str =
        "a user name is letters, digits, `.`, `_` and `-`, not starting with `-`, such as `deploy`";
    if let Some((name, host)) = user.split_once('@') {
        return problem(
            format!("`{user}` holds a host"),
            format!("write the user alone, `{name}`; `{host}` belongs in the host's `address`"),
        );
    }
    if user.is_empty() || user.starts_with('-') || user.len() > 32 {
        return problem(format!("`{user}` is not a user name"), FIX);
    }
    if user.bytes().all(|b| b.is_ascii_digit()) {
        return problem(
            format!("`{user}` is all digits, which `chown` would take for a user id"),
            FIX,
        );
    }
    match user
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => problem(
            format!("`{user}` holds `{c}`, which a user name cannot"),
            FIX,
        ),
        None => None,
    }
}

/// A media store's name (`media "/media/" = "uploads"`): its folder's name
/// under /srv/sitec/apps/APP/media. Lowercase letters, digits and `-`,
/// starting with a letter, at most 64: a folder name in one piece.
pub fn media_name_problem(name: &str) -> Option<Problem> {
    const FIX: &str =
        "name the store in lowercase letters, digits and `-`, starting with a letter, such as \"uploads\"";
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || name.len() > 64 {
        return problem(format!("`{name}` is not a media store's name"), FIX);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(c) => problem(
            format!("`{name}` holds `{c}`, which a store's name cannot"),
            FIX,
        ),
        None => None,
    }
}

/// A Debian package's name as apt takes it (Debian Policy 5.6.1): lowercase
/// letters, digits, `+`, `-` and `.`, at least two, starting with a letter
/// or digit.
pub fn package_problem(name: &str) -> Option<Problem> {
    const FIX: &str = "a Debian package is named in lowercase letters, digits, `+`, `-` and `.`, such as `libpq-dev`";
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() < 2 || !first_ok {
        return problem(format!("`{name}` is not a Debian package's name"), FIX);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
    {
        Some(c) => problem(
            format!("`{name}` holds `{c}`, which a package name cannot"),
            FIX,
        ),
        None => None,
    }
}

/// A path on a host (a role's `file`, `directory`, ...): absolute, without
/// `..`, on one line.
pub fn host_path_problem(path: &str) -> Option<Problem> {
    if let Some(p) = one_line_problem(path) {
        return Some(p);
    }
    if !path.starts_with('/') {
        return problem(
            format!("`{path}` is not an absolute path"),
            format!(
                "write it from the root: \"/{}\"",
                path.trim_start_matches("./")
            ),
        );
    }
    if path.split('/').any(|s| s == "..") {
        return problem(
            format!("`{path}` has a `..` segment"),
            "write the path it stands for, without `..`",
        );
    }
    None
}

/// Characters a path may hold as they are, here: RFC 3986's unreserved
/// ones and `/`. Nothing nginx's config would need quoted.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_users_write_pass() {
        for d in [
            "*",
            "blog.example.com",
            "*.example.com",
            "localhost",
            "blog.localhost",
            "Blog.Example.COM",
            "xn--bcher-kva.example",
            "my_internal.host",
            "10.0.0.5",
            "a-b.c",
        ] {
            assert_eq!(domain_problem(d), None, "{d}");
        }
    }

    #[test]
    fn each_wrong_domain_is_named_with_its_fix() {
        for (d, what, fix) in [
            ("https://blog.example.com/", "a URL", "`blog.example.com`"),
            ("blog.example.com:8080", "a port", "`blog.example.com`"),
            ("blog.example.com/admin", "a path", "`blog.example.com`"),
            ("blog.example.com.", "ends with a dot", "`blog.example.com`"),
            ("a.com b.com", "spaces", "one domain per string"),
            ("a.com,b.com", "commas", "one domain per string"),
            ("blog.*.com", "`*` inside", "`*.example.com`"),
            ("*blog.com", "`*` inside", "`*.example.com`"),
            ("a..com", "empty label", "`blog.example.com`"),
            (".a.com", "empty label", "`blog.example.com`"),
            ("", "not a domain", "`blog.example.com`"),
            ("-a.com", "starts or ends with `-`", "`blog.example.com`"),
            ("bücher.de", "holds `ü`", "`xn--`"),
            (&"a".repeat(64), "longer than 63", "`blog.example.com`"),
        ] {
            let p = domain_problem(d).unwrap_or_else(|| panic!("{d} passed"));
            assert!(p.what.contains(what), "{d}: {p:?}");
            assert!(p.fix.contains(fix), "{d}: {p:?}");
        }
    }

    type Check = fn(&str) -> Option<Problem>;

    /// Every one of `good` passes `check`; every one of `bad` fails it with
    /// a fix that holds the text given beside it.
    fn shapes(check: Check, good: &[&str], bad: &[(&str, &str)]) {
        for value in good {
            assert_eq!(check(value), None, "{value}");
        }
        for (value, fix) in bad {
            let p = check(value).unwrap_or_else(|| panic!("{value} passed"));
            assert!(p.fix.contains(fix), "{value}: {p:?}");
        }
    }

    #[test]
    fn addresses() {
        shapes(
            address_problem,
            &["203.0.113.10", "2001:db8::1", "web1.example.com", "db1"],
            &[
                ("root@203.0.113.10", "user = \"root\""),
                ("203.0.113.10:2222", "port = 2222"),
                ("web1.example.com:22", "port = 22"),
                ("web 1", "an IP address"),
                ("", "an IP address"),
                ("http://web1", "an IP address"),
                ("198.51.100.323", "four numbers from 0 to 255"),
                ("10.0.0", "four numbers from 0 to 255"),
                ("2001:db8::1::2", "an IPv6 address"),
            ],
        );
    }

    #[test]
    fn fleet_names() {
        let check = |name: &str| fleet_name_problem(name, 28);
        for good in ["blog", "run-1", "db_2", "a"] {
            assert_eq!(check(good), None, "{good}");
        }
        for (bad, fix) in [
            ("Web2", "`web2`"),
            ("2web", "`web`"),
            (
                "app-name-of-29-characters-xyz",
                "`app-name-of-29-characters-xy`",
            ),
        ] {
            let p = check(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(p.fix.contains(fix), "{bad}: {p:?}");
        }
    }

    #[test]
    fn ip_addresses() {
        shapes(
            ip_address_problem,
            &["203.0.113.10", "2001:db8::1"],
            &[
                ("web1.example.com", "IP address"),
                ("root@203.0.113.10", "user = \"root\""),
                ("198.51.100.323", "four numbers"),
            ],
        );
    }

    #[test]
    fn python_paths() {
        shapes(
            python_path_problem,
            &[".", "apps", "src/lib", "a-b_c.d"],
            &[
                ("my lib", "letters, digits"),
                ("x:y", "letters, digits"),
                ("/srv/lib", "relative"),
                ("../shared", "relative"),
            ],
        );
    }

    #[test]
    fn debian_packages() {
        shapes(
            package_problem,
            &["libpq-dev", "g++", "libxml2-dev", "python3.11-dev", "7zip"],
            &[
                ("libpq-dev; rm -rf /", "`libpq-dev`"),
                ("LibPQ-dev", "lowercase"),
                ("-y", "lowercase"),
                ("a", "lowercase"),
                ("", "lowercase"),
            ],
        );
    }

    #[test]
    fn users() {
        shapes(
            user_problem,
            &["root", "admin", "deploy-user", "app_1", "a.b"],
            &[
                ("root@203.0.113.10", "`root`"),
                ("-oProxyCommand=x", "not starting with `-`"),
                ("ad min", "letters, digits"),
                ("", "letters, digits"),
            ],
        );
    }

    #[test]
    fn wsgi_callables() {
        shapes(
            wsgi_problem,
            &[
                "blog.wsgi:application",
                "blog.wsgi",
                "app:create_app()",
                "app:create_app('x')",
                "_x.y2:app",
            ],
            &[
                ("blog/wsgi.py", "`blog.wsgi:application`"),
                ("blog.wsgi.py", "`blog.wsgi:application`"),
                ("blog.wsgi:", "the callable's name"),
                ("blog..wsgi:app", "`module.path:name`"),
                ("1blog:app", "`module.path:name`"),
                ("blog:app(", "a factory's call"),
                ("blog wsgi", "`module.path:name`"),
                ("app:create_app(\"x\")", "single quotes"),
            ],
        );
    }

    #[test]
    fn python_versions() {
        shapes(
            python_problem,
            &["3.11", "3.12", "3"],
            &[
                ("python3.11", "\"3.11\""),
                ("Python 3.12", "\"3.12\""),
                ("3.11.4", "\"3.11\""),
                ("2.7", "major.minor"),
                ("3.", "major.minor"),
                ("3.x", "major.minor"),
                ("", "major.minor"),
            ],
        );
    }

    #[test]
    fn url_prefixes() {
        shapes(
            url_prefix_problem,
            &["/static/", "/media/uploads/", "/~assets-1.0/"],
            &[
                ("/static", "\"/static/\""),
                ("static/", "\"/static/\""),
                ("/", "a path of their own"),
                ("//", "a path of their own"),
                ("", "\"/static/\""),
                ("/static//x/", "\"/static/x/\""),
                ("/a/../b/", "without `..`"),
                ("/a/./b/", "\"/a/b/\""),
                ("/a b/", "letters, digits"),
                ("/x/ { return 200; } location /y/", "letters, digits"),
                ("/x;/", "letters, digits"),
            ],
        );
    }

    #[test]
    fn folders() {
        shapes(
            folder_problem,
            &[
                "collected_static",
                "./collected_static",
                "build/static/",
                "a",
            ],
            &[
                ("/var/www/static", "inside the app's release"),
                ("../shared", "inside the app's release"),
                (".", "the static files are collected into"),
                ("./", "the static files are collected into"),
                ("static files", "letters, digits"),
                ("x;alias /etc", "letters, digits"),
            ],
        );
    }

    #[test]
    fn one_line_strings() {
        shapes(
            one_line_problem,
            &["celery -A blog worker", "", "0644", "a \"quoted\" é"],
            &[
                ("run\nExecStartPre=/bin/false", "join commands with `&&`"),
                ("a\tb", "it is one line"),
                ("a\u{7f}", "it is one line"),
            ],
        );
        let p = one_line_problem("run\nx").unwrap_or_else(|| panic!("passed"));
        assert_eq!(p.what, "`run\\nx` holds a line break");
    }

    #[test]
    fn setting_names() {
        shapes(
            setting_name_problem,
            &["DEBUG", "SITE_TITLE", "CELERY_BROKER_URL", "X1"],
            &[
                ("my-setting", "`MY_SETTING`"),
                ("site title", "`SITE_TITLE`"),
                ("1X", "starting with a letter"),
                ("", "starting with a letter"),
                ("_PRIVATE", "`PRIVATE`"),
                ("debug", "`DEBUG`"),
                ("Site_Title", "`SITE_TITLE`"),
            ],
        );
    }

    #[test]
    fn modes() {
        shapes(
            mode_problem,
            &["0644", "644", "0755", "2775", "0600"],
            &[
                ("rw-r--r--", "\"0644\""),
                ("rwxr-x---", "\"0750\""),
                ("0648", "in octal, in quotes"),
                ("u+rw", "in octal, in quotes"),
                ("", "in octal, in quotes"),
                ("06444", "in octal, in quotes"),
            ],
        );
    }

    #[test]
    fn host_paths() {
        shapes(
            host_path_problem,
            &["/etc/motd", "/srv/sitec/apps/blog/", "/"],
            &[
                ("etc/motd", "\"/etc/motd\""),
                ("./etc/motd", "\"/etc/motd\""),
                ("/srv/../etc/shadow", "without `..`"),
                ("/etc/x\ny", "one line"),
            ],
        );
    }

    proptest::proptest! {
        /// Any text, and text made of the characters these shapes are
        /// about: every check answers, none panics.
        #[test]
        fn no_check_panics(
            any in "\\PC{0,24}",
            near in "[/.:@*a-z0-9 _()-]{0,12}",
        ) {
            let checks: [Check; 13] = [
                python_path_problem,
                ip_address_problem,
                user_problem,
                mode_problem,
                host_path_problem,
                setting_name_problem,
                one_line_problem,
                domain_problem,
                address_problem,
                wsgi_problem,
                python_problem,
                url_prefix_problem,
                folder_problem,
            ];
            for check in checks {
                let _ = check(&any);
                let _ = check(&near);
            }
        }
    }
}
