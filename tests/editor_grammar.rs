//! The VS Code extension under `lang/editors/vscode/`.
//!
//! - Its three JSON files parse, and `package.json` points at the grammar.
//! - Every `match`/`begin`/`end` pattern compiles with the `regex` crate,
//!   which keeps the grammar to the syntax Oniguruma and `regex` share (no
//!   lookaround, no backreferences).
//! - Every keyword of the schema and every unit the parser reads is
//!   highlighted, so the language can't grow without the grammar.
//! - A small scanner (leftmost match wins, the earlier rule on a tie, as in
//!   TextMate) tokenizes `examples/epio.site` line by line, and known lines
//!   get the scopes they should.

use regex::Regex;
use serde_json::Value;
use sitec::resolve::schema::{Labels, Schema, TOP_LEVEL};
use sitec::syntax::ast::{DurationUnit, SizeUnit};
use std::path::Path;

const EXTENSION: &str = "lang/editors/vscode";

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn grammar() -> Value {
    json(&format!("{EXTENSION}/syntaxes/site.tmLanguage.json"))
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"))
}

/// Every `match`, `begin` and `end` pattern anywhere in the grammar.
fn patterns(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("match" | "begin" | "end", Value::String(p)) => out.push(p.clone()),
                    _ => patterns(field, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| patterns(item, out)),
        _ => {}
    }
}

enum Rule {
    Match {
        re: Regex,
        name: Option<String>,
        captures: Value,
    },
    Region {
        begin: Regex,
        end: Regex,
        name: Option<String>,
        inner: Vec<Rule>,
    },
}

/// The rules of `item`, with `#repository` includes expanded in place.
fn rules(item: &Value, repository: &Value, out: &mut Vec<Rule>) {
    if let Some(target) = item["include"].as_str() {
        let key = target.strip_prefix('#').expect("only #repository includes");
        assert!(repository.get(key).is_some(), "include of missing {target}");
        return rules(&repository[key], repository, out);
    }
    let name = item["name"].as_str().map(String::from);
    if let Some(pattern) = item["match"].as_str() {
        let captures = item["captures"].clone();
        out.push(Rule::Match {
            re: compile(pattern),
            name,
            captures,
        });
    } else if let Some(begin) = item["begin"].as_str() {
        let mut inner = Vec::new();
        rules(
            &serde_json::json!({ "patterns": item["patterns"] }),
            repository,
            &mut inner,
        );
        let end = compile(item["end"].as_str().expect("a begin rule has an end"));
        out.push(Rule::Region {
            begin: compile(begin),
            end,
            name,
            inner,
        });
    } else {
        for pattern in item["patterns"].as_array().into_iter().flatten() {
            rules(pattern, repository, out);
        }
    }
}

/// (text, scope) pairs: one per named match, capture and region.
type Tokens = Vec<(String, String)>;

/// Scans `line` from `pos` until `end` matches (or the line ends); returns
/// where the scan stopped.
fn scan(
    line: &str,
    mut pos: usize,
    rules: &[Rule],
    end: Option<&Regex>,
    out: &mut Tokens,
) -> usize {
    while pos < line.len() {
        let first = rules
            .iter()
            .filter_map(|rule| {
                let re = match rule {
                    Rule::Match { re, .. } => re,
                    Rule::Region { begin, .. } => begin,
                };
                Some((rule, re.captures_at(line, pos)?))
            })
            .min_by_key(|(_, caps)| caps.get(0).map_or(usize::MAX, |m| m.start()));
        let ends_at = end.and_then(|end| end.find_at(line, pos));
        let first_start = first
            .as_ref()
            .and_then(|(_, caps)| caps.get(0))
            .map(|m| m.start());
        if let Some(ended) = ends_at.filter(|e| first_start.is_none_or(|s| e.start() <= s)) {
            return ended.end();
        }
        let Some((rule, caps)) = first else { break };
        let whole = caps.get(0).expect("group 0 always matches");
        let mut token = |text: &str, scope: Option<&str>| {
            if let Some(scope) = scope {
                out.push((text.to_string(), scope.to_string()));
            }
        };
        let next = match rule {
            Rule::Match { name, captures, .. } => {
                token(whole.as_str(), name.as_deref());
                for (group, capture) in caps.iter().enumerate().skip(1) {
                    if let Some(capture) = capture {
                        token(
                            capture.as_str(),
                            captures[group.to_string()]["name"].as_str(),
                        );
                    }
                }
                whole.end()
            }
            Rule::Region {
                end, name, inner, ..
            } => {
                let stop = scan(line, whole.end(), inner, Some(end), out);
                out.push((
                    line[whole.start()..stop].to_string(),
                    name.clone().unwrap_or_default(),
                ));
                stop
            }
        };
        // Step past empty matches, on a char boundary.
        pos = next.max(pos + line[pos..].chars().next().map_or(1, char::len_utf8));
    }
    line.len()
}

