//! Requirements files as pip reads them: `-r`/`-c` includes relative to
//! the file that names them, line continuations, comments, extras,
//! environment markers, `--hash` options and option lines (`--index-url`,
//! `--find-links`, `--pre`...). Reading a project's top requirements file
//! gives every file it pulls in (for the wheelhouse's cache key), the
//! requirement lines in order, the constraints, and the option lines; and
//! what a wheelhouse cannot hold (an editable `-e` line, a VCS checkout, a
//! URL or a local path) as problems, each with its file and line, which
//! `sitec check` reports (E277) before anything is built.
//!
//! Only reads files. Never runs pip, never evaluates a marker: that is
//! pip's business, on the hosts' terms (see `wheelhouse`).

use std::path::{Path, PathBuf};

/// One requirement: `Django[argon2]>=5.2 ; python_version >= "3.10"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The project's name, normalized as PyPI compares names (PEP 503):
    /// lowercase, runs of `-`, `_`, `.` as one `-`.
    pub name: String,
    /// The requirement as written, without its options (`--hash=...`).
    pub text: String,
    /// Its `--hash=ALGO:DIGEST` options, as written.
    pub hashes: Vec<String>,
    pub at: Place,
}

/// A line of a requirements file: the file, relative to the app's source
/// when it is inside it, and the line (1-based) where the entry starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Something in the files that sitec cannot build a wheelhouse from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Place,
    pub message: String,
    pub help: String,
}

/// Everything a top requirements file pulls in, in pip's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Every file read, with its text: the top file first.
    pub files: Vec<(String, String)>,
    pub requirements: Vec<Requirement>,
    /// `-c` files' entries: they pin versions, they install nothing.
    pub constraints: Vec<Requirement>,
    /// Option lines (`--index-url URL`, `--pre`), paths in them absolute.
    pub options: Vec<String>,
}

impl Requirements {
    /// Whether pip would run in hash-checking mode: any `--hash`, or
    /// `--require-hashes`.
    pub fn hashes(&self) -> bool {
        self.options.iter().any(|o| o == "--require-hashes")
            || (self.requirements.iter().chain(&self.constraints)).any(|r| !r.hashes.is_empty())
    }

    /// The whole set as one file pip reads the same way, for the operator's
    /// download (`constraints` names the file the constraints went to):
    /// options, then the requirements with their hashes.
    pub fn for_download(&self, constraints: &Path, without: &[&str]) -> String {
        let mut out = String::new();
        for option in &self.options {
            out.push_str(option);
            out.push('\n');
        }
        if !self.constraints.is_empty() {
            out.push_str(&format!("-c {}\n", constraints.display()));
        }
        for r in self
            .requirements
            .iter()
            .filter(|r| !without.contains(&r.name.as_str()))
        {
            out.push_str(&with_hashes(r));
        }
        out
    }

    /// The constraints file [`Requirements::for_download`] refers to.
    pub fn constraints_file(&self) -> String {
        self.constraints.iter().map(with_hashes).collect()
    }

    /// The requirements alone, one a line, without hashes or options, but
    /// those named in `without`: what a host installs from its wheelhouse
    /// (which holds only what the operator's download chose, so the
    /// constraints are already in it, and a wheel the host builds from an
    /// sdist could never match the sdist's hash).
    pub fn for_host(&self, without: &[&str]) -> Vec<String> {
        (self.requirements.iter())
            .filter(|r| !without.contains(&r.name.as_str()))
            .map(|r| r.text.clone())
            .collect()
    }
}

fn with_hashes(r: &Requirement) -> String {
    let mut line = r.text.clone();
    for hash in &r.hashes {
        line.push_str(" --hash=");
        line.push_str(hash);
    }
    line.push('\n');
    line
}

/// Reads `top` (a path relative to `source`) and every file it includes.
/// Returns what it read and every problem found; a file that cannot be
/// read is a problem at the line that includes it (the top file's own
/// absence is `local_files`' E271).
pub fn read(source: &Path, top: &str) -> (Requirements, Vec<Problem>) {
    let mut reader = Reader {
        source: source.to_path_buf(),
        out: Requirements::default(),
        problems: Vec::new(),
        stack: Vec::new(),
    };
    let at = Place {
        file: top.to_string(),
        line: 0,
    };
    reader.file(&source.join(top), false, &at);
    (reader.out, reader.problems)
}

struct Reader {
    source: PathBuf,
    out: Requirements,
    problems: Vec<Problem>,
    /// The files being read, outermost first (an include cycle is a problem).
    stack: Vec<PathBuf>,
}

