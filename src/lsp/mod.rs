//! `sitec lsp`: the language server, over standard input and output.
//!
//! Each open `.site` document is checked as `sitec check` checks the saved
//! file (`compile::check_buffer`: its `use`s and apps' files looked up beside
//! it), on open and on every change, and the diagnostics are published with
//! their exact ranges, codes and help. Hover shows the schema's documentation
//! of a keyword or field, and what a name refers to; go to definition and
//! find references follow hosts, roles, databases, apps, providers and
//! backups across every `use`d module (the standard library's modules are
//! written read-only to the user's cache folder so an editor can open them),
//! a `secret("name")` to its line in the secrets file and a `use` to its
//! module; completion offers a block's field names, declared names where a
//! field or a settings target takes one, a field's words, `each`'s scopes
//! and units; formatting is `sitec fmt`'s. A spec's templates of its own
//! (`file { template = "./x.hbs" }`) are read from disk with it, so the
//! server asks the client to watch `**/*.hbs` and checks every open
//! document again when one changes, or is saved where the client sends
//! that (a `.hbs` is never checked as a spec). The server never writes a
//! spec or reads a secret's value; rust-analyzer's `lsp-server` does the
//! JSON-RPC framing.

mod index;
mod position;

use crate::compile;
use crate::diagnostic::{Diagnostic, Severity};
use crate::resolve::schema::{self, Kind, Ty};
use crate::source::{FileId, SourceMap, Span};
use index::{Index, What};
use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use position::{path_of, uri_of, Encoding, Lines};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs the server until the client says `exit`.
pub fn run() -> ExitCode {
    let (connection, threads) = Connection::stdio();
    let outcome = serve(&connection);
    drop(connection);
    let joined = threads.join();
    match outcome.and(joined.map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sitec lsp: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(connection: &Connection) -> Result<(), String> {
    let (id, params) = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let encoding = negotiate(&params);
    let result = serde_json::json!({
        "capabilities": capabilities(encoding),
        "serverInfo": {"name": "sitec", "version": env!("CARGO_PKG_VERSION")},
    });
    connection
        .initialize_finish(id, result)
        .map_err(|e| e.to_string())?;
    if watches_files(&params) {
        let _ = connection.sender.send(watch_templates().into());
    }
    let mut server = Server {
        connection,
        encoding,
        documents: HashMap::new(),
    };
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection
                    .handle_shutdown(&request)
                    .map_err(|e| e.to_string())?
                {
                    return Ok(());
                }
                server.request(request);
            }
            Message::Notification(notification) => server.notification(notification),
            Message::Response(_) => {}
        }
    }
    Ok(())
}

/// UTF-8 positions when the client offers them (fewer conversions), else
/// the protocol's default, UTF-16.
fn negotiate(params: &lsp::InitializeParams) -> Encoding {
    let offered = (params.capabilities.general.as_ref())
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|encodings| encodings.contains(&lsp::PositionEncodingKind::UTF8));
    if offered {
        Encoding::Utf8
    } else {
        Encoding::Utf16
    }
}

/// Whether the client watches files for a server that registers the
/// patterns (`workspace/didChangeWatchedFiles` by dynamic registration,
/// as VS Code's client does).
fn watches_files(params: &lsp::InitializeParams) -> bool {
    (params.capabilities.workspace.as_ref())
        .and_then(|w| w.did_change_watched_files.as_ref())
        .and_then(|w| w.dynamic_registration)
        .unwrap_or(false)
}

/// The request that has the client tell the server when a template of
/// one's own changes on disk (the spec's check reads them from there).
fn watch_templates() -> Request {
    use lsp::notification::{DidChangeWatchedFiles, Notification as _};
    use lsp::request::{RegisterCapability, Request as _};
    let options = lsp::DidChangeWatchedFilesRegistrationOptions {
        watchers: vec![lsp::FileSystemWatcher {
            glob_pattern: lsp::GlobPattern::String("**/*.hbs".into()),
            kind: None,
        }],
    };
    let params = lsp::RegistrationParams {
        registrations: vec![lsp::Registration {
            id: "sitec-templates".into(),
            method: DidChangeWatchedFiles::METHOD.into(),
            register_options: serde_json::to_value(options).ok(),
        }],
    };
    Request::new(
        RequestId::from("sitec-watch-templates".to_string()),
        RegisterCapability::METHOD.into(),
        params,
    )
}

