//! The formatter: a syntax tree back to text, in one canonical layout.
//!
//! Two-space indentation, one entry per line, `key = value` with single
//! spaces, strings re-escaped the one canonical way. Choices the writer made
//! on purpose are kept: a block written on one line stays on one line while it
//! fits in [`MAX_WIDTH`] columns and holds only simple values (entries then
//! stand two spaces apart, like a table row); a list written over several
//! lines stays that way; single blank lines between entries stay, runs of them
//! shrink to one. Every comment is kept, in order. Formatting formatted text
//! changes nothing. Pure: text in, text out.

use crate::syntax::ast::*;

/// The widest line the formatter makes on purpose.
pub const MAX_WIDTH: usize = 100;

const INDENT: &str = "  ";

/// Formats a file that parsed without errors. `text` is its source, used to
/// see where the writer left blank lines.
pub fn format(file: &SourceFile, text: &str) -> String {
    let mut printer = Printer {
        text,
        comments: &file.comments,
        next_comment: 0,
        out: String::new(),
        level: 0,
    };
    printer.sequence(
        file.items
            .iter()
            .map(|item| (item.span().start, item.span().end, Node::Item(item))),
        usize::MAX,
    );
    let mut out = printer.out;
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `formatted` as the file it came from was saved: with its byte-order
/// mark, and with `\r\n` line ends when its first line ends so (editors
/// on Windows write them; the parser reads either).
pub fn as_saved(formatted: String, original: &[u8]) -> String {
    let original = original
        .strip_prefix(crate::syntax::BOM.as_bytes())
        .map_or((original, ""), |rest| (rest, crate::syntax::BOM));
    let (text, bom) = original;
    let first_line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let crlf = first_line.len() < text.len() && first_line.ends_with(b"\r");
    let body = if crlf {
        formatted.replace('\n', "\r\n")
    } else {
        formatted
    };
    if bom.is_empty() {
        body
    } else {
        format!("{bom}{body}")
    }
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Entry(&'a Entry),
}

struct Printer<'a> {
    text: &'a str,
    comments: &'a [Comment],
    next_comment: usize,
    out: String,
    level: usize,
}

impl<'a> Printer<'a> {
    /// Prints entries one per line, with the comments before, between and
    /// after them, up to `end` (the offset of the closing brace).
    fn sequence(&mut self, nodes: impl Iterator<Item = (usize, usize, Node<'a>)>, end: usize) {
        let mut last_end: Option<usize> = None;
        for (start, node_end, node) in nodes {
            let head_end = match node {
                Node::Item(Item::Entry(e)) | Node::Entry(e) => body_start(e),
                Node::Item(Item::Use(u)) => u.span.end,
            };
            last_end = self.own_line_comments(last_end, start, head_end);
            if let Some(prev) = last_end {
                if self.blank_between(prev, start) {
                    self.out.push('\n');
                }
            }
            self.indent();
            match node {
                Node::Item(Item::Use(u)) => self.use_item(u),
                Node::Item(Item::Entry(e)) | Node::Entry(e) => self.entry(e),
            }
            self.trailing_comments(node_end);
            self.out.push('\n');
            last_end = Some(node_end);
        }
        self.own_line_comments(last_end, end, end);
    }

    /// Prints, each on its own line, the comments that start before `until`;
    /// comments between `start` and `until` (inside an entry's head, an odd
    /// place) are moved above it. Returns the end of the last one printed.
    fn own_line_comments(
        &mut self,
        mut last_end: Option<usize>,
        start: usize,
        until: usize,
    ) -> Option<usize> {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.span.start >= until.max(start) {
                break;
            }
            if let Some(prev) = last_end {
                if comment.span.start >= prev && self.blank_between(prev, comment.span.start) {
                    self.out.push('\n');
                }
            }
            self.indent();
            self.out.push_str(comment.text.trim_end());
            self.out.push('\n');
            last_end = Some(comment.span.end);
            self.next_comment += 1;
        }
        last_end
    }

    /// Appends a comment that stands on the same line after `end`, and any
    /// comment the node itself swallowed (they would be lost otherwise).
    fn trailing_comments(&mut self, end: usize) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            let inside = comment.span.start < end;
            // Trailing: nothing but blanks (or a list's comma) between `end`
            // and the comment.
            let same_line = comment.span.start >= end
                && self.text[end..comment.span.start]
                    .chars()
                    .all(|c| matches!(c, ' ' | '\t' | ','));
            if !inside && !same_line {
                break;
            }
            if !self.out.ends_with('\n') {
                // A comment left inside a one-line construct (a call's
                // parentheses) goes after it, as one written there would:
                // the next run then sees the same text.
                self.out.push(' ');
            }
            self.out.push_str(comment.text.trim_end());
            self.next_comment += 1;
            if inside {
                self.out.push('\n');
                self.indent();
            }
        }
        let trimmed = self.out.trim_end_matches([' ']).len();
        self.out.truncate(trimmed);
        if self.out.ends_with('\n') {
            self.out.pop();
        }
    }

    fn blank_between(&self, from: usize, to: usize) -> bool {
        from <= to
            && self
                .text
                .get(from..to)
                .is_some_and(|gap| gap.matches('\n').count() >= 2)
    }

    fn has_comment_in(&self, start: usize, end: usize) -> bool {
        let first = self.comments.partition_point(|c| c.span.start < start);
        self.comments.get(first).is_some_and(|c| c.span.start < end)
    }

    fn indent(&mut self) {
        for _ in 0..self.level {
            self.out.push_str(INDENT);
        }
    }

    fn column(&self) -> usize {
        let line_start = self.out.rfind('\n').map_or(0, |p| p + 1);
        self.out[line_start..].chars().count()
    }

    fn use_item(&mut self, u: &Use) {
        self.out.push_str("use ");
        let bare = !u.path.is_empty()
            && u.path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
        if bare {
            self.out.push_str(&u.path);
        } else {
            self.out.push_str(&quote(&u.path));
        }
    }

    fn entry(&mut self, e: &'a Entry) {
        self.name(&e.key);
        for label in &e.labels {
            self.out.push(' ');
            self.name(label);
        }
        match &e.body {
            Body::Value(v) => {
                self.out.push_str(" = ");
                self.value(v);
            }
            Body::Block(b) => {
                self.out.push(' ');
                self.block(b);
            }
        }
    }

    fn name(&mut self, name: &Name) {
        if name.quoted {
            self.out.push_str(&quote(&name.text));
        } else {
            self.out.push_str(&name.text);
        }
    }

    fn block(&mut self, block: &'a Block) {
        let inner_comments = self.has_comment_in(block.span.start, block.span.end);
        if block.entries.is_empty() && !inner_comments {
            self.out.push_str("{}");
            return;
        }
        if block.one_line && !inner_comments {
            if let Some(line) = self.one_line_block(block) {
                if self.column() + line.len() <= MAX_WIDTH {
                    self.out.push_str(&line);
                    return;
                }
            }
        }
        self.out.push('{');
        self.trailing_comments(block.span.start + 1);
        self.out.push('\n');
        self.level += 1;
        let end = block.span.end.saturating_sub(1);
        self.sequence(
            block
                .entries
                .iter()
                .map(|e| (e.span.start, e.span.end, Node::Entry(e))),
            end,
        );
        self.level -= 1;
        self.indent();
        self.out.push('}');
    }

    /// A printer for a one-line piece with no comments inside, measured
    /// before it is used.
    fn detached(&self) -> Printer<'a> {
        Printer {
            text: self.text,
            comments: &[],
            next_comment: 0,
            out: String::new(),
            level: 0,
        }
    }

    /// `{ a = 1  b = "x" }`, or None when an entry is not simple enough.
    fn one_line_block(&self, block: &'a Block) -> Option<String> {
        let mut sub = self.detached();
        sub.out.push_str("{ ");
        for (n, e) in block.entries.iter().enumerate() {
            if !e.value().is_some_and(is_simple) {
                return None;
            }
            if n > 0 {
                sub.out.push_str("  ");
            }
            sub.entry(e);
        }
        sub.out.push_str(" }");
        Some(sub.out)
    }

    fn value(&mut self, v: &'a Value) {
        match &v.kind {
            ValueKind::Str(s) => self.out.push_str(&quote(s)),
            ValueKind::Text(t) => self.text_block(t),
            ValueKind::Int(n) => self.out.push_str(&n.to_string()),
            ValueKind::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            ValueKind::Duration(q) => {
                self.out
                    .push_str(&format!("{}{}", q.amount, q.unit.suffix()))
            }
            ValueKind::Size(q) => self
                .out
                .push_str(&format!("{}{}", q.amount, q.unit.suffix())),
            ValueKind::List(list) => self.list(list, v),
            ValueKind::Map(block) => self.block(block),
            ValueKind::Ref(name) => self.name(name),
            // Files with errors are never formatted.
            ValueKind::Invalid => {}
            ValueKind::Call(call) => {
                self.name(&call.name);
                self.comma_separated('(', &call.args, ')');
            }
        }
    }

    fn list(&mut self, list: &'a List, v: &'a Value) {
        if list.items.is_empty() && !self.has_comment_in(v.span.start, v.span.end) {
            self.out.push_str("[]");
            return;
        }
        let inner_comments = self.has_comment_in(v.span.start, v.span.end);
        if !list.multiline && !inner_comments && list.items.iter().all(is_simple) {
            let mut sub = self.detached();
            sub.comma_separated('[', &list.items, ']');
            if self.column() + sub.out.len() <= MAX_WIDTH {
                self.out.push_str(&sub.out);
                return;
            }
        }
        self.out.push('[');
        self.trailing_comments(v.span.start + 1);
        self.out.push('\n');
        self.level += 1;
        let mut last_end = None;
        for item in &list.items {
            last_end = self.own_line_comments(last_end, item.span.start, item.span.start);
            if let Some(prev) = last_end {
                if self.blank_between(prev, item.span.start) {
                    self.out.push('\n');
                }
            }
            self.indent();
            self.value(item);
            self.out.push(',');
            self.trailing_comments(item.span.end);
            self.out.push('\n');
            last_end = Some(item.span.end);
        }
        self.own_line_comments(last_end, v.span.end, v.span.end);
        self.level -= 1;
        self.indent();
        self.out.push(']');
    }

    /// `open a, b, c close` on one line: call arguments, short lists.
    fn comma_separated(&mut self, open: char, items: &'a [Value], close: char) {
        self.out.push(open);
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.out.push_str(", ");
            }
            self.value(item);
        }
        self.out.push(close);
    }

    /// A text block: its lines one level deeper than the entry, and the
    /// closing quotes with them (their indentation is what the parser strips).
    fn text_block(&mut self, text: &str) {
        self.out.push_str("\"\"\"\n");
        self.level += 1;
        let body = text.strip_suffix('\n').unwrap_or(text);
        if !text.is_empty() {
            for line in body.split('\n') {
                if !line.is_empty() {
                    self.indent();
                    self.out.push_str(line);
                }
                self.out.push('\n');
            }
        }
        self.indent();
        self.level -= 1;
        self.out.push_str("\"\"\"");
    }
}