impl Reader {
    /// The name a file is shown by: relative to the source when inside it.
    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.source)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn problem(&mut self, at: &Place, message: String, help: &str) {
        self.problems.push(Problem {
            at: at.clone(),
            message,
            help: help.to_string(),
        });
    }

    fn file(&mut self, path: &Path, constraints: bool, included_at: &Place) {
        let path = normalize(path);
        if self.stack.contains(&path) {
            let cycle = "a requirements file includes itself";
            return self.problem(
                included_at,
                format!("{cycle}: {}", self.shown(&path)),
                "drop the `-r` that closes the cycle",
            );
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // The top file: `local_files` says it is missing (E271).
            Err(_) if included_at.line == 0 => return,
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_string(),
                    _ => e.to_string(),
                };
                return self.problem(
                    included_at,
                    format!("cannot read {}: {why}", self.shown(&path)),
                    "an include is relative to the file that names it, as pip reads it",
                );
            }
        };
        let name = self.shown(&path);
        self.out.files.push((name.clone(), text.clone()));
        self.stack.push(path.clone());
        let folder = path.parent().unwrap_or(Path::new("")).to_path_buf();
        for (line, entry) in logical_lines(&text) {
            let at = Place {
                file: name.clone(),
                line,
            };
            self.entry(&entry, &folder, constraints, &at);
        }
        self.stack.pop();
    }

    fn entry(&mut self, entry: &str, folder: &Path, constraints: bool, at: &Place) {
        if entry.starts_with('-') {
            return self.option(entry, folder, at);
        }
        let (requirement, options) = split_options(entry);
        let mut hashes = Vec::new();
        for option in options {
            match option_value(&option, &["--hash"]) {
                Some(Some(hash)) => hashes.push(hash),
                _ => self.problem(
                    at,
                    format!("`{option}` on a requirement line is not something sitec can build with"),
                    "a requirement line takes `--hash=ALGO:DIGEST` options only; build options belong to the package",
                ),
            }
        }
        if let Some(why) = not_from_an_index(&requirement) {
            return self.problem(
                at,
                format!("`{requirement}` {why}"),
                "the hosts install from a wheelhouse built from package indexes: pin a released version (`name==1.2.3`), or publish the package to an index and name it",
            );
        }
        let Some(name) = project_name(&requirement) else {
            return self.problem(
                at,
                format!("`{requirement}` is not a requirement pip reads"),
                "write `name`, `name==1.2.3`, `name[extra]>=1.0 ; python_version >= \"3.10\"`",
            );
        };
        let requirement = Requirement {
            name,
            text: requirement,
            hashes,
            at: at.clone(),
        };
        if constraints {
            self.out.constraints.push(requirement);
        } else {
            self.out.requirements.push(requirement);
        }
    }

    fn option(&mut self, entry: &str, folder: &Path, at: &Place) {
        let include = |names: &[&str]| option_value(entry, names).flatten();
        if let Some(file) = include(&["-r", "--requirement"]) {
            return self.include(&file, folder, false, at);
        }
        if let Some(file) = include(&["-c", "--constraint"]) {
            return self.include(&file, folder, true, at);
        }
        if option_value(entry, &["-e", "--editable"]).is_some() {
            return self.problem(
                at,
                format!("`{entry}` is an editable install"),
                "a host installs the app's dependencies, not a checkout: drop `-e .` (the app itself ships as its release), or pin a released version (`name==1.2.3`)",
            );
        }
        // Options pip takes in a requirements file, with a value or without.
        const VALUED: [&str; 9] = [
            "-i",
            "--index-url",
            "--extra-index-url",
            "-f",
            "--find-links",
            "--only-binary",
            "--no-binary",
            "--trusted-host",
            "--use-feature",
        ];
        const FLAGS: [&str; 4] = ["--no-index", "--pre", "--prefer-binary", "--require-hashes"];
        if FLAGS.contains(&entry) {
            return self.out.options.push(entry.to_string());
        }
        let Some((name, Some(value))) = VALUED
            .iter()
            .find_map(|n| option_value(entry, &[n]).map(|v| (*n, v)))
        else {
            return self.problem(
                at,
                format!("`{entry}` is not an option pip takes in a requirements file"),
                "see pip's \"Requirements File Format\"; sitec passes the options pip knows on to it",
            );
        };
        let value = match name {
            // A local folder of archives is relative to the file that names it.
            "-f" | "--find-links" if !value.contains("://") => {
                folder.join(&value).display().to_string()
            }
            _ => value,
        };
        let long = match name {
            "-i" => "--index-url",
            "-f" => "--find-links",
            other => other,
        };
        self.out.options.push(format!("{long} {value}"));
    }

    fn include(&mut self, file: &str, folder: &Path, constraints: bool, at: &Place) {
        if file.contains("://") {
            return self.problem(
                at,
                format!("`{file}` is a URL"),
                "keep the included file in the project and name it by its path",
            );
        }
        self.file(&folder.join(file), constraints, at);
    }
}

