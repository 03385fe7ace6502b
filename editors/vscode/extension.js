// The gradcheck extension: .grad files get syntax highlighting (syntaxes/grad.tmLanguage.json) and
// the language server `gradcheck lsp` of the installed Python package (pip install 'gradcheck-cli[lsp]'),
// started over standard input and output.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("gradcheck").get("server.command", ["gradcheck", "lsp"]);
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("gradcheck", "gradcheck", { run: server, debug: server }, {
    documentSelector: [{ language: "grad" }],
  });
  client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `gradcheck: could not start '${[command, ...args].join(" ")}' (${err.message || err}). ` +
        "Install the server with pip install 'gradcheck-cli[lsp]', or set gradcheck.server.command.");
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
