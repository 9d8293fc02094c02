//! The `.site` parser: text in, syntax tree and diagnostics out.
//!
//! Built from nom combinators over a located input, so every node gets its
//! byte span. Values are chosen by their first character, so nothing is parsed
//! twice and lexical problems (a bad escape, an unknown unit) can be reported
//! where they are found while parsing goes on. When an entry cannot be parsed,
//! the parser records the error and skips to the next line at the same
//! bracket depth (or to the `}` that closes the block), so one run reports
//! every error it can find. It never panics and never recurses deeper than
//! [`MAX_DEPTH`] nested blocks and lists; it does no IO.

use super::ast::*;
use super::error::PError;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::{IResult, Parser};
use std::cell::RefCell;

/// How deep blocks, lists and calls may nest. Real specs use four or five
/// levels; the bound keeps hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// What every parse function sees besides the text: the file being parsed,
/// and where comments and recovered errors are collected.
pub struct Ctx<'t> {
    file: FileId,
    /// The whole file, for the indentation of a line.
    text: &'t str,
    /// Blocks opened at or after this offset end, without their `}`, at
    /// the first line indented no deeper than their own (see [`parse`]).
    dedent_from: Option<usize>,
    comments: RefCell<Vec<Comment>>,
    diagnostics: RefCell<Vec<Diagnostic>>,
}

pub type In<'a> = super::input::Located<'a, &'a Ctx<'a>>;
type PResult<'a, O> = IResult<In<'a>, O, PError>;

/// Parses one file. Always returns a tree (possibly partial) and every
/// syntax error found.
///
/// A block whose `}` is missing runs to the end of the file, taking every
/// declaration after it along. When that happens, the file is parsed again
/// with indentation as the hint: from the first declaration that was left
/// open, a block ends at the first line indented no deeper than the line
/// that opened it, where its `}` is reported missing (E008), and the rest of
/// the file is read as if it were there.
pub fn parse(file: FileId, text: &str) -> (SourceFile, Vec<Diagnostic>) {
    let (tree, diagnostics, open) = parse_with(file, text, None);
    match open {
        Some(from) => {
            let (tree, diagnostics, _) = parse_with(file, text, Some(from));
            (tree, diagnostics)
        }
        None => (tree, diagnostics),
    }
}

/// One parse; also returns where the top-level declaration starts that a
/// block left open at the end of the file belongs to.
fn parse_with(
    file: FileId,
    text: &str,
    dedent_from: Option<usize>,
) -> (SourceFile, Vec<Diagnostic>, Option<usize>) {
    let ctx = Ctx {
        file,
        text,
        dedent_from,
        comments: RefCell::new(Vec::new()),
        diagnostics: RefCell::new(Vec::new()),
    };
    let input = In::new_extra(text, &ctx);
    let (items, open) = items(input);
    let mut comments = ctx.comments.into_inner();
    comments.sort_by_key(|c| c.span.start);
    comments.dedup_by_key(|c| c.span.start);
    let mut diagnostics = ctx.diagnostics.into_inner();
    crate::diagnostic::sort(&mut diagnostics);
    (
        SourceFile {
            file,
            items,
            comments,
        },
        diagnostics,
        open,
    )
}

// ---- positions and errors ----

fn offset(i: &In) -> usize {
    i.location_offset()
}

fn span_between(start: &In, end: &In) -> Span {
    Span::new(start.extra.file, offset(start), offset(end))
}

fn span_at(i: &In, len: usize) -> Span {
    Span::new(i.extra.file, offset(i), offset(i) + len)
}

fn record(i: &In, diagnostic: Diagnostic) {
    i.extra.diagnostics.borrow_mut().push(diagnostic);
}