/// The file's entries with the line each starts on: continuations (`\` at
/// a line's end) joined, comments (`#` at the start or after blanks) and
/// blank lines dropped, as pip's `req_file` does.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut continuing = false;
    for (i, raw) in text.lines().enumerate() {
        if !continuing {
            start = i + 1;
        }
        let (body, continued) = match raw.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        current.push_str(body);
        continuing = continued;
        if continued {
            continue;
        }
        let entry = strip_comment(&current).trim().to_string();
        if !entry.is_empty() {
            out.push((start, entry));
        }
        current.clear();
    }
    let entry = strip_comment(&current).trim().to_string();
    if !entry.is_empty() {
        out.push((start, entry));
    }
    out
}

fn strip_comment(line: &str) -> &str {
    if line.starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// `--name=value`, `--name value`, `-n value`, `-nvalue`: `Some(Some(value))`;
/// the bare option: `Some(None)`; another option: `None`.
fn option_value(entry: &str, names: &[&str]) -> Option<Option<String>> {
    for name in names {
        let Some(rest) = entry.strip_prefix(name) else {
            continue;
        };
        let value = if rest.is_empty() {
            None
        } else if let Some(v) = rest.strip_prefix('=') {
            Some(v.trim())
        } else if rest.starts_with(char::is_whitespace) {
            Some(rest.trim())
        } else if !name.starts_with("--") {
            // `-rfile.txt`
            Some(rest.trim())
        } else {
            continue;
        };
        return Some(value.map(|v| v.trim_matches(['"', '\'']).to_string()));
    }
    None
}

/// A requirement line's requirement and its options (`--hash=...`), which
/// start at the first ` --` outside the markers' quotes.
fn split_options(entry: &str) -> (String, Vec<String>) {
    let mut quote = None;
    let bytes = entry.as_bytes();
    for (i, c) in entry.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '-')
                if bytes.get(i + 1) == Some(&b'-')
                    && i > 0
                    && bytes[i - 1].is_ascii_whitespace() =>
            {
                let options =
                    entry[i..]
                        .split_whitespace()
                        .fold(Vec::<String>::new(), |mut all, word| {
                            match all.last_mut() {
                                Some(last) if !word.starts_with("--") => {
                                    last.push(' ');
                                    last.push_str(word);
                                }
                                _ => all.push(word.to_string()),
                            }
                            all
                        });
                return (entry[..i].trim().to_string(), options);
            }
            _ => {}
        }
    }
    (entry.trim().to_string(), Vec::new())
}

/// Why a requirement is not a project from an index, if it is not: a VCS
/// checkout, a URL (a direct reference `name @ URL` included), a local path
/// or archive.
fn not_from_an_index(requirement: &str) -> Option<&'static str> {
    let head = requirement.split(';').next().unwrap_or("").trim();
    let vcs = ["git+", "hg+", "svn+", "bzr+"];
    if vcs
        .iter()
        .any(|v| head.starts_with(v) || head.contains(&format!("@ {v}")))
    {
        return Some("is a VCS checkout");
    }
    if head.contains("://") || head.contains(" @ ") || head.contains("@file:") {
        return Some("is a URL");
    }
    let archive = [".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz"];
    if head.starts_with(['.', '/', '~']) || archive.iter().any(|a| head.ends_with(a)) {
        return Some("is a local path");
    }
    None
}

/// The project name a requirement starts with, normalized (PEP 503).
fn project_name(requirement: &str) -> Option<String> {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    let name = &requirement[..end];
    let rest = requirement[end..].trim_start();
    let fits = rest.is_empty() || rest.starts_with(['[', '=', '<', '>', '!', '~', ';', '(']);
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_alphanumeric()) && fits)
        .then(|| normalize_name(name))
}

