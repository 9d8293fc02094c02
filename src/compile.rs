//! The driver: runs the compiler's stages in order on one spec.
//!
//! `check` loads the root file and every module it uses (`modules`, which
//! parses each with `syntax`), then resolves names and types (`resolve`).
//! Each stage returns its result with its diagnostics; the driver collects
//! them, in source order, and never prints: the commands in `cli` do.

use crate::diagnostic::{self, Diagnostic};
use crate::modules;
use crate::resolve::{self, schema::Kind};
use crate::source::SourceMap;
use std::path::Path;

/// What `sitec check` learns about a spec.
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    /// How many of each kind the spec declares (stdlib roles included).
    pub counts: Vec<(Kind, usize)>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// "3 hosts, 1 app, 1 database"
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(kind, n)| *n > 0 && *kind != Kind::Role)
            .map(|(kind, n)| format!("{n} {}{}", kind.word(), if *n == 1 { "" } else { "s" }))
            .collect();
        if parts.is_empty() {
            "nothing declared".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Checks the spec at `path`.
pub fn check(sources: &mut SourceMap, path: &Path) -> Report {
    let program = modules::load(sources, path);
    report(program)
}

/// Checks a spec given as text (standard input, tests, benchmarks).
pub fn check_text(sources: &mut SourceMap, name: &str, text: &str) -> Report {
    let program = modules::load_text(sources, name, text, Path::new("."));
    report(program)
}

fn report(program: modules::Program) -> Report {
    let mut diagnostics = program.diagnostics.clone();
    let broken: Vec<_> = program
        .diagnostics
        .iter()
        .filter_map(Diagnostic::primary_span)
        .collect();
    let checked = resolve::check(&program, &broken);
    let kinds = [
        Kind::Provider,
        Kind::Host,
        Kind::Role,
        Kind::Database,
        Kind::App,
        Kind::Backup,
    ];
    let counts = kinds
        .iter()
        .map(|k| (*k, checked.symbols.count(*k)))
        .collect();
    diagnostics.extend(checked.diagnostics);
    diagnostic::sort(&mut diagnostics);
    Report {
        diagnostics,
        counts,
    }
}