fn fail<O>(i: &In, expected: &[&'static str]) -> PResult<'static, O> {
    Err(nom::Err::Error(PError::expected(offset(i), expected)))
}

/// A short description of what stands at the start of `i`, for "found ...".
fn found(i: &In) -> (String, usize) {
    let rest = i.fragment();
    let Some(c) = rest.chars().next() else {
        return ("end of file".to_string(), 0);
    };
    if c == '\n' || c == '\r' {
        return ("end of line".to_string(), 0);
    }
    if is_ident_start(c) || c.is_ascii_digit() {
        let word_len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        let word = &rest[..word_len];
        let shown: String = word.chars().take(40).collect();
        let dots = if shown.len() < word.len() { "..." } else { "" };
        return (format!("`{shown}{dots}`"), word_len);
    }
    if c == '"' {
        return ("a string".to_string(), 1);
    }
    if c.is_control() {
        return (
            format!("the control character U+{:04X}", c as u32),
            c.len_utf8(),
        );
    }
    (format!("`{c}`"), c.len_utf8())
}

/// Turns a failed parse into a diagnostic.
fn to_diagnostic(text_at: &In, error: PError) -> Diagnostic {
    if let Some(d) = error.diagnostic {
        return *d;
    }
    let at = advance_to(text_at, error.offset);
    let (found, len) = found(&at);
    let expected = join_alternatives(&error.expected);
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {expected}, found {found}")
    };
    let label = if expected.is_empty() {
        "not expected here".to_string()
    } else {
        format!("expected {expected}")
    };
    Diagnostic::error("E002", message)
        .primary(span_at(&at, len), label)
        .help_opt(syntax_hint(text_at, &at, &error.expected))
}

/// Help for the slips people coming from other formats make. `from` is
/// where the broken entry starts, `at` where parsing stopped.
fn syntax_hint(from: &In, at: &In, expected: &[&'static str]) -> Option<String> {
    let next = at.fragment().chars().next();
    let wants_eq = expected.contains(&"`=`");
    let rest_of_line = at.fragment().split(['\n', '\r']).next().unwrap_or_default();
    if expected.contains(&"`)`") {
        // `secret(blog.secret_key)`: the name is a string.
        let before = &from.fragment()[..offset(at).saturating_sub(offset(from))];
        let open = before.rfind('(').map_or("", |p| &before[p + 1..]);
        let written = format!(
            "{open}{}",
            rest_of_line.split(')').next().unwrap_or_default()
        );
        let name = written.trim();
        return Some(format!(
            "a secret's name is a string, in quotes: secret(\"{}\")",
            if name.is_empty() { "app.name" } else { name }
        ));
    }
    if expected.contains(&"a value") {
        match next {
            Some('(') => {
                return Some("a tuple is written as a list in a spec: [\"a\", \"b\"]".into())
            }
            Some('~' | '/' | '.' | '$' | '@' | '*' | '<' | '%' | '+' | '&' | '!' | '?') => {
                let word = rest_of_line
                    .split([' ', '\t', '}', ']', ','])
                    .next()
                    .unwrap_or_default();
                return Some(format!("put it in quotes: \"{word}\""));
            }
            _ => {}
        }
    }
    match next {
        Some(':') if wants_eq => {
            Some("sitec writes `key = value`, with `=` rather than `:`".into())
        }
        Some(',' | ';') if !expected.contains(&"`,`") => Some(
            "entries in a block are separated by spaces or new lines; remove the separator".into(),
        ),
        Some('\'') => Some("strings are written in double quotes: \"like this\"".into()),
        Some('\n' | '\r' | '}') if expected.contains(&"`{`") => Some(
            "an entry is `key = value` or `key LABELS { ... }`, its `=` or `{` on the line it starts on; a resource with nothing to set still takes `{}`: `package \"htop\" {}`".into(),
        ),
        _ if expected.contains(&"`,`")
            && next.is_some_and(|c| is_ident_start(c) || c == '"' || c.is_ascii_digit()) =>
        {
            Some("separate list items with commas: [a, b]".into())
        }
        _ => None,
    }
}

fn join_alternatives(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [first, second] => format!("{first} or {second}"),
        [init @ .., last] => format!("{}, or {last}", init.join(", ")),
    }
}

/// The input advanced to absolute `target` (at or after `i`'s offset).
fn advance_to<'a>(i: &In<'a>, target: usize) -> In<'a> {
    let skip = target.saturating_sub(offset(i)).min(i.fragment().len());
    // `skip` always lands on a char boundary: error offsets come from inputs.
    let mut skip = skip;
    while !i.fragment().is_char_boundary(skip) {
        skip -= 1;
    }
    take_bytes(i, skip).0
}

/// Splits off the first `n` bytes (on a char boundary) as (rest, taken).
fn take_bytes<'a>(i: &In<'a>, n: usize) -> (In<'a>, In<'a>) {
    // Input::take_split counts bytes for text (the `take` combinator counts
    // chars); `n` always comes from a byte position found in the fragment.
    nom::Input::take_split(i, n.min(i.fragment().len()))
}

// ---- whitespace and comments ----

