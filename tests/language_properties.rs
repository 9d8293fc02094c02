//! Property tests of the language front end (bounded, so CI runs them).
//!
//! - The parser and checker never panic: on arbitrary bytes, on arbitrary
//!   text, and on valid specs mutated byte by byte.
//! - `fmt` is idempotent and keeps the meaning: on generated specs with
//!   random layout and comments, the formatted text parses to the same tree,
//!   keeps every comment, and formats to itself.

use proptest::prelude::*;
use sitec::source::{FileId, SourceMap};
use sitec::syntax::{self, ast::SourceFile};

fn check_text(text: &str) {
    let mut sources = SourceMap::new();
    let report = sitec::compile::check_text(&mut sources, "fuzz.site", text);
    // Rendering touches every span: it must stay inside the file.
    let _ = sitec::diagnostic::render_human(&sources, &report.diagnostics, false);
    let _ = sitec::diagnostic::render_json(&sources, &report.diagnostics);
}

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .expect("examples folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "site"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    texts.sort();
    texts
}

/// One edit of a spec: replace, insert or delete at a position, with bytes
/// the grammar cares about.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(vec![
        '{', '}', '[', ']', '(', ')', '"', '=', '#', '\n', '\\', ',', '.', '-', '0', '9', 'a', 'Z',
        ' ', ':', '\t', 'é', '\u{0}', '\u{7f}',
    ]);
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(at, c)| Edit::Replace(at, c)),
        (any::<usize>(), interesting).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match *edit {
            Edit::Replace(at, c) if !chars.is_empty() => chars[at % len] = c,
            Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
            Edit::Delete(at, n) if !chars.is_empty() => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                chars.drain(start..end);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut sources = SourceMap::new();
        let _ = syntax::read(&mut sources, "fuzz.site", bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        check_text(&text);
    }

    #[test]
    fn never_panics_on_mutated_specs(which in 0usize..3, edits in prop::collection::vec(edit(), 1..8)) {
        let examples = examples();
        let text = apply(&examples[which % examples.len()], &edits);
        check_text(&text);
    }
}

// ---- generated specs for the formatter ----

fn ws() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        " ",
        " ",
        "  ",
        "\n",
        "\n  ",
        "\n\n",
        " # note\n",
        "\n# own line\n",
        "\t",
    ])
    .prop_map(str::to_string)
}

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_-]{0,8}"
        .prop_filter("not a keyword value", |s| s != "true" && s != "false")
}

fn string_literal() -> impl Strategy<Value = String> {
    "([a-z ./:é☃]|\\\\n|\\\\t|\\\\\\\\|\\\\\"|\\\\u\\{e9\\}){0,12}".prop_map(|s| format!("\"{s}\""))
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        (
            0u32..100_000,
            prop::sample::select(vec!["ms", "s", "m", "h", "d", "w", "B", "KB", "MB", "GiB"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        prop::bool::ANY.prop_map(|b| b.to_string()),
        ident(),
        string_literal(),
        string_literal().prop_map(|s| format!("secret({s})")),
        prop::collection::vec("[a-z #\"{}]{0,10}", 0..4).prop_map(|lines| {
            let body: String = lines.iter().map(|l| format!("    {l}\n")).collect();
            format!("\"\"\"\n{body}  \"\"\"")
        }),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                prop::collection::vec((inner.clone(), ws()), 0..4),
                prop::bool::ANY
            )
                .prop_map(|(items, trailing)| {
                    let mut out = String::from("[");
                    for (n, (item, space)) in items.iter().enumerate() {
                        if n > 0 {
                            out.push(',');
                        }
                        out.push_str(space);
                        out.push_str(item);
                    }
                    if trailing && !items.is_empty() {
                        out.push(',');
                    }
                    out.push_str("\n]");
                    out
                }),
            prop::collection::vec((ident(), inner, ws()), 0..3).prop_map(|entries| {
                let mut out = String::from("{");
                for (key, value, space) in entries {
                    out.push_str(&format!("{space}{key} = {value}\n"));
                }
                out.push('}');
                out
            }),
        ]
    })
}

fn entry() -> impl Strategy<Value = String> {
    let leaf = (ident(), prop::collection::vec(ident(), 0..2), value(), ws()).prop_map(
        |(key, labels, value, space)| format!("{key} {}{space}={space}{value}", labels.join(" ")),
    );
    leaf.prop_recursive(3, 20, 4, |inner| {
        (
            ident(),
            prop::collection::vec(prop_oneof![ident(), string_literal()], 0..2),
            prop::collection::vec((inner, ws()), 0..4),
            ws(),
        )
            .prop_map(|(key, labels, entries, space)| {
                let mut out = format!("{key} {} {{{space}", labels.join(" "));
                for (entry, space) in entries {
                    out.push_str(&entry);
                    out.push_str(if space.contains('#') || space.contains('\n') {
                        &space
                    } else {
                        "\n"
                    });
                }
                out.push('}');
                out
            })
    })
}

fn spec() -> impl Strategy<Value = String> {
    prop::collection::vec((entry(), ws()), 0..6).prop_map(|entries| {
        let mut out = String::from("# generated\n");
        for (entry, space) in entries {
            out.push_str(&entry);
            out.push_str(if space.contains('\n') { &space } else { "\n" });
        }
        out
    })
}

fn parse_clean(text: &str) -> Option<SourceFile> {
    let (file, diagnostics) = syntax::parse(FileId(0), text);
    diagnostics.is_empty().then_some(file)
}

fn meaning(file: &SourceFile) -> String {
    serde_json::to_string(file).expect("trees serialize")
}