/// PEP 503: `Django` and `django`, `zope.interface` and `zope-interface` are one.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `a/./b/../c` to `a/c`, without touching the file system (so a cycle is
/// seen however its includes are spelled).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a scratch folder");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
            std::fs::write(path, text).expect("a file");
        }
        dir
    }

    #[test]
    fn includes_are_read_relative_to_the_file_that_names_them() {
        let dir = project(&[
            ("requirements.txt", "-r requirements/production.txt\n"),
            (
                "requirements/production.txt",
                "-r base.txt\ngunicorn==23.0.0  # the server\n-c constraints.txt\n",
            ),
            (
                "requirements/base.txt",
                "Django[argon2]>=5.2,<6 ; python_version >= \"3.10\"\n\\\n  wagtail \\\n  ==7.0\n",
            ),
            ("requirements/constraints.txt", "asgiref==3.8.1\n"),
        ]);
        let (r, problems) = read(dir.path(), "requirements.txt");
        assert_eq!(problems, []);
        let files: Vec<&str> = r.files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "requirements.txt",
                "requirements/production.txt",
                "requirements/base.txt",
                "requirements/constraints.txt"
            ]
        );
        let names: Vec<&str> = r.requirements.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["django", "wagtail", "gunicorn"]);
        assert_eq!(
            r.requirements[0].text,
            "Django[argon2]>=5.2,<6 ; python_version >= \"3.10\""
        );
        assert_eq!(r.requirements[1].text, "wagtail   ==7.0");
        assert_eq!(r.requirements[1].at.to_string(), "requirements/base.txt:2");
        assert_eq!(r.constraints[0].name, "asgiref");
        assert_eq!(
            r.for_host(&["gunicorn"]),
            [
                "Django[argon2]>=5.2,<6 ; python_version >= \"3.10\"",
                "wagtail   ==7.0"
            ]
        );
    }

    #[test]
    fn hashes_and_options_are_kept_for_the_download_and_dropped_for_the_host() {
        let dir = project(&[(
            "requirements.txt",
            "--index-url https://pypi.org/simple\n--find-links ./wheels\n--pre\nsix==1.17.0 \\\n    --hash=sha256:aaa \\\n    --hash=sha256:bbb\n",
        )]);
        let (r, problems) = read(dir.path(), "requirements.txt");
        assert_eq!(problems, []);
        assert!(r.hashes());
        assert_eq!(r.requirements[0].hashes, ["sha256:aaa", "sha256:bbb"]);
        let download = r.for_download(Path::new("/c.txt"), &[]);
        assert!(
            download.starts_with("--index-url https://pypi.org/simple\n--find-links "),
            "{download}"
        );
        assert!(
            download.contains(&format!("{}/./wheels", dir.path().display()))
                || download.contains(&format!("{}/wheels", dir.path().display())),
            "{download}"
        );
        assert!(
            download.ends_with("--pre\nsix==1.17.0 --hash=sha256:aaa --hash=sha256:bbb\n"),
            "{download}"
        );
        assert_eq!(r.for_host(&[]), ["six==1.17.0"]);
    }

    #[test]
    fn editables_checkouts_urls_and_paths_are_problems_with_their_line() {
        let dir = project(&[
            ("requirements.txt", "Django==5.2\n-e .\n-r more.txt\n"),
            ("more.txt", "# vendored\ngit+https://github.com/x/y.git@main#egg=y\nz @ https://example.com/z-1.0.tar.gz\n./vendor/pkg\n--weird\nok ; sys_platform == 'linux' --hash=sha256:ff\n"),
        ]);
        let (r, problems) = read(dir.path(), "requirements.txt");
        let found: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}", p.at, p.message))
            .collect();
        assert_eq!(
            found,
            [
                "requirements.txt:2 `-e .` is an editable install",
                "more.txt:2 `git+https://github.com/x/y.git@main#egg=y` is a VCS checkout",
                "more.txt:3 `z @ https://example.com/z-1.0.tar.gz` is a URL",
                "more.txt:4 `./vendor/pkg` is a local path",
                "more.txt:5 `--weird` is not an option pip takes in a requirements file",
            ]
        );
        let names: Vec<&str> = r.requirements.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["django", "ok"]);
    }

    #[test]
    fn a_missing_include_and_a_cycle_are_problems() {
        let dir = project(&[
            ("requirements.txt", "-r a.txt\n-rmissing.txt\n"),
            ("a.txt", "-r ./requirements.txt\n"),
        ]);
        let (_, problems) = read(dir.path(), "requirements.txt");
        let found: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}", p.at, p.message))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("a.txt:1 a requirements file includes itself"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("requirements.txt:2 cannot read missing.txt"),
            "{found:?}"
        );
    }

    #[test]
    fn names_compare_as_pypi_compares_them() {
        assert_eq!(normalize_name("Zope.Interface"), "zope-interface");
        assert_eq!(normalize_name("typing__extensions"), "typing-extensions");
        assert_eq!(project_name("psycopg[binary]==3.3"), Some("psycopg".into()));
        assert_eq!(project_name("name with space"), None);
    }
}