/// Skips spaces, tabs, new lines and comments, keeping the comments.
fn ws(mut i: In) -> In {
    loop {
        let rest = i.fragment();
        // Bytes, not chars: every blank is ASCII, and this is the hottest loop.
        let blank = rest
            .bytes()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
        if blank > 0 {
            i = take_bytes(&i, blank).0;
        }
        if !i.fragment().starts_with('#') {
            return i;
        }
        let line = i.fragment().find('\n').unwrap_or(i.fragment().len());
        let (rest, comment) = take_bytes(&i, line);
        let text = comment.fragment().trim_end_matches('\r').to_string();
        i.extra.comments.borrow_mut().push(Comment {
            text,
            span: span_between(&comment, &rest),
        });
        i = rest;
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn ident(i: In) -> PResult<Name> {
    // By hand rather than `take_while`: every key and bare word passes here.
    // Identifiers are ASCII, so bytes and chars agree on where one ends.
    let bytes = i.fragment().as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| is_ident_start(char::from(*b)))
    {
        return fail(&i, &[]);
    }
    let len = bytes
        .iter()
        .position(|b| !is_ident_char(char::from(*b)))
        .unwrap_or(bytes.len());
    let (rest, word) = take_bytes(&i, len);
    Ok((
        rest,
        Name {
            text: word.fragment().to_string(),
            quoted: false,
            span: span_between(&i, &rest),
        },
    ))
}

// ---- items and entries ----

/// The file's items, and where the declaration starts that a block left
/// open at the end of the file belongs to.
fn items(mut i: In) -> (Vec<Item>, Option<usize>) {
    let mut items = Vec::new();
    loop {
        i = ws(i);
        if i.fragment().is_empty() {
            return (items, None);
        }
        if i.fragment().starts_with('}') {
            let (rest, _) = take_bytes(&i, 1);
            record(
                &i,
                Diagnostic::error("E011", "unexpected `}` with no block open")
                    .primary(span_at(&i, 1), "this closes nothing")
                    .help("remove it, or check that the block above opens with `{`"),
            );
            i = rest;
            continue;
        }
        match item(i) {
            Ok((rest, item)) => {
                items.push(item);
                i = rest;
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                let abort = e.abort;
                let unclosed_block = e.unclosed_block;
                let at = e.offset;
                record(&i, to_diagnostic(&i, e));
                if abort {
                    let open = unclosed_block && i.extra.dedent_from.is_none();
                    return (items, open.then(|| offset(&i)));
                }
                i = recover(advance_to(&i, at.max(offset(&i) + 1)));
            }
            Err(nom::Err::Incomplete(_)) => return (items, None),
        }
    }
}

fn item(i: In) -> PResult<Item> {
    let start = i;
    let (after_key, key) =
        name(i).map_err(|_| error_at(&i, &["a declaration such as `host` or `app`", "`use`"]))?;
    if key.text == "use" && !key.quoted {
        let rest = ws(after_key);
        if !rest.fragment().starts_with(['=', '{']) {
            return use_path(start, rest);
        }
    }
    let (i, entry) = entry_after_key(start, after_key, key, 0)?;
    Ok((i, Item::Entry(entry)))
}

fn error_at(i: &In, expected: &[&'static str]) -> nom::Err<PError> {
    nom::Err::Error(PError::expected(offset(i), expected))
}

/// `use std/platform`, `use ./file.site`, or `use "path with spaces.site"`.
fn use_path<'a>(start: In<'a>, i: In<'a>) -> PResult<'a, Item> {
    let path_start = i;
    let (i, path) = if i.fragment().starts_with('"') {
        string(i)?
    } else {
        let (rest, word) = take_while1(|c: char| c.is_ascii_alphanumeric() || "_./-".contains(c))
            .parse(i)
            .map_err(|_: nom::Err<PError>| {
                error_at(
                    &i,
                    &["a module path such as `std/platform` or `./roles.site`"],
                )
            })?;
        (rest, word.fragment().to_string())
    };
    let path_span = span_between(&path_start, &i);
    Ok((
        i,
        Item::Use(Use {
            path,
            path_span,
            span: span_between(&start, &i),
        }),
    ))
}

/// A key or label: an identifier or a quoted string.
fn name(i: In) -> PResult<Name> {
    if i.fragment().starts_with('"') {
        let start = i;
        let (i, text) = string(i)?;
        return Ok((
            i,
            Name {
                text,
                quoted: true,
                span: span_between(&start, &i),
            },
        ));
    }
    ident(i)
}

fn entry(i: In, depth: usize) -> PResult<Entry> {
    let start = i;
    let (after_key, key) = name(i).map_err(|_| error_at(&i, &["a key", "`}`"]))?;
    if key.text == "use" && !key.quoted && !ws(after_key).fragment().starts_with(['=', '{']) {
        return Err(nom::Err::Error(use_inside_block(&start)));
    }
    entry_after_key(start, after_key, key, depth)
}

/// E013: `use` inside a block (it imports for the whole spec).
fn use_inside_block(start: &In) -> PError {
    let line = start
        .fragment()
        .split(['\n', '\r'])
        .next()
        .unwrap_or_default();
    let line = line.split(" #").next().unwrap_or_default().trim_end();
    let diagnostic = Diagnostic::error("E013", "`use` stands at the top level only")
        .primary(span_at(start, line.len()), "inside a block")
        .help(format!(
            "move `{line}` to the top of the file, outside every block: a module's declarations are the whole spec's"
        ));
    PError::diagnostic(offset(start), diagnostic, false)
}

/// The rest of an entry once its key is read: labels, then `= value` or a block.
fn entry_after_key<'a>(
    start: In<'a>,
    mut i: In<'a>,
    key: Name,
    depth: usize,
) -> PResult<'a, Entry> {
    let mut labels = Vec::new();
    loop {
        let line_end = i.fragment().find('\n').map(|at| offset(&i) + at);
        i = ws(i);
        let rest = i.fragment();
        if rest.starts_with('=') {
            let (after, _) = take_bytes(&i, 1);
            let (after, value) = value(ws(after), depth)?;
            let span = span_between(&start, &after);
            return Ok((
                after,
                Entry {
                    key,
                    labels,
                    body: Body::Value(value),
                    span,
                },
            ));
        }
        if rest.starts_with('{') {
            let (after, block) = block(i, depth)?;
            let span = span_between(&start, &after);
            return Ok((
                after,
                Entry {
                    key,
                    labels,
                    body: Body::Block(block),
                    span,
                },
            ));
        }
        // A label stands on its entry's first line: a name after a line
        // break is the next entry, and this one lacks its `{}` or `= value`
        // (`package "htop"` alone on a line, then `package "curl" {}`).
        if let Some(line_end) = line_end.filter(|at| *at < offset(&i)) {
            return Err(nom::Err::Error(PError::expected(line_end, &["`=`", "`{`"])));
        }
        match name(i) {
            Ok((after, label)) => {
                labels.push(label);
                i = after;
            }
            Err(nom::Err::Error(_)) => return fail(&i, &["`=`", "`{`", "a label"]),
            Err(other) => return Err(other),
        }
    }
}