/// Whether a document is a spec the server checks: a `.site` file, or an
/// editor's buffer not yet saved anywhere. A template a client opens
/// (`.hbs`) is no spec; its saving still has the specs checked again.
fn is_spec(uri: &lsp::Uri) -> bool {
    path_of(uri).is_none_or(|path| path.extension().is_none_or(|e| e == "site"))
}

fn capabilities(encoding: Encoding) -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf8 => lsp::PositionEncodingKind::UTF8,
            Encoding::Utf16 => lsp::PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Kind(
            lsp::TextDocumentSyncKind::FULL,
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec!["=".into(), "[".into(), " ".into()]),
            ..lsp::CompletionOptions::default()
        }),
        ..lsp::ServerCapabilities::default()
    }
}

struct Server<'c> {
    connection: &'c Connection,
    encoding: Encoding,
    /// The text of every open document.
    documents: HashMap<lsp::Uri, String>,
}

/// One document checked: the spec's files, diagnostics and names.
struct Analysis {
    sources: SourceMap,
    root: FileId,
    /// The editor's text began with a byte-order mark.
    bom: bool,
    /// Where each module's file is on disk (the standard library's in the cache).
    paths: HashMap<FileId, PathBuf>,
    diagnostics: Vec<Diagnostic>,
    held_back: bool,
    index: Index,
    spec: PathBuf,
}

impl Analysis {
    fn new(path: &Path, text: &str) -> Analysis {
        let mut sources = SourceMap::new();
        let report = compile::check_buffer(&mut sources, path, text);
        let program = report.program();
        let root = program.root().unwrap_or_default();
        let mut paths = HashMap::new();
        for module in &program.modules {
            let on_disk = match module.name.strip_prefix("std/") {
                Some(name) => stdlib_copy(name.trim_end_matches(".site")),
                None if module.file == root => Some(path.to_path_buf()),
                None => Some(PathBuf::from(&module.name)),
            };
            if let Some(on_disk) = on_disk {
                paths.insert(module.file, on_disk);
            }
        }
        let index = Index::build(program);
        let held_back = report.held_back;
        Analysis {
            root,
            bom: text.starts_with(crate::syntax::BOM),
            paths,
            diagnostics: report.leak(),
            held_back,
            index,
            sources,
            spec: path.to_path_buf(),
        }
    }

    fn lines(&self, file: FileId, encoding: Encoding) -> Lines<'_> {
        Lines::new(
            self.sources.text(file),
            encoding,
            self.bom && file == self.root,
        )
    }

    fn location(&self, span: Span, encoding: Encoding) -> Option<lsp::Location> {
        let uri = uri_of(self.paths.get(&span.file)?)?;
        let range = self.lines(span.file, encoding).range(span.start, span.end);
        Some(lsp::Location::new(uri, range))
    }
}

/// The standard module `name`, written read-only under the user's cache
/// folder (`$XDG_CACHE_HOME/sitec/stdlib/VERSION-HASH/NAME.site`) so an
/// editor can open what go to definition points at; `None` when there is
/// no cache folder or it can't be written.
fn stdlib_copy(name: &str) -> Option<PathBuf> {
    use sha2::Digest;
    let text = crate::stdlib::module(name)?;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    let hash = sha2::Sha256::digest(text.as_bytes());
    let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let folder =
        (cache.join("sitec/stdlib")).join(format!("{}-{short}", env!("CARGO_PKG_VERSION")));
    let path = folder.join(format!("{name}.site"));
    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
        std::fs::create_dir_all(&folder).ok()?;
        let temp = folder.join(format!(".{name}.site.{}", std::process::id()));
        std::fs::write(&temp, text).ok()?;
        let mut permissions = std::fs::metadata(&temp).ok()?.permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&temp, permissions).ok()?;
        std::fs::rename(&temp, &path).ok()?;
    }
    Some(path)
}

