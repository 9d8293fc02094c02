//! The docs in `lang/` stay true: every diagnostic code the compiler can
//! give is explained in `lang/errors.md` (and nothing else is), every
//! keyword and field of the schema is in the reference, and every `site`
//! example in the reference parses.

use sitec::resolve::schema::{Schema, TOP_LEVEL};
use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("doc exists")
}

fn codes_in_source() -> BTreeSet<String> {
    let code = regex::Regex::new(r#""(E\d{3})""#).expect("regex");
    let mut codes = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source readable");
                // Codes in unit tests are expectations, not diagnostics.
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                codes.extend(code.captures_iter(text).map(|c| c[1].to_string()));
            }
        }
    }
    codes
}

#[test]
fn every_code_is_explained_and_every_explanation_is_used() {
    let heading = regex::Regex::new(r"(?m)^### (E\d{3}): ").expect("regex");
    let explained: BTreeSet<String> = heading
        .captures_iter(&read("lang/errors.md"))
        .map(|c| c[1].to_string())
        .collect();
    let used = codes_in_source();
    let unexplained: Vec<_> = used.difference(&explained).collect();
    let unused: Vec<_> = explained.difference(&used).collect();
    assert!(
        unexplained.is_empty(),
        "codes missing from lang/errors.md: {unexplained:?}"
    );
    assert!(
        unused.is_empty(),
        "lang/errors.md explains codes the compiler never gives: {unused:?}"
    );
}

fn collect_names(schema: &Schema, names: &mut BTreeSet<&'static str>) {
    names.insert(schema.keyword);
    names.extend(schema.fields.iter().map(|f| f.name));
    for block in schema.blocks {
        collect_names(block, names);
    }
}

#[test]
fn every_keyword_and_field_is_in_the_reference() {
    let reference = read("lang/README.md");
    let mut names = BTreeSet::new();
    for schema in TOP_LEVEL {
        collect_names(schema, &mut names);
    }
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !reference.contains(&format!("`{n}")) && !reference.contains(&format!("{n} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "lang/README.md does not mention: {missing:?}"
    );
}

#[test]
fn every_example_in_the_reference_parses() {
    let reference = read("lang/README.md");
    let blocks: Vec<&str> = reference
        .split("```site\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(
        blocks.len() >= 10,
        "expected the reference to show examples"
    );
    for block in blocks {
        let (_, diagnostics) = sitec::syntax::parse(sitec::source::FileId(0), block);
        assert!(
            diagnostics.is_empty(),
            "example does not parse:\n{block}\n{diagnostics:?}"
        );
    }
}