/// `{ entries }`. Recovers from a bad entry by skipping to the next line.
fn block(i: In, depth: usize) -> PResult<Block> {
    let open = i;
    check_depth(&i, depth)?;
    let (mut i, _) = char('{').parse(i)?;
    let mut entries: Vec<Entry> = Vec::new();
    let dedent_at = (i.extra.dedent_from)
        .filter(|from| offset(&open) >= *from)
        .map(|_| indentation(i.extra.text, offset(&open)));
    loop {
        let before_blanks = i;
        i = ws(i);
        if i.fragment().is_empty() && dedent_at.is_none() {
            return Err(unclosed(&open, &i, '{', '}'));
        }
        if let Some(own) = dedent_at {
            let at_end = i.fragment().is_empty();
            if at_end
                || !i.fragment().starts_with('}')
                    && starts_line_within(i.extra.text, offset(&i), own)
            {
                let last_end = entries.last().map_or(offset(&open) + 1, |e| e.span.end);
                record(&i, missing_brace(&open, last_end, at_end));
                let span = Span::new(i.extra.file, offset(&open), last_end);
                return Ok((
                    before_blanks,
                    Block {
                        entries,
                        one_line: false,
                        span,
                    },
                ));
            }
        }
        if i.fragment().starts_with('}') {
            let (after, _) = take_bytes(&i, 1);
            let span = span_between(&open, &after);
            let one_line = !open.fragment()[..span.end - span.start].contains('\n');
            return Ok((
                after,
                Block {
                    entries,
                    one_line,
                    span,
                },
            ));
        }
        match entry(i, depth + 1) {
            Ok((after, entry)) => {
                entries.push(entry);
                i = after;
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) if !e.abort => {
                let at = e.offset;
                record(&i, to_diagnostic(&i, e));
                i = recover(advance_to(&i, at.max(offset(&i) + 1)));
            }
            Err(other) => return Err(other),
        }
    }
}

fn check_depth(i: &In, depth: usize) -> Result<(), nom::Err<PError>> {
    if depth < MAX_DEPTH {
        return Ok(());
    }
    let diagnostic = Diagnostic::error("E007", format!("nesting deeper than {MAX_DEPTH} levels"))
        .primary(span_at(i, 1), "too deep")
        .help("flatten this value; no spec needs this many nested blocks or lists");
    Err(nom::Err::Failure(PError::diagnostic(
        offset(i),
        diagnostic,
        true,
    )))
}

/// How far the line holding byte `at` is indented, in characters.
fn indentation(text: &str, at: usize) -> usize {
    let line_start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    text[line_start..]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .count()
}

/// Whether byte `at` is the first thing on its line, indented `most`
/// characters or fewer.
fn starts_line_within(text: &str, at: usize, most: usize) -> bool {
    let line_start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    let before = &text[line_start..at];
    before.chars().all(|c| c == ' ' || c == '\t') && before.chars().count() <= most
}

/// E008 for a block whose next line is indented no deeper than the line
/// that opens it, or that the file ends in: its `}` is missing after its
/// last entry, which ends at `last_end`.
fn missing_brace(open: &In, last_end: usize, at_end: bool) -> Diagnostic {
    let end = Span::new(open.extra.file, last_end, last_end);
    let help = if at_end {
        "add `}` where the block ends: the file ends inside it"
    } else {
        "add `}` where the block ends: the next line is indented no deeper than the line that opens it"
    };
    Diagnostic::error("E008", "this block is never closed")
        .primary(end, "expected `}` after this")
        .secondary(span_at(open, 1), "the block opens here")
        .help(help)
}

fn unclosed(open: &In, end: &In, opener: char, closer: char) -> nom::Err<PError> {
    let what = match opener {
        '{' => "block",
        '[' => "list",
        _ => "argument list",
    };
    let diagnostic = Diagnostic::error("E008", format!("this {what} is never closed"))
        .primary(
            span_at(end, 0),
            format!("expected `{closer}` before the end of the file"),
        )
        .secondary(span_at(open, 1), format!("the {what} opens here"))
        .help(format!("add `{closer}` where the {what} should end"));
    let mut error = PError::diagnostic(offset(end), diagnostic, true);
    error.unclosed_block = opener == '{';
    nom::Err::Failure(error)
}