impl Server<'_> {
    fn send(&self, message: impl Into<Message>) {
        // The client has gone when this fails; the loop ends on its own.
        let _ = self.connection.sender.send(message.into());
    }

    fn notification(&mut self, notification: Notification) {
        use lsp::notification::{
            DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument,
            DidOpenTextDocument, DidSaveTextDocument, Notification as _,
        };
        match notification.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(params) = notification
                    .extract::<lsp::DidOpenTextDocumentParams>(DidOpenTextDocument::METHOD)
                else {
                    return;
                };
                let uri = params.text_document.uri;
                if !is_spec(&uri) {
                    return;
                }
                self.documents
                    .insert(uri.clone(), params.text_document.text);
                self.publish(&uri);
            }
            DidChangeTextDocument::METHOD => {
                let Ok(params) = notification
                    .extract::<lsp::DidChangeTextDocumentParams>(DidChangeTextDocument::METHOD)
                else {
                    return;
                };
                let uri = params.text_document.uri;
                if !is_spec(&uri) {
                    return;
                }
                // Full sync: the last change holds the whole text.
                if let Some(change) = params.content_changes.into_iter().last() {
                    self.documents.insert(uri.clone(), change.text);
                }
                self.publish(&uri);
            }
            // Another open document may use the file saved or changed on
            // disk (a module, a template of its own): check them all.
            DidSaveTextDocument::METHOD | DidChangeWatchedFiles::METHOD => {
                let open: Vec<lsp::Uri> = self.documents.keys().cloned().collect();
                for uri in open {
                    self.publish(&uri);
                }
            }
            DidCloseTextDocument::METHOD => {
                let Ok(params) = notification
                    .extract::<lsp::DidCloseTextDocumentParams>(DidCloseTextDocument::METHOD)
                else {
                    return;
                };
                let uri = params.text_document.uri;
                self.documents.remove(&uri);
                self.send_diagnostics(uri, Vec::new());
            }
            _ => {}
        }
    }

    fn analyse(&self, uri: &lsp::Uri) -> Option<Analysis> {
        let text = self.documents.get(uri)?;
        // An unsaved buffer has no folder: it is checked from the current one.
        let path = path_of(uri).unwrap_or_else(|| PathBuf::from("untitled.site"));
        Some(Analysis::new(&path, text))
    }

    /// Checks one document and publishes its diagnostics: those in its own
    /// file at their place, those in a file it uses at its first line,
    /// naming where they are (each file is checked as the root of its own
    /// document, so the two never disagree about whose diagnostic it is).
    fn publish(&self, uri: &lsp::Uri) {
        let Some(analysis) = self.analyse(uri) else {
            return;
        };
        let mut own = Vec::new();
        for diagnostic in &analysis.diagnostics {
            own.push(self.to_lsp(&analysis, diagnostic));
        }
        if analysis.held_back {
            own.push(lsp::Diagnostic {
                range: lsp::Range::default(),
                severity: Some(lsp::DiagnosticSeverity::INFORMATION),
                source: Some("sitec".into()),
                message: "the fleet checks (redundancy, conflicts, ports, roles) run once the errors are fixed".into(),
                ..lsp::Diagnostic::default()
            });
        }
        self.send_diagnostics(uri.clone(), own);
    }

    fn send_diagnostics(&self, uri: lsp::Uri, diagnostics: Vec<lsp::Diagnostic>) {
        use lsp::notification::{Notification as _, PublishDiagnostics};
        let params = lsp::PublishDiagnosticsParams::new(uri, diagnostics, None);
        self.send(Notification::new(
            PublishDiagnostics::METHOD.to_string(),
            params,
        ));
    }

    /// One diagnostic as the editor shows it: the message with its help
    /// and notes, the primary label's range, the others as related places.
    fn to_lsp(&self, analysis: &Analysis, diagnostic: &Diagnostic) -> lsp::Diagnostic {
        let mut message = diagnostic.message.clone();
        let primary = diagnostic.labels.iter().find(|l| l.primary);
        if let Some(label) = primary.filter(|l| !l.message.is_empty()) {
            message.push_str(&format!(": {}", label.message));
        }
        let primary_span = diagnostic.primary_span();
        let elsewhere = primary_span.filter(|span| span.file != analysis.root);
        if let Some(span) = elsewhere {
            message = format!("{}: {message}", analysis.sources.describe(span));
        }
        if let Some(help) = &diagnostic.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        for note in &diagnostic.notes {
            message.push_str(&format!("\nnote: {note}"));
        }
        let range = match primary_span {
            Some(span) if span.file == analysis.root => {
                (analysis.lines(span.file, self.encoding)).range(span.start, span.end)
            }
            _ => lsp::Range::default(),
        };
        let related: Vec<lsp::DiagnosticRelatedInformation> = (diagnostic.labels.iter())
            .filter(|l| !l.primary || l.span.file != analysis.root)
            .filter_map(|l| {
                Some(lsp::DiagnosticRelatedInformation {
                    location: analysis.location(l.span, self.encoding)?,
                    message: l.message.clone(),
                })
            })
            .collect();
        lsp::Diagnostic {
            range,
            severity: Some(match diagnostic.severity {
                Severity::Error => lsp::DiagnosticSeverity::ERROR,
                Severity::Warning => lsp::DiagnosticSeverity::WARNING,
            }),
            code: Some(lsp::NumberOrString::String(diagnostic.code.to_string())),
            source: Some("sitec".into()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            ..lsp::Diagnostic::default()
        }
    }

    fn request(&mut self, request: Request) {
        use lsp::request::{
            Completion, Formatting, GotoDefinition, HoverRequest, References, Request as _,
        };
        let id = request.id.clone();
        let result = match request.method.as_str() {
            HoverRequest::METHOD => self.reply(request, Self::hover),
            GotoDefinition::METHOD => self.reply(request, Self::definition),
            References::METHOD => self.reply(request, Self::references),
            Completion::METHOD => self.reply(request, Self::completion),
            Formatting::METHOD => self.reply(request, Self::formatting),
            _ => Err(Response::new_err(
                id,
                lsp_server::ErrorCode::MethodNotFound as i32,
                format!("sitec lsp does not answer `{}`", request.method),
            )),
        };
        self.send(result.unwrap_or_else(|error| error));
    }

    /// Decodes a request's parameters, answers with `answer`'s result.
    fn reply<P: serde::de::DeserializeOwned, R: serde::Serialize>(
        &self,
        request: Request,
        answer: fn(&Self, P) -> Option<R>,
    ) -> Result<Response, Response> {
        let id: RequestId = request.id.clone();
        let params: P = serde_json::from_value(request.params).map_err(|e| {
            Response::new_err(
                id.clone(),
                lsp_server::ErrorCode::InvalidParams as i32,
                e.to_string(),
            )
        })?;
        Ok(Response::new_ok(id, answer(self, params)))
    }

    /// The document's analysis and the byte offset of `position` in it.
    fn at(&self, place: &lsp::TextDocumentPositionParams) -> Option<(Analysis, usize)> {
        let analysis = self.analyse(&place.text_document.uri)?;
        let offset = (analysis.lines(analysis.root, self.encoding)).offset(place.position);
        Some((analysis, offset))
    }

    fn hover(&self, params: lsp::HoverParams) -> Option<lsp::Hover> {
        let (analysis, offset) = self.at(&params.text_document_position_params)?;
        let occurrence = analysis.index.at(analysis.root, offset)?;
        let text = match &occurrence.what {
            What::Key { doc } => doc.clone(),
            What::Declaration { kind, name } => {
                let uses = analysis.index.references(*kind, name).count();
                let doc = schema::top_level(kind.word()).map_or("", |s| s.doc);
                format!(
                    "{} `{name}`: {doc}\n\nReferenced {uses} time{}.",
                    kind.word(),
                    if uses == 1 { "" } else { "s" }
                )
            }
            What::Reference { kind, name } => match analysis.index.declaration(*kind, name) {
                Some(span) => format!(
                    "{} `{name}`, declared at {}:\n\n```site\n{}\n```",
                    kind.word(),
                    analysis.sources.describe(span),
                    first_line(&analysis.sources, span)
                ),
                None => format!("no {} `{name}` is declared", kind.word()),
            },
            What::Secret { name } => format!(
                "secret `{name}`: its value is kept in `{}` beside the spec (generated when missing), never in the spec",
                crate::secrets::Secrets::path_for(&analysis.spec).display()
            ),
            What::Use { target } => format!("the module `{target}`"),
        };
        let range = (analysis.lines(analysis.root, self.encoding))
            .range(occurrence.span.start, occurrence.span.end);
        Some(lsp::Hover {
            contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                kind: lsp::MarkupKind::Markdown,
                value: text,
            }),
            range: Some(range),
        })
    }

    fn definition(&self, params: lsp::GotoDefinitionParams) -> Option<lsp::GotoDefinitionResponse> {
        let (analysis, offset) = self.at(&params.text_document_position_params)?;
        let occurrence = analysis.index.at(analysis.root, offset)?;
        let location = match &occurrence.what {
            What::Reference { kind, name } | What::Declaration { kind, name } => {
                let span = analysis.index.declaration(*kind, name)?;
                analysis.location(span, self.encoding)?
            }
            What::Secret { name } => secret_location(&analysis.spec, name, self.encoding)?,
            What::Use { target } => {
                let path = match target.strip_prefix("std/") {
                    Some(name) => stdlib_copy(name)?,
                    None => PathBuf::from(target),
                };
                lsp::Location::new(uri_of(&path)?, lsp::Range::default())
            }
            What::Key { .. } => return None,
        };
        Some(lsp::GotoDefinitionResponse::Scalar(location))
    }

    fn references(&self, params: lsp::ReferenceParams) -> Option<Vec<lsp::Location>> {
        let (analysis, offset) = self.at(&params.text_document_position)?;
        let occurrence = analysis.index.at(analysis.root, offset)?;
        let (What::Reference { kind, name } | What::Declaration { kind, name }) = &occurrence.what
        else {
            return None;
        };
        let declaration = (params.context.include_declaration)
            .then(|| analysis.index.declaration(*kind, name))
            .flatten();
        let spans = declaration
            .into_iter()
            .chain(analysis.index.references(*kind, name));
        Some(
            spans
                .filter_map(|span| analysis.location(span, self.encoding))
                .collect(),
        )
    }

    fn formatting(&self, params: lsp::DocumentFormattingParams) -> Option<Vec<lsp::TextEdit>> {
        let uri = &params.text_document.uri;
        let text = self.documents.get(uri)?;
        let mut sources = SourceMap::new();
        let (file, tree, diagnostics) =
            crate::syntax::read(&mut sources, "buffer.site", text.as_bytes().to_vec());
        if diagnostics.iter().any(Diagnostic::is_error) {
            // As `sitec fmt`: a file with syntax errors is left alone.
            return None;
        }
        let formatted = crate::format::as_saved(
            crate::format::format(&tree, sources.text(file)),
            text.as_bytes(),
        );
        if formatted == *text {
            return Some(Vec::new());
        }
        let whole = Lines::new(text, self.encoding, false).range(0, text.len());
        Some(vec![lsp::TextEdit::new(whole, formatted)])
    }

    fn completion(&self, params: lsp::CompletionParams) -> Option<lsp::CompletionResponse> {
        let (analysis, offset) = self.at(&params.text_document_position)?;
        let text = analysis.sources.text(analysis.root);
        let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
        let before = &text[line_start..offset];
        let schema = analysis.index.block_at(analysis.root, offset);
        if let Some(items) = labels(&analysis.index, before) {
            return Some(lsp::CompletionResponse::Array(items));
        }
        let items = match before.rsplit_once('=') {
            None if before.trim_start().chars().all(is_word) => keys(schema),
            None => return None,
            Some((key, value)) => {
                // The last word before the `=`: blocks on one line hold several.
                let key = key.trim_end();
                let key = &key[key.trim_end_matches(is_word).len()..];
                let ty = schema.and_then(|s| (s.field(key).map(|f| f.ty)).or(s.open))?;
                values(&analysis.index, ty, value)
            }
        };
        Some(lsp::CompletionResponse::Array(items))
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first line of what `span` starts, as written.
fn first_line(sources: &SourceMap, span: Span) -> String {
    let text = sources.text(span.file);
    let start = text[..span.start].rfind('\n').map_or(0, |at| at + 1);
    let end = text[start..].find('\n').map_or(text.len(), |at| start + at);
    text[start..end].trim_end().to_string()
}

/// Where the secrets file beside `spec` sets `name`: the key's line (the
/// value is not read, let alone shown).
fn secret_location(spec: &Path, name: &str, encoding: Encoding) -> Option<lsp::Location> {
    let path = crate::secrets::Secrets::path_for(spec);
    let text = std::fs::read_to_string(&path).ok()?;
    let forms = [format!("\"{name}\""), format!("'{name}'"), name.to_string()];
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let key = line.trim_start();
        let indent = line.len() - key.len();
        for form in &forms {
            let rest = key.strip_prefix(form.as_str());
            if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
                let start = at + indent;
                let range = Lines::new(&text, encoding, false).range(start, start + form.len());
                return Some(lsp::Location::new(uri_of(&path)?, range));
            }
        }
        at += line.len();
    }
    None
}