fn tokenize(rules: &[Rule], line: &str) -> Tokens {
    let mut out = Vec::new();
    scan(line, 0, rules, None, &mut out);
    out
}

fn grammar_rules() -> Vec<Rule> {
    let grammar = grammar();
    let mut out = Vec::new();
    rules(&grammar, &grammar["repository"], &mut out);
    out
}

/// Whether some token is exactly `text` with a scope starting with `scope`.
fn has(tokens: &Tokens, text: &str, scope: &str) -> bool {
    tokens
        .iter()
        .any(|(t, s)| t == text && s.starts_with(scope))
}

#[track_caller]
fn assert_scope(tokens: &Tokens, text: &str, scope: &str) {
    assert!(
        has(tokens, text, scope),
        "`{text}` should be {scope}, tokens: {tokens:?}"
    );
}

#[test]
fn the_extension_files_parse_and_agree() {
    let package = json(&format!("{EXTENSION}/package.json"));
    let config = json(&format!("{EXTENSION}/language-configuration.json"));
    let grammar = grammar();

    let language = &package["contributes"]["languages"][0];
    assert_eq!(language["id"], "site");
    assert_eq!(language["extensions"][0], ".site");
    let contributed = &package["contributes"]["grammars"][0];
    assert_eq!(contributed["scopeName"], grammar["scopeName"]);
    assert_eq!(grammar["scopeName"], "source.site");
    for path in [&language["configuration"], &contributed["path"]] {
        let path = path.as_str().expect("a path").trim_start_matches("./");
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(EXTENSION)
            .join(path)
            .is_file());
    }
    assert_eq!(config["comments"]["lineComment"], "#");
}

#[test]
fn every_pattern_compiles_with_the_regex_crate() {
    let mut all = Vec::new();
    patterns(&grammar(), &mut all);
    assert!(all.len() > 20, "only {} patterns found", all.len());
    for pattern in &all {
        compile(pattern);
    }
    // Expanding includes also checks that each one names a repository entry.
    assert!(!grammar_rules().is_empty());
}

/// A line that opens `schema`'s block, with the labels it takes.
fn opening_line(schema: &Schema) -> String {
    let labels = match schema.labels {
        Labels::None => "",
        Labels::Name => " example",
        Labels::Path => " \"/srv/example\"",
        Labels::SettingsTarget => " app example host example",
        Labels::Resource => " \"/etc/example-{app}\"",
        Labels::Scope => " app",
    };
    format!("  {}{labels} {{", schema.keyword)
}

#[test]
fn every_keyword_and_unit_of_the_language_is_highlighted() {
    let rules = grammar_rules();
    for top in TOP_LEVEL {
        let tokens = tokenize(&rules, opening_line(top).trim_start());
        assert_scope(&tokens, top.keyword, "storage.type");
        let mut nested: Vec<&Schema> = top.blocks.to_vec();
        let mut seen: Vec<&str> = Vec::new();
        while let Some(block) = nested.pop() {
            // `each` holds itself: visit every keyword once.
            if seen.contains(&block.keyword) {
                continue;
            }
            seen.push(block.keyword);
            let tokens = tokenize(&rules, &opening_line(block));
            let keyword = tokens.iter().find(|(text, _)| text == block.keyword);
            let scope = keyword.map_or("", |(_, scope)| scope.as_str());
            assert!(
                scope.starts_with("keyword.other") || scope.starts_with("storage.type"),
                "nested block `{}` is not highlighted: {tokens:?}",
                block.keyword
            );
            nested.extend(block.blocks);
        }
    }
    let units = DurationUnit::ALL.iter().map(|(unit, _, _)| *unit);
    for unit in units.chain(SizeUnit::ALL.iter().map(|(unit, _, _)| *unit)) {
        let tokens = tokenize(&rules, &format!("x = 5{unit}"));
        assert_scope(&tokens, &format!("5{unit}"), "constant.numeric");
        assert_scope(&tokens, unit, "keyword.other.unit");
    }
    for function in sitec::resolve::schema::FUNCTIONS {
        assert_scope(
            &tokenize(&rules, &format!("x = {function}(\"a\")")),
            function,
            "support.function",
        );
    }
}