/// Skips the rest of a broken entry: to the end of the line, passing over
/// brackets, strings and comments, or to a `}` that closes the enclosing block.
fn recover(i: In) -> In {
    let text = i.fragment();
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut pos = 0;
    while pos < bytes.len() {
        match bytes[pos] {
            b'\n' if depth == 0 => break,
            b'}' if depth == 0 => break,
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                pos += text[pos..].find('\n').unwrap_or(text.len() - pos);
                continue;
            }
            b'"' => {
                pos += 1;
                while pos < bytes.len() && bytes[pos] != b'"' && bytes[pos] != b'\n' {
                    pos += if bytes[pos] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        pos += 1;
    }
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos += 1;
    }
    take_bytes(&i, pos).0
}

// ---- values ----

fn value(i: In, depth: usize) -> PResult<Value> {
    check_depth(&i, depth)?;
    let start = i;
    let Some(first) = i.fragment().chars().next() else {
        return fail(&i, &["a value"]);
    };
    let (i, kind) = match first {
        '"' if i.fragment().starts_with("\"\"\"") => {
            text_block(i).map(|(i, t)| (i, ValueKind::Text(t)))?
        }
        '"' => string(i).map(|(i, s)| (i, ValueKind::Str(s)))?,
        '[' => list(i, depth)?,
        '{' => block(i, depth + 1).map(|(i, b)| (i, ValueKind::Map(b)))?,
        '-' | '0'..='9' => number(i)?,
        c if is_ident_start(c) => word(i, depth)?,
        _ => return fail(&i, &["a value"]),
    };
    Ok((
        i,
        Value {
            kind,
            span: span_between(&start, &i),
        },
    ))
}

/// `true`, `false`, a call `name(args)`, or a bare name.
fn word(i: In, depth: usize) -> PResult<ValueKind> {
    let start = i;
    let (i, name) = ident(i)?;
    if let Some(unquoted) = unquoted_text(&start, &i) {
        return Ok(unquoted);
    }
    if i.fragment().starts_with('(') {
        let (i, args) = sequence(i, depth, '(', ')')?;
        return Ok((i, ValueKind::Call(Call { name, args })));
    }
    let kind = match name.text.as_str() {
        "true" => ValueKind::Bool(true),
        "false" => ValueKind::Bool(false),
        _ => ValueKind::Ref(name),
    };
    Ok((i, kind))
}

fn list(i: In, depth: usize) -> PResult<ValueKind> {
    let start = i;
    let (i, items) = sequence(i, depth, '[', ']')?;
    let multiline = start.fragment()[..offset(&i) - offset(&start)].contains('\n');
    Ok((i, ValueKind::List(List { items, multiline })))
}

/// Comma-separated values between `open` and `close`; a trailing comma is fine.
fn sequence(i: In, depth: usize, open: char, close: char) -> PResult<Vec<Value>> {
    let opener = i;
    let (mut i, _) = char(open).parse(i)?;
    let mut items = Vec::new();
    let close_word: &'static str = if close == ']' { "`]`" } else { "`)`" };
    loop {
        i = ws(i);
        if i.fragment().is_empty() {
            return Err(unclosed(&opener, &i, open, close));
        }
        if i.fragment().starts_with(close) {
            return Ok((take_bytes(&i, 1).0, items));
        }
        let (after, item) = value(i, depth + 1).map_err(|e| match e {
            nom::Err::Error(mut e) if e.offset == offset(&i) => {
                e.expected = vec!["a value", close_word];
                nom::Err::Error(e)
            }
            other => other,
        })?;
        items.push(item);
        i = ws(after);
        if i.fragment().starts_with(',') {
            i = take_bytes(&i, 1).0;
        } else if i.fragment().is_empty() {
            return Err(unclosed(&opener, &i, open, close));
        } else if !i.fragment().starts_with(close) {
            return fail(&i, &["`,`", close_word]);
        }
    }
}

/// An integer, or a number with a unit: a duration (`90s`) or a size (`512MB`).
fn number(i: In) -> PResult<ValueKind> {
    let start = i;
    let (i, text) = recognize(pair(
        nom::combinator::opt(char('-')),
        pair(
            take_while1(|c: char| c.is_ascii_digit()),
            take_while(|c: char| c.is_ascii_digit() || c == '_'),
        ),
    ))
    .parse(i)
    .map_err(|_: nom::Err<PError>| error_at(&start, &["a number"]))?;
    if let Some(dotted) = dotted_number(&start, &i) {
        return Ok(dotted);
    }
    let (i, unit) = take_while(|c: char| c.is_ascii_alphabetic()).parse(i)?;
    let digits: String = text.fragment().chars().filter(|c| *c != '_').collect();
    let span = span_between(&start, &i);
    if unit.fragment().is_empty() {
        let Ok(value) = digits.parse::<i64>() else {
            record(
                &start,
                too_large(span, "integers go up to 9223372036854775807"),
            );
            return Ok((i, ValueKind::Invalid));
        };
        return Ok((i, ValueKind::Int(value)));
    }
    let unit_span = span_between(&unit, &i);
    if digits.starts_with('-') {
        record(
            &start,
            Diagnostic::error("E006", "a duration or size can't be negative")
                .primary(span, "negative")
                .help("remove the `-`"),
        );
    }
    let Ok(amount) = digits.trim_start_matches('-').parse::<u64>() else {
        record(
            &start,
            too_large(span, "amounts with a unit must fit in 64 bits"),
        );
        return Ok((i, ValueKind::Invalid));
    };
    let kind = quantity(amount, unit.fragment()).unwrap_or_else(|| {
        record(&start, unknown_unit(&digits, unit.fragment(), unit_span));
        ValueKind::Invalid
    });
    if quantity_overflows(&kind) {
        record(
            &start,
            too_large(span, "a duration is at most 18446744073709551615ms, a size at most 18446744073709551615B")
                .help("no field takes anything near this; check the amount and its unit"),
        );
        return Ok((i, ValueKind::Invalid));
    }
    Ok((i, kind))
}

/// Whether a quantity's milliseconds or bytes do not fit in 64 bits (they
/// would be cut to the largest that does).
fn quantity_overflows(kind: &ValueKind) -> bool {
    match kind {
        ValueKind::Duration(q) => q.amount.checked_mul(q.unit.millis()).is_none(),
        ValueKind::Size(q) => q.amount.checked_mul(q.unit.bytes()).is_none(),
        _ => false,
    }
}