/// What may follow a keyword that takes labels: `settings app `,
/// `settings app A host `, `settings host ` (declared names), `each ` (the
/// scopes). `before` is the line up to the cursor.
fn labels(index: &Index, before: &str) -> Option<Vec<lsp::CompletionItem>> {
    let words: Vec<&str> = before.split_whitespace().collect();
    // The word being typed, if any, is not yet a label.
    let done = if before.ends_with(char::is_whitespace) {
        &words[..]
    } else {
        &words[..words.len().saturating_sub(1)]
    };
    match done {
        ["settings", "app"] | ["settings", "app", _, "host"] | ["settings", "host"] => {
            let kind = if done.last() == Some(&"app") {
                Kind::App
            } else {
                Kind::Host
            };
            Some(names(index, kind))
        }
        [.., "each"] => Some(
            (schema::SCOPES.iter())
                .map(|(word, _, doc)| item(word, lsp::CompletionItemKind::KEYWORD, doc))
                .collect(),
        ),
        _ => None,
    }
}

/// The words that may start an entry here: a block's fields and blocks,
/// or the top-level declarations.
fn keys(schema: Option<&'static schema::Schema>) -> Vec<lsp::CompletionItem> {
    let Some(schema) = schema else {
        return (schema::TOP_LEVEL.iter())
            .map(|s| item(s.keyword, lsp::CompletionItemKind::KEYWORD, s.doc))
            .collect();
    };
    let fields =
        (schema.fields.iter()).map(|f| item(f.name, lsp::CompletionItemKind::FIELD, f.doc));
    let blocks =
        (schema.blocks.iter()).map(|b| item(b.keyword, lsp::CompletionItemKind::MODULE, b.doc));
    fields.chain(blocks).collect()
}