fn comments(file: &SourceFile) -> Vec<String> {
    file.comments
        .iter()
        .map(|c| c.text.trim_end().to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fmt_is_idempotent_and_keeps_meaning(text in spec()) {
        let Some(original) = parse_clean(&text) else {
            return Err(TestCaseError::reject("generated text did not parse"));
        };
        let formatted = sitec::format::format(&original, &text);
        let reparsed = parse_clean(&formatted);
        prop_assert!(reparsed.is_some(), "formatted text does not parse:\n{formatted}");
        let reparsed = reparsed.expect("checked");
        prop_assert_eq!(meaning(&original), meaning(&reparsed), "meaning changed:\n{}\n---\n{}", text, formatted);
        prop_assert_eq!(comments(&original), comments(&reparsed));
        let again = sitec::format::format(&reparsed, &formatted);
        prop_assert_eq!(&again, &formatted, "not idempotent:\n{}", text);
    }

    #[test]
    fn fmt_keeps_examples_meaning_under_layout_changes(which in 0usize..3, spaces in prop::collection::vec((any::<usize>(), ws()), 0..10)) {
        // Insert whitespace and comments after random newlines of an example.
        let examples = examples();
        let text = &examples[which % examples.len()];
        let newlines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        let mut edited = text.clone();
        let mut inserts: Vec<(usize, String)> = spaces.into_iter().map(|(at, s)| (newlines[at % newlines.len()], s)).collect();
        inserts.sort_by_key(|insert| std::cmp::Reverse(insert.0));
        for (at, s) in inserts {
            let s = if s.contains('#') && !s.ends_with('\n') { format!("{s}\n") } else { s };
            edited.insert_str(at.min(edited.len()), &s);
        }
        let Some(original) = parse_clean(&edited) else {
            return Err(TestCaseError::reject("edited text did not parse"));
        };
        let formatted = sitec::format::format(&original, &edited);
        let reparsed = parse_clean(&formatted).expect("formatted example parses");
        prop_assert_eq!(meaning(&original), meaning(&reparsed));
        prop_assert_eq!(comments(&original), comments(&reparsed));
        prop_assert_eq!(sitec::format::format(&reparsed, &formatted), formatted);
    }
}

// ---- a comment at every token boundary of the examples ----

/// Where each token of `text` ends: words, strings, text blocks and
/// punctuation; blanks and comments are no tokens.
fn token_ends(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut ends = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &text[at..];
        let c = bytes[at];
        let len = if c.is_ascii_whitespace() {
            at += 1;
            continue;
        } else if c == b'#' {
            at += rest.find('\n').unwrap_or(rest.len());
            continue;
        } else if let Some(body) = rest.strip_prefix("\"\"\"") {
            // The closing quotes stand on a line of their own.
            let close = body
                .match_indices("\"\"\"")
                .map(|(i, _)| i)
                .find(|i| {
                    body[..*i]
                        .rsplit('\n')
                        .next()
                        .is_some_and(|l| l.trim().is_empty())
                })
                .unwrap_or(body.len());
            3 + close + 3
        } else if c == b'"' {
            let mut i = 1;
            while i < rest.len() && rest.as_bytes()[i] != b'"' {
                i += if rest.as_bytes()[i] == b'\\' { 2 } else { 1 };
            }
            i + 1
        } else if b"{}[](),=".contains(&c) {
            1
        } else {
            rest.find(|ch: char| ch.is_whitespace() || "{}[](),=#\"".contains(ch))
                .unwrap_or(rest.len())
        };
        at = (at + len).min(bytes.len());
        ends.push(at);
    }
    ends
}

/// `fmt` keeps every comment, wherever it stands, and formats what it
/// wrote to the same text: for a comment after every token of every
/// example and stdlib module (one at a time, ending the line or on a line of its own), the
/// formatted text parses to the same tree, holds the same comments, and is
/// a fixed point.
#[test]
fn fmt_is_idempotent_with_a_comment_after_any_token() {
    let mut failures = Vec::new();
    let mut tried = 0;
    let stdlib = sitec::stdlib::MODULES
        .iter()
        .map(|(_, text)| text.to_string());
    for example in examples().into_iter().chain(stdlib) {
        // A comment at the end of the token's line, and one on a line of its own.
        let places = token_ends(&example)
            .into_iter()
            .flat_map(|end| [(end, " # c\n"), (end, "\n# c\n")]);
        for (end, comment) in places {
            let mut text = example.clone();
            text.insert_str(end, comment);
            let Some(original) = parse_clean(&text) else {
                continue;
            };
            tried += 1;
            let formatted = sitec::format::format(&original, &text);
            let Some(reparsed) = parse_clean(&formatted) else {
                failures.push(format!(
                    "after byte {end}: the formatted text does not parse:\n{formatted}"
                ));
                continue;
            };
            let again = sitec::format::format(&reparsed, &formatted);
            if meaning(&original) != meaning(&reparsed) {
                failures.push(format!(
                    "after byte {end}: the meaning changed:\n{formatted}"
                ));
            } else if comments(&original) != comments(&reparsed) {
                failures.push(format!("after byte {end}: comments changed:\n{formatted}"));
            } else if again != formatted {
                failures.push(format!(
                    "after byte {end} ({:?}): not idempotent:\n{}",
                    &example[end.saturating_sub(30)..end],
                    changed_lines(&formatted, &again)
                ));
            }
        }
    }
    assert!(tried > 500, "only {tried} placements parsed");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The lines where two texts part, for a failure message.
fn changed_lines(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let from = first.saturating_sub(2);
    format!(
        "first:\n{}\nthen:\n{}",
        a[from..(first + 4).min(a.len())].join("\n"),
        b[from..(first + 4).min(b.len())].join("\n")
    )
}