/// `blog.example.com`, `redis://cache:6379` or `blog.wsgi:application`
/// written without quotes (a name followed at once by `.`, `:`, `/` or `@`
/// and more): reported (E014), and read as the string it was meant to be.
fn unquoted_text<'a>(start: &In<'a>, after_name: &In<'a>) -> Option<(In<'a>, ValueKind)> {
    let rest = after_name.fragment();
    let mut chars = rest.chars();
    let joined = matches!(chars.next(), Some('.' | ':' | '/' | '@'))
        && chars.next().is_some_and(|c| !c.is_whitespace());
    if !joined {
        return None;
    }
    let len = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}' | ')' | '#' | '"'))
        .unwrap_or(rest.len());
    let (i, _) = take_bytes(after_name, len);
    let text = &start.fragment()[..offset(&i) - offset(start)];
    // A call's argument: the call written right is the fix.
    let before = start.extra.text[..offset(start)].trim_end();
    let call = before.strip_suffix('(').map(|b| {
        let name_start = b.rfind(|c: char| !is_ident_char(c)).map_or(0, |p| p + 1);
        &b[name_start..]
    });
    let help = match call {
        Some(call) if !call.is_empty() => {
            format!("write `{call}(\"{text}\")`: its argument is a string")
        }
        _ => format!("text is written in double quotes: \"{text}\""),
    };
    record(
        start,
        Diagnostic::error("E014", format!("`{text}` needs quotes"))
            .primary(span_between(start, &i), "text without quotes")
            .help(help),
    );
    Some((i, ValueKind::Str(text.to_string())))
}

/// `10.0.0.2` or `3.11` written without quotes: reported, and read as the
/// string it was meant to be so parsing goes on.
fn dotted_number<'a>(start: &In<'a>, after_digits: &In<'a>) -> Option<(In<'a>, ValueKind)> {
    let rest = after_digits.fragment();
    if !(rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(rest.len());
    let (i, _) = take_bytes(after_digits, len);
    let text = &start.fragment()[..offset(&i) - offset(start)];
    let span = span_between(start, &i);
    // `1.5GB`, `0.5s`: a fraction of a unit, which a smaller unit writes whole.
    let fraction = text.split_once('.').and_then(|(whole, rest)| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (fraction, unit) = rest.split_at(digits);
        let whole = whole.trim_start_matches('-').replace('_', "");
        super::units::whole(&whole, fraction, unit)
    });
    if let Some(written) = fraction {
        record(
            start,
            Diagnostic::error("E012", format!("`{text}` is not a whole amount"))
                .primary(span, "a fraction")
                .help(format!(
                    "amounts are whole numbers of a unit: write `{written}`"
                )),
        );
        return Some((i, ValueKind::Invalid));
    }
    record(
        start,
        Diagnostic::error("E012", format!("`{text}` is not a number sitec reads"))
            .primary(span, "needs quotes")
            .help(format!(
                "numbers are whole; write an address or a version as a string: \"{text}\""
            )),
    );
    Some((i, ValueKind::Str(text.to_string())))
}

fn quantity(amount: u64, unit: &str) -> Option<ValueKind> {
    if let Some((_, u, _)) = DurationUnit::ALL.iter().find(|(s, _, _)| *s == unit) {
        return Some(ValueKind::Duration(Quantity { amount, unit: *u }));
    }
    SizeUnit::ALL
        .iter()
        .find(|(s, _, _)| *s == unit)
        .map(|(_, u, _)| ValueKind::Size(Quantity { amount, unit: *u }))
}

fn too_large(span: Span, limit: &str) -> Diagnostic {
    Diagnostic::error("E006", "number too large")
        .primary(span, "does not fit")
        .note(limit.to_string())
}

/// E005 for `amount` followed by `unit`: the unit meant, when it is a word
/// other tools use (`min`, `hrs`, `mb`), else the closest of the language's.
fn unknown_unit(amount: &str, unit: &str, span: Span) -> Diagnostic {
    let units: Vec<&str> = DurationUnit::ALL
        .iter()
        .map(|(s, _, _)| *s)
        .chain(SizeUnit::ALL.iter().map(|(s, _, _)| *s))
        .collect();
    let help = match super::units::alias(unit) {
        Some((meant, measure)) => format!("write `{amount}{meant}`: {}", measure.word()),
        None => match crate::suggest::closest(unit, units.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => {
                "durations take ms, s, m, h, d or w; sizes take B, KB, MB, GB or TB".to_string()
            }
        },
    };
    Diagnostic::error("E005", format!("unknown unit `{unit}`"))
        .primary(span, "not a unit sitec knows")
        .help(help)
        .note("durations: ms, s, m, h, d, w; sizes (binary, 1KB = 1024 bytes): B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
}

/// A double-quoted string on one line, with escapes.
fn string(i: In) -> PResult<String> {
    let open = i;
    let (mut i, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let rest = i.fragment();
        // Bytes: the three stops are ASCII.
        let stop = rest
            .bytes()
            .position(|b| matches!(b, b'"' | b'\\' | b'\n'))
            .unwrap_or(rest.len());
        out.push_str(rest[..stop].trim_end_matches('\r'));
        i = take_bytes(&i, stop).0;
        match i.fragment().chars().next() {
            Some('"') => return Ok((take_bytes(&i, 1).0, out)),
            Some('\\') => i = escape(i, &mut out),
            _ => {
                // The quote was probably forgotten before a closing bracket on
                // this line: end the string there so the block still closes.
                if let Some(closer) = out.rfind(['}', ']', ')']) {
                    let back = out.len() - closer;
                    // `"10.0.0.2 }` meant "10.0.0.2": the space went before
                    // the bracket, not into the string.
                    out.truncate(out[..closer].trim_end().len());
                    i = advance_to(&open, offset(&i) - back);
                }
                record(
                    &open,
                    Diagnostic::error("E003", "unterminated string")
                        .primary(span_at(&open, 1), "this string is never closed")
                        .help("close it with `\"` on the same line; for text over several lines use a `\"\"\"` block"),
                );
                return Ok((i, out));
            }
        }
    }
}

/// Decodes one escape at `i` (which starts with `\`) into `out`.
fn escape<'a>(i: In<'a>, out: &mut String) -> In<'a> {
    let rest = i.fragment();
    let decoded = match rest[1..].chars().next() {
        Some('n') => Some(('\n', 2)),
        Some('t') => Some(('\t', 2)),
        Some('r') => Some(('\r', 2)),
        Some('0') => Some(('\0', 2)),
        Some('\\') => Some(('\\', 2)),
        Some('"') => Some(('"', 2)),
        Some('u') => unicode_escape(&rest[2..]),
        _ => None,
    };
    if let Some((c, len)) = decoded {
        out.push(c);
        return take_bytes(&i, len).0;
    }
    let len = match rest[1..].chars().next() {
        Some(c) if c != '\n' && c != '\r' => 1 + c.len_utf8(),
        _ => 1,
    };
    let shown = &rest[..len.min(rest.len())];
    record(
        &i,
        Diagnostic::error("E004", format!("unknown escape `{shown}`"))
            .primary(span_at(&i, shown.len()), "not an escape")
            .help(
                "escapes are \\n \\t \\r \\0 \\\\ \\\" and \\u{XXXX}; write `\\\\` for a backslash",
            ),
    );
    take_bytes(&i, shown.len().min(rest.len())).0
}