/// What may follow `key =` for a field of type `ty`; `typed` is what the
/// line holds after the `=` so far.
fn values(index: &Index, ty: Ty, typed: &str) -> Vec<lsp::CompletionItem> {
    let typed = typed.trim();
    match ty {
        Ty::Ref(kind) | Ty::List(&Ty::Ref(kind)) => names(index, kind),
        Ty::OneOf(words) => (words.iter())
            .map(|w| item(w, lsp::CompletionItemKind::ENUM_MEMBER, ""))
            .collect(),
        Ty::Bool => ["true", "false"]
            .iter()
            .map(|w| item(w, lsp::CompletionItemKind::KEYWORD, ""))
            .collect(),
        Ty::Duration(_) | Ty::Size(_) => {
            let digits = typed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Vec::new();
            }
            let units: Vec<&str> = match ty {
                Ty::Duration(_) => (crate::syntax::ast::DurationUnit::ALL.iter())
                    .map(|(suffix, _, _)| *suffix)
                    .collect(),
                _ => (crate::syntax::ast::SizeUnit::ALL.iter())
                    .map(|(suffix, _, _)| *suffix)
                    .collect(),
            };
            (units.iter())
                .map(|unit| {
                    let mut unit_item = item(
                        &format!("{digits}{unit}"),
                        lsp::CompletionItemKind::UNIT,
                        &ty.describe(),
                    );
                    unit_item.filter_text = Some(format!("{digits}{unit}"));
                    unit_item
                })
                .collect()
        }
        Ty::Secret | Ty::Setting => {
            let mut secret = item(
                "secret(\"\")",
                lsp::CompletionItemKind::FUNCTION,
                "a value from the secrets file beside the spec",
            );
            secret.insert_text = Some("secret(\"$1\")".into());
            secret.insert_text_format = Some(lsp::InsertTextFormat::SNIPPET);
            vec![secret]
        }
        _ => Vec::new(),
    }
}

fn names(index: &Index, kind: Kind) -> Vec<lsp::CompletionItem> {
    let mut seen = BTreeSet::new();
    (index.declared(kind))
        .filter(|name| seen.insert(*name))
        .map(|name| item(name, lsp::CompletionItemKind::REFERENCE, kind.word()))
        .collect()
}

fn item(label: &str, kind: lsp::CompletionItemKind, doc: &str) -> lsp::CompletionItem {
    lsp::CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!doc.is_empty()).then(|| doc.to_string()),
        ..lsp::CompletionItem::default()
    }
}
