//! Data-driven tests over `golden/` and `examples/`.
//!
//! Every bad input under `golden/errors/` (a `.site` file, or a folder whose
//! `main.site` is checked) must fail `sitec check`, and its rendered
//! diagnostics must match the insta snapshot beside it in
//! `golden/errors/snapshots/`. A snapshot with no input is itself a failure.
//! Every example and stdlib module must check clean and be formatted.

use sitec::diagnostic::render_human;
use sitec::source::SourceMap;
use std::path::{Path, PathBuf};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bad inputs, as paths relative to the package root (so diagnostics
/// and snapshots name them the same on every machine).
fn error_cases() -> Vec<(String, PathBuf)> {
    let dir = Path::new("golden/errors");
    let mut cases = Vec::new();
    let entries = std::fs::read_dir(manifest_dir().join(dir)).expect("golden/errors exists");
    for entry in entries {
        let path = entry.expect("readable golden/errors").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.extension().is_some_and(|e| e == "site") {
            cases.push((name, dir.join(path.file_name().unwrap_or_default())));
        } else if path.join("main.site").exists() {
            cases.push((name.clone(), dir.join(&name).join("main.site")));
        }
    }
    cases.sort();
    cases
}

#[test]
fn every_bad_input_has_its_exact_diagnostics() {
    std::env::set_current_dir(manifest_dir()).expect("package root");
    let cases = error_cases();
    assert!(
        cases.len() >= 40,
        "golden/errors holds {} inputs; keep at least 40",
        cases.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../golden/errors/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, path) in &cases {
            let mut sources = SourceMap::new();
            let report = sitec::compile::check(&mut sources, path);
            assert!(
                report.errors() > 0,
                "{} should not check clean",
                path.display()
            );
            let rendered = render_human(&sources, &report.diagnostics, false);
            insta::assert_snapshot!(name.as_str(), rendered);
        }
    });
}

#[test]
fn no_snapshot_without_its_input() {
    let names: Vec<String> = error_cases().into_iter().map(|(n, _)| n).collect();
    let snapshots = manifest_dir().join("golden/errors/snapshots");
    for entry in std::fs::read_dir(snapshots).expect("snapshots folder") {
        let file = entry
            .expect("readable")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(stem) = file.strip_suffix(".snap") else {
            continue;
        };
        assert!(
            names.iter().any(|n| n == stem),
            "golden/errors/snapshots/{file} has no input; remove it"
        );
    }
}

fn site_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join(dir))
        .expect("folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "site"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_checks_clean() {
    let examples = site_files("examples");
    for name in ["quickstart.site", "epio.site", "minimal.site"] {
        assert!(
            examples.iter().any(|p| p.ends_with(name)),
            "examples/{name} is missing"
        );
    }
    for path in examples {
        let mut sources = SourceMap::new();
        let report = sitec::compile::check(&mut sources, &path);
        let rendered = render_human(&sources, &report.diagnostics, false);
        assert!(
            report.diagnostics.is_empty(),
            "{}:\n{rendered}",
            path.display()
        );
    }
}

#[test]
fn every_example_and_stdlib_module_is_formatted() {
    let mut files = site_files("examples");
    files.extend(site_files("stdlib"));
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let (ast, diagnostics) = sitec::syntax::parse(sitec::source::FileId(0), &text);
        assert!(diagnostics.is_empty(), "{} does not parse", path.display());
        let formatted = sitec::format::format(&ast, &text);
        assert_eq!(
            formatted,
            text,
            "{} is not formatted; run `sitec fmt {}`",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn every_stdlib_module_checks_clean() {
    for (name, _) in sitec::stdlib::MODULES {
        let mut sources = SourceMap::new();
        let report = sitec::compile::check_text(
            &mut sources,
            "stdlib-test.site",
            &format!("use std/{name}\n"),
        );
        let rendered = render_human(&sources, &report.diagnostics, false);
        assert!(report.diagnostics.is_empty(), "std/{name}:\n{rendered}");
    }
}
