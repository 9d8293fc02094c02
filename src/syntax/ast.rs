//! The syntax tree of one `.site` file.
//!
//! The tree is generic, in the manner of HCL: a file is a list of `use`
//! imports and entries; an entry is a key, optional labels, and either
//! `= value` or a `{ block }` of further entries. What each keyword means
//! (`host`, `app`, ...) is decided later by `resolve`, against a schema; the
//! parser knows only the shapes. Every node carries its span. Spans are left
//! out of the serialized form, so two trees that mean the same thing
//! serialize the same (the formatter's tests rely on it).

use crate::source::{FileId, Span};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct SourceFile {
    #[serde(skip)]
    pub file: FileId,
    pub items: Vec<Item>,
    /// Every comment, in source order; the formatter puts them back.
    #[serde(skip)]
    pub comments: Vec<Comment>,
}

#[derive(Clone, Debug, Serialize)]
pub enum Item {
    Use(Use),
    Entry(Entry),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Use(u) => u.span,
            Item::Entry(e) => e.span,
        }
    }
}

/// `use std/platform` or `use ./roles.site`.
#[derive(Clone, Debug, Serialize)]
pub struct Use {
    pub path: String,
    #[serde(skip)]
    pub path_span: Span,
    #[serde(skip)]
    pub span: Span,
}

/// `key label... = value` or `key label... { entries }`.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub key: Name,
    pub labels: Vec<Name>,
    pub body: Body,
    #[serde(skip)]
    pub span: Span,
}

impl Entry {
    pub fn value(&self) -> Option<&Value> {
        match &self.body {
            Body::Value(v) => Some(v),
            Body::Block(_) => None,
        }
    }

    pub fn block(&self) -> Option<&Block> {
        match &self.body {
            Body::Block(b) => Some(b),
            Body::Value(_) => None,
        }
    }

    /// The span of the key and labels: where "this entry" is named.
    pub fn head_span(&self) -> Span {
        let last = self.labels.last().map_or(self.key.span, |l| l.span);
        self.key.span.to(last)
    }
}

#[derive(Clone, Debug, Serialize)]
pub enum Body {
    Value(Value),
    Block(Block),
}

/// An identifier or a quoted string used as a key or label.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub quoted: bool,
    #[serde(skip)]
    pub span: Span,
}

/// `{ entries }`, as a declaration's body or as a map value.
#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub entries: Vec<Entry>,
    /// The braces were on one line in the source; the formatter keeps short
    /// one-line blocks on one line.
    #[serde(skip)]
    pub one_line: bool,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Value {
    pub kind: ValueKind,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum ValueKind {
    /// `"..."`, escapes already decoded.
    Str(String),
    /// `"""` on its own line ... `"""`, indentation of the closing line removed.
    Text(String),
    Int(i64),
    Bool(bool),
    Duration(Quantity<DurationUnit>),
    Size(Quantity<SizeUnit>),
    List(List),
    Map(Block),
    /// A bare name: a host, a role, a database, an enum word like `postgres`.
    Ref(Name),
    /// `secret("blog.secret_key")`
    Call(Call),
    /// A value the parser already reported (an unknown unit, a number too
    /// large); later stages accept it silently rather than echo the error.
    Invalid,
}

impl ValueKind {
    /// What the value is, in the words an error message uses.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Text(_) => "a text block",
            ValueKind::Int(_) => "an integer",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Size(_) => "a size",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
            ValueKind::Ref(_) => "a name",
            ValueKind::Call(_) => "a function call",
            ValueKind::Invalid => "an invalid value",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct List {
    pub items: Vec<Value>,
    /// The list spanned several lines in the source; the formatter keeps it so.
    #[serde(skip)]
    pub multiline: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Call {
    pub name: Name,
    pub args: Vec<Value>,
}

/// A number with its unit as written (`90s`, `512MB`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Quantity<U> {
    pub amount: u64,
    pub unit: U,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum DurationUnit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl DurationUnit {
    pub const ALL: [(&'static str, DurationUnit, u64); 6] = [
        ("ms", DurationUnit::Milliseconds, 1),
        ("s", DurationUnit::Seconds, 1_000),
        ("m", DurationUnit::Minutes, 60_000),
        ("h", DurationUnit::Hours, 3_600_000),
        ("d", DurationUnit::Days, 86_400_000),
        ("w", DurationUnit::Weeks, 604_800_000),
    ];

    pub fn suffix(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, u, _)| *u == self)
            .map_or("s", |(s, _, _)| s)
    }

    pub fn millis(self) -> u64 {
        Self::ALL
            .iter()
            .find(|(_, u, _)| *u == self)
            .map_or(1, |(_, _, m)| *m)
    }
}

impl Quantity<DurationUnit> {
    /// The duration in milliseconds (saturating: the parser bounds amounts).
    pub fn millis(self) -> u64 {
        self.amount.saturating_mul(self.unit.millis())
    }
}

/// Sizes are binary, as in nginx and Postgres: 1KB = 1024 bytes.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum SizeUnit {
    Bytes,
    KB,
    MB,
    GB,
    TB,
    KiB,
    MiB,
    GiB,
    TiB,
}

impl SizeUnit {
    pub const ALL: [(&'static str, SizeUnit, u64); 9] = [
        ("B", SizeUnit::Bytes, 1),
        ("KB", SizeUnit::KB, 1 << 10),
        ("MB", SizeUnit::MB, 1 << 20),
        ("GB", SizeUnit::GB, 1 << 30),
        ("TB", SizeUnit::TB, 1 << 40),
        ("KiB", SizeUnit::KiB, 1 << 10),
        ("MiB", SizeUnit::MiB, 1 << 20),
        ("GiB", SizeUnit::GiB, 1 << 30),
        ("TiB", SizeUnit::TiB, 1 << 40),
    ];

    pub fn suffix(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, u, _)| *u == self)
            .map_or("B", |(s, _, _)| s)
    }

    pub fn bytes(self) -> u64 {
        Self::ALL
            .iter()
            .find(|(_, u, _)| *u == self)
            .map_or(1, |(_, _, b)| *b)
    }
}

impl Quantity<SizeUnit> {
    pub fn bytes(self) -> u64 {
        self.amount.saturating_mul(self.unit.bytes())
    }
}

/// `# ...` to the end of the line (the text excludes the newline).
#[derive(Clone, Debug)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}
