//! `sitec lsp` driven as an editor drives it: the binary over stdio, with
//! real LSP messages (Content-Length framing, JSON-RPC), on a spec in a
//! folder that uses a module of its own and the standard library.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long any answer may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start(cache: &Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sitec"))
            .arg("lsp")
            .env("XDG_CACHE_HOME", cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sitec lsp starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and waits for its response's result.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let response = self.wait_for(|m| m["id"] == json!(id) && m.get("method").is_none());
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// The next message `wanted` accepts (others are dropped).
    fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .expect("the server answered in time");
            if wanted(&message) {
                return message;
            }
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let message = self.wait_for(|m| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        });
        message["params"]["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            length = n.parse().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

const SPEC: &str = r#"use std/platform
use ./data.site

provider colo { user = "root" }
host web1 { provider = colo  address = "203.0.113.21"  roles = [runner, balancer] }
host db1 { provider = colo  address = "203.0.113.31"  roles = [postgres] }

app blog {
  source = "blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.example.com"]
  replicas = 1
  databases { default = main }
  settings { SECRET_KEY = secret("blog.secret_key") }
}
"#;

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The LSP position (line, UTF-16 character) of the `nth` `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (u64, u64) {
    let at = text.match_indices(needle).nth(nth).expect("needle").0;
    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    let line = text[..at].matches('\n').count();
    let character = text[line_start..at].encode_utf16().count();
    (line as u64, character as u64)
}

/// The position just after the first `needle`.
fn after(text: &str, needle: &str) -> (u64, u64) {
    let (line, character) = position(text, needle, 0);
    (line, character + needle.encode_utf16().count() as u64)
}

fn at(uri: &str, (line, character): (u64, u64)) -> Value {
    json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
}

fn range_of(text: &str, needle: &str, nth: usize) -> Value {
    let (line, start) = position(text, needle, nth);
    let end = start + needle.encode_utf16().count() as u64;
    json!({"start": {"line": line, "character": start}, "end": {"line": line, "character": end}})
}

/// The range of `len` characters `skip` characters into the first `needle`.
fn range_in(text: &str, needle: &str, skip: u64, len: u64) -> Value {
    let (line, start) = position(text, needle, 0);
    let start = start + skip;
    json!({"start": {"line": line, "character": start}, "end": {"line": line, "character": start + len}})
}

#[test]
fn an_editor_gets_diagnostics_hover_definitions_references_completion_and_formatting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().canonicalize().expect("canonical");
    let spec_path = folder.join("fleet.site");
    let data_path = folder.join("data.site");
    let data = "database main { engine = postgres  primary = db1 }\n";
    std::fs::write(&spec_path, SPEC).expect("spec");
    std::fs::write(&data_path, data).expect("data");
    std::fs::write(
        folder.join("fleet.secrets.toml"),
        "# secrets\n\"blog.secret_key\" = \"not-shown-anywhere\"\n",
    )
    .expect("secrets");
    let cache = folder.join("cache");
    let spec = uri(&spec_path);

    let mut client = Client::start(&cache);
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": uri(&folder), "capabilities": {}}),
    );
    let capabilities = &init["capabilities"];
    assert_eq!(capabilities["positionEncoding"], "utf-16");
    for provider in [
        "hoverProvider",
        "definitionProvider",
        "referencesProvider",
        "documentFormattingProvider",
    ] {
        assert_eq!(capabilities[provider], true, "{provider}");
    }
    client.notify("initialized", json!({}));

    // A mistake as the document is opened: the range is the value's.
    let wrong = SPEC.replace("replicas = 1", "replicas = 0");
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": spec, "languageId": "site", "version": 1, "text": wrong}}),
    );
    let diagnostics = client.diagnostics(&spec);
    let e115 = (diagnostics.iter())
        .find(|d| d["code"] == "E115")
        .unwrap_or_else(|| panic!("E115 in {diagnostics:#?}"));
    assert_eq!(e115["range"], range_in(&wrong, "replicas = 0", 11, 1));
    assert_eq!(e115["severity"], 1);
    assert_eq!(e115["source"], "sitec");
    let message = e115["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("outside 1 to 1000") && message.contains("help:"),
        "{message}"
    );

    // A brace lost while typing: reported where the block lacks it, with the
    // line that opens it as a related place; the fleet checks held back.
    let unclosed = SPEC.strip_suffix("}\n").unwrap_or(SPEC).to_string()
        + "\nsettings base { DEBUG = false }\n";
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": spec, "version": 2}, "contentChanges": [{"text": unclosed}]}),
    );
    let diagnostics = client.diagnostics(&spec);
    let e008 = (diagnostics.iter())
        .find(|d| d["code"] == "E008")
        .unwrap_or_else(|| panic!("E008 in {diagnostics:#?}\n{unclosed}"));
    let last_line = position(&unclosed, "settings {", 0).0;
    assert_eq!(e008["range"]["start"]["line"], last_line, "{e008:#}");
    let opens = &e008["relatedInformation"][0];
    assert_eq!(opens["location"]["uri"], spec);
    assert_eq!(
        opens["location"]["range"]["start"]["line"],
        position(&unclosed, "app blog", 0).0
    );
    assert!(
        (diagnostics.iter()).any(|d| d["severity"] == 3
            && d["message"]
                .as_str()
                .unwrap_or_default()
                .contains("fleet checks")),
        "{diagnostics:#?}"
    );

    // Fixed: no error left (the app's missing source folder is a warning).
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": spec, "version": 3}, "contentChanges": [{"text": SPEC}]}),
    );
    let diagnostics = client.diagnostics(&spec);
    assert!(
        diagnostics.iter().all(|d| d["severity"] != 1),
        "{diagnostics:#?}"
    );

    // Hover: a field's documentation from the schema, and its type.
    let hover = client.request(
        "textDocument/hover",
        at(&spec, position(SPEC, "replicas", 0)),
    );
    let text = hover["contents"]["value"].as_str().unwrap_or_default();
    let doc = (sitec::resolve::schema::APP.field("replicas"))
        .map(|f| f.doc)
        .unwrap_or_default();
    assert!(!doc.is_empty() && text.contains(doc), "{text}");
    assert!(text.contains("an integer from 1 to 1000"), "{text}");
    assert_eq!(hover["range"], range_of(SPEC, "replicas", 0));
    // ... and what a name refers to.
    let hover = client.request("textDocument/hover", at(&spec, position(SPEC, "colo", 1)));
    let text = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        text.contains("provider `colo`") && text.contains("provider colo { user"),
        "{text}"
    );

    // Definition across modules: the app's database, in data.site.
    let definition = client.request(
        "textDocument/definition",
        at(&spec, after(SPEC, "default = ")),
    );
    assert_eq!(definition["uri"], uri(&data_path));
    assert_eq!(definition["range"], range_of(data, "main", 0));

    // ... into the standard library: the role, in a read-only copy.
    let definition = client.request(
        "textDocument/definition",
        at(&spec, position(SPEC, "runner", 0)),
    );
    let target = definition["uri"].as_str().unwrap_or_default();
    let std_path = target.strip_prefix("file://").expect("a file");
    assert!(
        std_path.starts_with(cache.to_str().unwrap_or("?")),
        "{target}"
    );
    let std_text = std::fs::read_to_string(std_path).expect("the stdlib copy");
    assert_eq!(
        definition["range"],
        range_in(&std_text, "role runner {", 5, 6)
    );
    assert!(std::fs::metadata(std_path)
        .expect("meta")
        .permissions()
        .readonly());

    // ... from a `use` to the module.
    let definition = client.request(
        "textDocument/definition",
        at(&spec, position(SPEC, "./data.site", 0)),
    );
    assert_eq!(definition["uri"], uri(&data_path));

    // ... and a secret to its line in the secrets file.
    let definition = client.request(
        "textDocument/definition",
        at(&spec, position(SPEC, "secret(", 0)),
    );
    assert_eq!(definition["uri"], uri(&folder.join("fleet.secrets.toml")));
    assert_eq!(
        definition["range"]["start"],
        json!({"line": 1, "character": 0})
    );
    let hover = client.request(
        "textDocument/hover",
        at(&spec, position(SPEC, "secret(", 0)),
    );
    assert!(!hover.to_string().contains("not-shown-anywhere"), "{hover}");

    // References of a host, from its declaration: the other module's too.
    let references = client.request(
        "textDocument/references",
        json!({
            "textDocument": {"uri": spec},
            "position": {"line": position(SPEC, "db1", 0).0, "character": position(SPEC, "db1", 0).1},
            "context": {"includeDeclaration": true}
        }),
    );
    let places: Vec<(String, Value)> = (references.as_array().cloned().unwrap_or_default())
        .iter()
        .map(|l| {
            (
                l["uri"].as_str().unwrap_or_default().to_string(),
                l["range"].clone(),
            )
        })
        .collect();
    assert_eq!(
        places,
        vec![
            (spec.clone(), range_of(SPEC, "db1", 0)),
            (uri(&data_path), range_of(data, "db1", 0)),
        ]
    );

    // Completion: the names a field takes, a block's fields, a field's words.
    let typing = SPEC.replace(
        "  replicas = 1\n",
        "  replicas = 1\n  runners = []\n  rep\n",
    ) + "settings host ";
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": spec, "version": 4}, "contentChanges": [{"text": typing}]}),
    );
    let _ = client.diagnostics(&spec);
    let (line, character) = position(&typing, "runners = [", 0);
    let names = client.request("textDocument/completion", at(&spec, (line, character + 11)));
    let labels = |items: &Value| -> Vec<String> {
        (items.as_array().cloned().unwrap_or_default())
            .iter()
            .filter_map(|i| i["label"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(labels(&names), vec!["web1", "db1"]);
    let (line, character) = position(&typing, "  rep\n", 0);
    let fields =
        labels(&client.request("textDocument/completion", at(&spec, (line, character + 5))));
    for field in ["replicas", "runners", "databases", "worker"] {
        assert!(fields.contains(&field.to_string()), "{fields:?}");
    }
    let (line, character) = after(&typing, "settings host ");
    let hosts = client.request("textDocument/completion", at(&spec, (line, character)));
    assert_eq!(labels(&hosts), vec!["web1", "db1"]);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": spec, "version": 5}, "contentChanges": [{"text": SPEC}]}),
    );
    let _ = client.diagnostics(&spec);

    // Formatting: `sitec fmt`'s layout, as one edit.
    let messy = SPEC.replace("  replicas = 1\n", "      replicas    =   1\n");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": spec, "version": 6}, "contentChanges": [{"text": messy}]}),
    );
    let _ = client.diagnostics(&spec);
    let edits = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": spec}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(edits[0]["newText"], SPEC);
    assert_eq!(
        edits[0]["range"]["start"],
        json!({"line": 0, "character": 0})
    );

    // Closing clears the document's diagnostics; shutdown and exit end it.
    client.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": spec}}),
    );
    assert!(client.diagnostics(&spec).is_empty());
    assert_eq!(client.request("shutdown", json!(null)), json!(null));
    client.notify("exit", json!(null));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = client.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "sitec lsp did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// A template of the spec's own (`file { template = "./motd.hbs" }`) is
/// read from disk with the spec, so the server has the client watch
/// `**/*.hbs` and checks the open spec again when one changes (an editor
/// saving it, `git checkout`), or when a client that syncs the template
/// says it saved it; the template itself is never checked as a spec.
#[test]
fn a_changed_template_of_the_specs_own_checks_the_spec_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().canonicalize().expect("canonical");
    let spec_path = folder.join("fleet.site");
    let template_path = folder.join("motd.hbs");
    let spec_text = "use std/platform\n\
                     provider colo { user = \"root\" }\n\
                     host web1 { provider = colo  address = \"203.0.113.10\"  roles = [motd] }\n\
                     role motd {\n  file \"/etc/motd\" { template = \"./motd.hbs\" }\n}\n";
    std::fs::write(&spec_path, spec_text).expect("spec");
    std::fs::write(&template_path, "This is {{host.name}}.\n").expect("template");
    let (spec, template) = (uri(&spec_path), uri(&template_path));

    let mut client = Client::start(&folder.join("cache"));
    client.request(
        "initialize",
        json!({"processId": null, "rootUri": uri(&folder), "capabilities": {
            "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": true}}
        }}),
    );
    client.notify("initialized", json!({}));
    let register = client.wait_for(|m| m["method"] == "client/registerCapability");
    let registration = &register["params"]["registrations"][0];
    assert_eq!(registration["method"], "workspace/didChangeWatchedFiles");
    assert_eq!(
        registration["registerOptions"]["watchers"],
        json!([{"globPattern": "**/*.hbs"}])
    );
    client.send(&json!({"jsonrpc": "2.0", "id": register["id"], "result": null}));

    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": spec, "languageId": "site", "version": 1, "text": spec_text}}),
    );
    assert_eq!(client.diagnostics(&spec), Vec::<Value>::new());

    // Only the template changes, on disk: the spec is checked again.
    std::fs::write(&template_path, "This is {{host.nmae}}.\n").expect("template");
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": template, "type": 2}]}),
    );
    let diagnostics = client.diagnostics(&spec);
    let codes: Vec<&Value> = diagnostics.iter().map(|d| &d["code"]).collect();
    assert_eq!(codes, [&json!("E228")], "{diagnostics:#?}");
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`host.nmae`")),
        "{diagnostics:#?}"
    );

    // A client that syncs the template too: opening it publishes nothing
    // for it (it is no spec), saving it checks the spec again.
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": template, "languageId": "handlebars", "version": 1,
                                "text": "This is {{host.nmae}}.\n"}}),
    );
    std::fs::write(&template_path, "This is {{host.name}}.\n").expect("template");
    client.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": template}}),
    );
    let published = client.wait_for(|m| m["method"] == "textDocument/publishDiagnostics");
    assert_eq!(published["params"]["uri"], json!(spec), "{published}");
    assert_eq!(published["params"]["diagnostics"], json!([]));

    assert_eq!(client.request("shutdown", json!(null)), json!(null));
    client.notify("exit", json!(null));
}