/// Where an entry's body starts: comments before it belong above the entry.
fn body_start(e: &Entry) -> usize {
    match &e.body {
        Body::Value(v) => v.span.start,
        Body::Block(b) => b.span.start,
    }
}

/// Values that can sit in a one-line block or list.
fn is_simple(v: &Value) -> bool {
    match &v.kind {
        ValueKind::Text(_) | ValueKind::Map(_) => false,
        ValueKind::List(list) => !list.multiline && list.items.iter().all(is_simple),
        _ => true,
    }
}

/// A string literal in its one canonical spelling.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;
    use crate::syntax::parse;

    fn fmt(text: &str) -> String {
        let (file, diagnostics) = parse(FileId(0), text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        format(&file, text)
    }

    #[test]
    fn canonical_layout() {
        let text = "host   lb1{provider=colo\n\n\n   roles=[ balancer,x ]}\n";
        assert_eq!(
            fmt(text),
            "host lb1 {\n  provider = colo\n\n  roles = [balancer, x]\n}\n"
        );
    }

    #[test]
    fn one_line_blocks_stay_one_line() {
        let text = "host lb1  { provider = colo   address = \"1.2.3.4\" }\n";
        assert_eq!(
            fmt(text),
            "host lb1 { provider = colo  address = \"1.2.3.4\" }\n"
        );
    }

    #[test]
    fn comments_are_kept_in_place() {
        let text = "# head\n\nhost a { # after brace\n  # own line\n  x = 1 # trailing\n  # before close\n}\n# tail\n";
        assert_eq!(fmt(text), text);
    }

    #[test]
    fn comments_in_odd_places_are_moved_not_lost() {
        let text = "host a # between\n{\n  x = [ # in list\n    1, # one\n  ]\n}\n";
        let out = fmt(text);
        for c in ["# between", "# in list", "# one"] {
            assert!(out.contains(c), "{c} lost in:\n{out}");
        }
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn text_blocks_are_reindented() {
        let text =
            "a {\n  f {\n  content = \"\"\"\n        x\n          y\n        \"\"\"\n  }\n}\n";
        assert_eq!(
            fmt(text),
            "a {\n  f {\n    content = \"\"\"\n      x\n        y\n      \"\"\"\n  }\n}\n"
        );
    }

    #[test]
    fn long_lists_break() {
        let items: Vec<String> = (0..30).map(|n| format!("\"item{n}\"")).collect();
        let text = format!("x = [{}]\n", items.join(", "));
        let out = fmt(&text);
        assert!(out.starts_with("x = [\n  \"item0\",\n"), "{out}");
        assert_eq!(fmt(&out), out);
    }
}
