//! Data-driven tests of what compiling a spec reports, over `golden/`.
//!
//! Every input under `golden/spec_errors/` resolves clean but breaks a fleet
//! check, a placement rule or a role's expansion; `sitec::compile::render`
//! must report it, and the rendered diagnostics must match the insta
//! snapshot beside it in `golden/spec_errors/snapshots/`. A snapshot with no
//! input is itself a failure. An input whose name ends in `_as_warning` sets
//! a rule to `warning` (or finds what only warns, such as the apps' files
//! missing): it must report warnings and no error. Every input
//! under `golden/spec_clean/` turns rules `off` and must compile with no
//! diagnostic at all, in `render` and in `check`.

use sitec::compile::SecretSource;
use sitec::diagnostic::render_human;
use sitec::source::SourceMap;
use std::path::{Path, PathBuf};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.site` files of a golden folder: (name, path relative to the package).
fn cases(dir: &str) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(manifest_dir().join(dir))
        .expect("golden folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "site"))
        .map(|p| {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            (
                name.to_string(),
                Path::new(dir).join(p.file_name().unwrap_or_default()),
            )
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_spec_has_its_exact_diagnostics() {
    std::env::set_current_dir(manifest_dir()).expect("package root");
    let cases = cases("golden/spec_errors");
    assert!(
        cases.len() >= 25,
        "golden/spec_errors holds {} inputs; keep at least 25",
        cases.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../golden/spec_errors/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, path) in &cases {
            let mut sources = SourceMap::new();
            let rendered =
                sitec::compile::render(&mut sources, path, &SecretSource::Placeholders, &[]);
            if name.ends_with("_as_warning") {
                assert!(
                    rendered.errors() == 0 && !rendered.diagnostics.is_empty(),
                    "{} should give warnings and no error",
                    path.display()
                );
            } else {
                assert!(
                    rendered.errors() > 0,
                    "{} should not compile",
                    path.display()
                );
            }
            let text = render_human(&sources, &rendered.diagnostics, false);
            insta::assert_snapshot!(name.as_str(), text);
        }
    });
}

#[test]
fn no_spec_snapshot_without_its_input() {
    let names: Vec<String> = cases("golden/spec_errors")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let snapshots = manifest_dir().join("golden/spec_errors/snapshots");
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
            "golden/spec_errors/snapshots/{file} has no input; remove it"
        );
    }
}

#[test]
fn rules_set_off_are_silent() {
    std::env::set_current_dir(manifest_dir()).expect("package root");
    let cases = cases("golden/spec_clean");
    assert!(!cases.is_empty(), "golden/spec_clean holds no input");
    for (_, path) in cases {
        let mut sources = SourceMap::new();
        let rendered =
            sitec::compile::render(&mut sources, &path, &SecretSource::Placeholders, &[]);
        let text = render_human(&sources, &rendered.diagnostics, false);
        assert!(
            rendered.diagnostics.is_empty(),
            "{}:\n{text}",
            path.display()
        );
        let mut sources = SourceMap::new();
        let report = sitec::compile::check(&mut sources, &path);
        let text = render_human(&sources, &report.diagnostics, false);
        assert!(report.diagnostics.is_empty(), "{}:\n{text}", path.display());
    }
}
