//! The one diagnostic type of the whole compiler, and its two renderings.
//!
//! Every stage reports problems as `Diagnostic`s: a severity, a stable code
//! (explained in `lang/errors.md`), a message in plain words, labelled spans,
//! and a `help:` line when a fix is likely. Stages only build them; they are
//! rendered at the edge of the program, as rustc-style text (no colour unless
//! asked) or as JSON for editors and CI. Nothing here decides what is an error.

use crate::source::{SourceMap, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::term::{self, termcolor, Chars, Config};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A span with a short message; the primary label is where the problem is,
/// secondary labels show related places (the first declaration of a duplicate).
#[derive(Clone, Debug)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Where the problem is.
    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    /// A related place that explains the problem.
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Diagnostic {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The primary span, used to sort diagnostics in source order.
    pub fn primary_span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
            .map(|l| l.span)
    }

    fn to_codespan(&self) -> cs::Diagnostic<usize> {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let labels = self
            .labels
            .iter()
            .map(|l| {
                let style = if l.primary {
                    cs::LabelStyle::Primary
                } else {
                    cs::LabelStyle::Secondary
                };
                cs::Label::new(style, l.span.file.0, l.span.range())
                    .with_message(printable(&l.message))
            })
            .collect();
        let mut notes: Vec<String> = (self.help.iter())
            .map(|h| format!("help: {}", printable(h)))
            .collect();
        notes.extend(self.notes.iter().map(|n| format!("note: {}", printable(n))));
        cs::Diagnostic::new(severity)
            .with_code(self.code)
            .with_message(printable(&self.message))
            .with_labels(labels)
            .with_notes(notes)
    }
}

/// A message safe to print on a terminal: a message may quote what the
/// spec holds, and a control character there (an escape sequence) would
/// reach the terminal; each is shown as its `\u{..}` escape instead.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    (text.chars())
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Renders diagnostics as rustc-style text. `color` is for terminals only;
/// tests and snapshots always render without it.
pub fn render_human(sources: &SourceMap, diagnostics: &[Diagnostic], color: bool) -> String {
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    for diagnostic in diagnostics {
        // Rendering into memory can only fail on a span outside its file, which
        // would be a bug in a stage; fall back to the bare message then.
        if term::emit_to_write_style(
            &mut buffer,
            &config,
            sources.files(),
            &diagnostic.to_codespan(),
        )
        .is_err()
        {
            let line = format!(
                "{}[{}]: {}\n",
                severity_word(diagnostic.severity),
                diagnostic.code,
                diagnostic.message
            );
            let _ = std::io::Write::write_all(&mut buffer, line.as_bytes());
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'a str,
    message: &'a str,
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    labels: Vec<JsonLabel<'a>>,
    help: Option<&'a str>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    /// byte offsets into the file
    start: usize,
    end: usize,
    message: &'a str,
    primary: bool,
}

/// Renders diagnostics as one JSON array (documented in `lang/errors.md`).
pub fn render_json(sources: &SourceMap, diagnostics: &[Diagnostic]) -> String {
    let docs: Vec<JsonDiagnostic> = diagnostics
        .iter()
        .map(|d| {
            let labels: Vec<JsonLabel> = d
                .labels
                .iter()
                .map(|l| {
                    let start = sources.position(l.span.file, l.span.start);
                    let end = sources.position(l.span.file, l.span.end);
                    JsonLabel {
                        file: sources.name(l.span.file),
                        line: start.line,
                        column: start.column,
                        end_line: end.line,
                        end_column: end.column,
                        start: l.span.start,
                        end: l.span.end,
                        message: &l.message,
                        primary: l.primary,
                    }
                })
                .collect();
            let main = labels.iter().find(|l| l.primary).or(labels.first());
            JsonDiagnostic {
                severity: d.severity,
                code: d.code,
                message: &d.message,
                file: main.map(|l| l.file),
                line: main.map(|l| l.line),
                column: main.map(|l| l.column),
                help: d.help.as_deref(),
                notes: &d.notes,
                labels,
            }
        })
        .collect();
    serde_json::to_string_pretty(&docs).unwrap_or_else(|_| "[]".to_string())
}

/// Sorts diagnostics by file and position so output reads top to bottom.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| d.primary_span().map(|s| (s.file, s.start)));
}
