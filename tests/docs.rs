//! The docs in `lang/` stay true: every diagnostic code the compiler can
//! give is explained in `lang/errors.md` (and nothing else is), every
//! block and field of the schema has an entry of its own in the reference
//! (its section's table row, its row in its parent's table, or a line that
//! introduces it as `` `field = ...` ``), and every `site` example in the
//! reference parses.

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

/// The lines of `reference` where the `### `KEYWORD ...`` section begins
/// and ends (at the next heading of the same or a higher level).
fn section<'r>(reference: &'r str, keyword: &str) -> Option<Vec<&'r str>> {
    let lines: Vec<&str> = reference.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("### `{keyword} ")))?;
    let end = (start + 1..lines.len())
        .find(|&i| lines[i].starts_with("### ") || lines[i].starts_with("## "))
        .unwrap_or(lines.len());
    Some(lines[start..end].to_vec())
}

/// Whether `row` (a table row) has `field` for its own: the field starts
/// its first cell (`| `field``, `| **`field`**`, `| `static "URL"...`),
/// or, in the row of a nested block (`own_row` false), it is a word of that
/// block's code (`tls { cert = ...`) or is named in backquotes
/// (`` `version` ``, `` `absent = true` ``).
fn row_has(row: &str, field: &str, own_row: bool) -> bool {
    let first = row.split('|').nth(1).unwrap_or_default().trim();
    let code = first.trim_start_matches("**").trim_start_matches('`');
    if own_row {
        return code.split(['`', ' ']).next() == Some(field);
    }
    let mut words = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    words.next(); // the block's own keyword
    words.any(|w| w == field)
        || row.contains(&format!("`{field}`"))
        || row.contains(&format!("`{field} "))
}

/// Whether a line of prose (not a table row) introduces `field` with its
/// syntax: `` `field = ...` `` ("A role has an optional
/// `description = "..."`", "Every resource may also list `requires = [...]`").
fn prose_has(line: &str, field: &str) -> bool {
    !line.starts_with('|') && line.contains(&format!("`{field} = "))
}

/// A nested block's entry inside its parent's `entry`: its rows in a table
/// (`| `tls { ...`), or else a sub-heading that names it in code
/// (`#### The environment: `env { ... }``) down to the next heading.
fn block_entry<'r>(entry: &[&'r str], keyword: &str) -> Option<Vec<&'r str>> {
    let starts = [format!("| `{keyword} "), format!("| `{keyword}`")];
    let rows: Vec<&str> = (entry.iter().copied())
        .filter(|l| starts.iter().any(|s| l.starts_with(s.as_str())))
        .collect();
    if !rows.is_empty() {
        return Some(rows);
    }
    let named = [format!("`{keyword} "), format!("`{keyword}`")];
    // Sub-headings only: a `# comment` in a code example is no heading.
    let start = (entry.iter())
        .position(|l| l.starts_with("#### ") && named.iter().any(|n| l.contains(n.as_str())))?;
    let end = (start + 1..entry.len())
        .find(|&i| entry[i].starts_with("#### "))
        .unwrap_or(entry.len());
    Some(entry[start..end].to_vec())
}

/// Every field of `schema` and of each block it holds, by path
/// (`app.tls.cert`), that has no entry of its own in the reference:
/// `entry` is the schema's entry (its section, or its row in its parent's
/// tables), `section` the top-level section it is in (whose prose may
/// introduce a field every block of a kind takes).
fn undocumented(
    schema: &'static Schema,
    entry: &[&str],
    section: &[&str],
    path: &str,
    seen: &mut Vec<&'static Schema>,
    missing: &mut Vec<String>,
) {
    let own_rows = entry.len() == section.len();
    for field in schema.fields {
        let in_rows = (entry.iter().filter(|l| l.starts_with('|')))
            .any(|row| row_has(row, field.name, own_rows));
        if !in_rows && !section.iter().any(|l| prose_has(l, field.name)) {
            missing.push(format!("{path}.{}", field.name));
        }
    }
    for block in schema.blocks {
        // `each` holds itself and the role's resources: each once.
        if seen.iter().any(|s| std::ptr::eq(*s, *block)) {
            continue;
        }
        seen.push(block);
        let path = format!("{path}.{}", block.keyword);
        match block_entry(entry, block.keyword) {
            Some(lines) => undocumented(block, &lines, section, &path, seen, missing),
            None => missing.push(format!("{path} (the block)")),
        }
    }
}

#[test]
fn every_keyword_and_field_has_its_own_entry_in_the_reference() {
    let reference = read("lang/README.md");
    let mut missing = Vec::new();
    let mut seen = Vec::new();
    for schema in TOP_LEVEL {
        let Some(lines) = section(&reference, schema.keyword) else {
            missing.push(format!(
                "{} (no `### `{} ...`` section)",
                schema.keyword, schema.keyword
            ));
            continue;
        };
        seen.push(schema);
        undocumented(
            schema,
            &lines,
            &lines,
            schema.keyword,
            &mut seen,
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "lang/README.md has no entry for: {missing:?}"
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