/// `\u{1F600}`: returns the char and the escape's length in bytes.
fn unicode_escape(after_u: &str) -> Option<(char, usize)> {
    let body = after_u.strip_prefix('{')?;
    let close = body.find('}')?;
    let hex = &body[..close];
    if hex.is_empty() || hex.len() > 6 {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    Some((c, 2 + 1 + close + 1))
}

/// A `"""` text block. The text starts on the line after the opening quotes;
/// the closing quotes stand on their own line, and their indentation is
/// removed from every line. The value ends with a new line.
fn text_block(i: In) -> PResult<String> {
    let open = i;
    let (i, _) = tag("\"\"\"").parse(i)?;
    let first_line = i.fragment().find('\n').unwrap_or(i.fragment().len());
    if !i.fragment()[..first_line].trim().is_empty() {
        record(
            &open,
            Diagnostic::error("E009", "text after the opening `\"\"\"`")
                .primary(span_at(&i, first_line), "move this to the next line")
                .help("a `\"\"\"` block starts its text on the line after the opening quotes"),
        );
    }
    let body_start = (first_line + 1).min(i.fragment().len());
    let body = &i.fragment()[body_start..];
    let Some(close) = find_closing_quotes(body) else {
        let diagnostic = Diagnostic::error("E009", "this text block is never closed")
            .primary(span_at(&open, 3), "opens here")
            .help("end it with `\"\"\"` on a line of its own");
        return Err(nom::Err::Failure(PError::diagnostic(
            offset(&open),
            diagnostic,
            true,
        )));
    };
    let line_start = body[..close].rfind('\n').map_or(0, |p| p + 1);
    let indent = &body[line_start..close];
    let lines = if line_start == 0 {
        ""
    } else {
        &body[..line_start - 1]
    };
    let mut text = String::new();
    let mut line_offset = body_start;
    for line in lines.split('\n') {
        let line = line.trim_end_matches('\r');
        if line_start > 0 {
            match line.strip_prefix(indent) {
                Some(stripped) => text.push_str(stripped),
                None if line.trim().is_empty() => {}
                None => {
                    let at = take_bytes(&i, line_offset).0;
                    let line_indent = &line[..line.len() - line.trim_start().len()];
                    let help = if line_indent.contains('\t') != indent.contains('\t') {
                        "this line is indented with tabs and the closing `\"\"\"` with spaces (or the other way): indent every line of the block the same way, with spaces"
                    } else {
                        "indent every line of the block at least as far as its closing `\"\"\"`"
                    };
                    record(
                        &open,
                        Diagnostic::error("E009", "line indented less than the closing `\"\"\"`")
                            .primary(
                                span_at(&at, line.len()),
                                "starts left of the closing quotes",
                            )
                            .help(help),
                    );
                    text.push_str(line.trim_start());
                }
            }
            text.push('\n');
        }
        line_offset += line.len() + 1;
    }
    let end = body_start + close + 3;
    Ok((take_bytes(&i, end).0, text))
}

/// Offset of the `"""` that closes a text block: the first one that has only
/// spaces before it on its line.
fn find_closing_quotes(body: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = body[from..].find("\"\"\"") {
        let at = from + found;
        let line_start = body[..at].rfind('\n').map_or(0, |p| p + 1);
        if body[line_start..at].chars().all(|c| c == ' ' || c == '\t') {
            return Some(at);
        }
        from = at + 3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> SourceFile {
        let (file, diagnostics) = parse(FileId(0), text);
        assert!(
            diagnostics.is_empty(),
            "unexpected diagnostics: {diagnostics:?}"
        );
        file
    }

    fn codes(text: &str) -> Vec<&'static str> {
        parse(FileId(0), text).1.iter().map(|d| d.code).collect()
    }

    fn first_value(text: &str) -> ValueKind {
        let file = parse_ok(text);
        match &file.items[0] {
            Item::Entry(Entry {
                body: Body::Value(v),
                ..
            }) => v.kind.clone(),
            other => panic!("not a value entry: {other:?}"),
        }
    }

    #[test]
    fn values() {
        assert!(matches!(first_value("x = 42"), ValueKind::Int(42)));
        assert!(matches!(first_value("x = -7"), ValueKind::Int(-7)));
        assert!(matches!(first_value("x = 1_000"), ValueKind::Int(1000)));
        assert!(matches!(first_value("x = true"), ValueKind::Bool(true)));
        assert!(matches!(first_value("x = 90s"), ValueKind::Duration(q) if q.millis() == 90_000));
        assert!(matches!(first_value("x = 512MB"), ValueKind::Size(q) if q.bytes() == 512 << 20));
        assert!(matches!(first_value("x = colo"), ValueKind::Ref(n) if n.text == "colo"));
        match first_value(r#"x = "a\n\"b\" \u{e9}""#) {
            ValueKind::Str(s) => assert_eq!(s, "a\n\"b\" é"),
            other => panic!("{other:?}"),
        }
        match first_value("x = \"Café ☃\"") {
            ValueKind::Str(s) => assert_eq!(s, "Café ☃"),
            other => panic!("{other:?}"),
        }
        match first_value("x = secret(\"blog.key\")") {
            ValueKind::Call(c) => assert_eq!((c.name.text.as_str(), c.args.len()), ("secret", 1)),
            other => panic!("{other:?}"),
        }
        match first_value("x = [a, \"b\", 3,]") {
            ValueKind::List(l) => assert_eq!(l.items.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_blocks_remove_the_closing_indentation() {
        let text = "x = \"\"\"\n    line one\n      indented\n\n    \"\"\"\n";
        match first_value(text) {
            ValueKind::Text(t) => assert_eq!(t, "line one\n  indented\n\n"),
            other => panic!("{other:?}"),
        }
        match first_value("x = \"\"\"\n\"\"\"") {
            ValueKind::Text(t) => assert_eq!(t, ""),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn labels_stand_on_their_entrys_line_and_its_brace_may_not() {
        let (file, diagnostics) = parse(
            FileId(0),
            "role r {\n  package \"htop\"\n  package \"curl\" {}\n}\n",
        );
        let at: Vec<_> = diagnostics
            .iter()
            .map(|d| (d.code, d.primary_span().map(|s| s.start)))
            .collect();
        assert_eq!(at, [("E002", Some(25))], "at the end of line 2");
        // The next line is read as the next entry.
        let Item::Entry(role) = &file.items[0] else {
            panic!()
        };
        let kept: Vec<_> = (role.block().expect("a block").entries.iter())
            .map(|e| e.labels.len())
            .collect();
        assert_eq!(kept, [1]);
        // A `{` or `=` on the next line is still read, with its labels.
        let file = parse_ok("host web1\n{\n  provider = colo\n}\nx\n= 1\n");
        assert_eq!(file.items.len(), 2);
    }

    #[test]
    fn entries_labels_and_blocks() {
        let file =
            parse_ok("settings app blog host run1 { DEBUG = false }\nstatic \"/s/\" = \"dir\"");
        let Item::Entry(e) = &file.items[0] else {
            panic!()
        };
        let labels: Vec<&str> = e.labels.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(labels, ["app", "blog", "host", "run1"]);
        assert!(e
            .block()
            .is_some_and(|b| b.one_line && b.entries.len() == 1));
        let Item::Entry(e) = &file.items[1] else {
            panic!()
        };
        assert!(e.labels[0].quoted);
    }

    #[test]
    fn use_paths() {
        let file = parse_ok("use std/platform\nuse ./roles/x.site\nuse \"my roles.site\"");
        let paths: Vec<&str> = file
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Use(u) => Some(u.path.as_str()),
                Item::Entry(_) => None,
            })
            .collect();
        assert_eq!(paths, ["std/platform", "./roles/x.site", "my roles.site"]);
    }

    #[test]
    fn comments_are_kept() {
        let file = parse_ok("# top\nhost a { # trailing\n  x = 1 # end\n}\n");
        let texts: Vec<&str> = file.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["# top", "# trailing", "# end"]);
    }

    #[test]
    fn every_error_in_one_run() {
        let text = "host a { x = }\nhost b { y = @ }\nhost c { z = 1 w: 2 }\n";
        assert_eq!(codes(text), ["E002", "E002", "E002"]);
    }

    #[test]
    fn lexical_errors_do_not_stop_parsing() {
        assert_eq!(
            codes("a { x = 5parsecs\n y = \"bad \\q\" }\nb { z = 99999999999999999999 }"),
            ["E005", "E004", "E006"]
        );
        assert_eq!(codes("a { x = \"open\n}"), ["E003"]);
        assert_eq!(codes("a { x = 10.0.0.2  y = 3.11 }"), ["E012", "E012"]);
    }

    #[test]
    fn hostile_input_is_refused_without_panicking() {
        assert_eq!(codes(&"[".repeat(100_000)), ["E002"]);
        assert_eq!(codes(&format!("x = {}", "[".repeat(100_000))), ["E007"]);
        assert_eq!(codes(&"a { ".repeat(100_000)), ["E007"]);
        assert_eq!(
            codes(&format!("x {}", "{".repeat(100_000))),
            ["E002", "E008"]
        );
        assert_eq!(codes("x { y = [1, 2"), ["E008"]);
        assert_eq!(codes("}"), ["E011"]);
        let long = format!("x = \"{}\"", "a".repeat(10 << 20));
        assert!(codes(&long).is_empty());
    }
}