#[test]
fn the_example_fleet_is_highlighted() {
    let rules = grammar_rules();
    let text = read("examples/epio.site");
    let line = |start: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(start));
        tokenize(
            &rules,
            line.unwrap_or_else(|| panic!("no line starting {start:?}")),
        )
    };

    let comment = "# The full fleet: three providers that fail differently, redundant balancers,";
    assert_scope(
        &line("# The full fleet"),
        comment,
        "comment.line.number-sign",
    );

    let tokens = line("use std/platform");
    assert_scope(&tokens, "use", "keyword.control.import");
    assert_scope(&tokens, "std/platform", "string");

    let tokens = line("provider colo");
    assert_scope(&tokens, "provider", "storage.type");
    assert_scope(&tokens, "colo", "entity.name");
    assert_scope(&tokens, "user", "variable.other.property");
    assert_scope(&tokens, "\"root\"", "string.quoted.double");

    // `provider` as a field, and digits inside names, are not misread.
    let tokens = line("host run1");
    assert_scope(&tokens, "run1", "entity.name");
    assert_scope(&tokens, "provider", "variable.other.property");
    assert_scope(&tokens, "\"203.0.113.21\"", "string.quoted.double");
    assert!(!tokens
        .iter()
        .any(|(_, scope)| scope.starts_with("constant.numeric")));

    let tokens = line("settings app shop host run3");
    assert_scope(&tokens, "settings", "storage.type");
    assert_scope(&tokens, "shop", "entity.name");
    assert_scope(&tokens, "run3", "entity.name");

    assert_scope(&line("port = 22"), "22", "constant.numeric");
    assert_scope(&line("DEBUG = false"), "false", "constant.language");
    assert_scope(&line("max_body = 20MB"), "MB", "keyword.other.unit");
    let tokens = line("every = 1h");
    assert_scope(&tokens, "1h", "constant.numeric");
    assert_scope(&tokens, "h", "keyword.other.unit");

    let tokens = tokenize(&rules, "  media \"/media/\" = \"uploads\"");
    assert_scope(&tokens, "media", "variable.other.property");
    assert_scope(&tokens, "\"/media/\"", "string.quoted.double");

    let tokens = line("worker celery");
    assert_scope(&tokens, "worker", "keyword.other");
    assert_scope(&tokens, "celery", "entity.name");
    assert_scope(&tokens, "command", "variable.other.property");

    assert_scope(
        &line("SECRET_KEY = secret(\"blog"),
        "secret",
        "support.function",
    );
    assert_scope(&line("keep {"), "keep", "keyword.other");
}

#[test]
fn escapes_and_bad_units_are_marked() {
    let rules = grammar_rules();
    let tokens = tokenize(&rules, r#"motd = "a\tb \u{1F600} \q" # done"#);
    assert_scope(&tokens, r"\t", "constant.character.escape");
    assert_scope(&tokens, r"\u{1F600}", "constant.character.escape");
    assert_scope(&tokens, r"\q", "invalid.illegal");
    assert_scope(&tokens, "# done", "comment.line");
    assert_scope(
        &tokenize(&rules, "timeout = 10mins"),
        "mins",
        "invalid.illegal",
    );
    assert_scope(
        &tokenize(&rules, "x = -1_000"),
        "-1_000",
        "constant.numeric",
    );
}
