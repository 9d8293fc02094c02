// Starts `sitec lsp` for .site files. The server does the work (diagnostics,
// hover, definitions, references, completion, formatting); this only tells
// VS Code how to run it. `sitec.path` names the binary (default: `sitec` on PATH).
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("sitec").get("path") || "sitec";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "sitec",
    "sitec",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "site" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
