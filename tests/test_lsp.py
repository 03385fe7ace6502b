"""`gradcheck lsp` driven by a real client: a small JSON-RPC client in this file speaks the Language
Server Protocol to the server's process over its standard input and output (Content-Length framing).

The expected lines and numbers come from the files written here: d(t²)/dt = 2t, so `dt = dout * t`
is the wrong line; f = eˣ·y + x² has ∂f/∂x = eˣ·y + 2x, computed below with `math`."""

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, gradcheck_in_process

pytest.importorskip("pygls", reason="the language server needs the lsp extra (pip install 'gradcheck-cli[lsp]')")

WRONG = """gate sq(t) = t^2
  dt = dout * t

x = 1.5
y = -0.5
f = exp(x) * y + sq(x)
"""
RIGHT = WRONG.replace("dt = dout * t", "dt = 2 * dout * t")
URI = "file:///tmp/gradcheck-lsp-test/neuron.grad"
TIMEOUT = 60


class Client:
    """The client side of the protocol: requests wait for their response, notifications are queued."""

    def __init__(self, env: dict | None = None, args: tuple = ()):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gradcheck_cli", "lsp", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        self.inbox: queue.Queue = queue.Queue()
        self.notes: list = []
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        stream = self.process.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    self.inbox.put(None)
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
            self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, message: dict):
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _next(self, deadline: float):
        try:
            message = self.inbox.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError("the server did not answer in time") from None
        assert message is not None, "the server closed its output: " + self.process.stderr.read().decode()[-2000:]
        return message

    def request(self, method: str, params, timeout: float = TIMEOUT):
        self.ids += 1
        self.send({"id": self.ids, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == self.ids and "method" not in message:
                assert "error" not in message, message["error"]
                return message.get("result")
            if "id" in message and "method" in message:  # a request from the server: answer it
                self.send({"id": message["id"], "result": None})
            self.notes.append(message)

    def notify(self, method: str, params):
        self.send({"method": method, "params": params})

    def notification(self, method: str, test=lambda params: True, timeout: float = TIMEOUT):
        """The first notification of `method` whose params pass `test` (earlier ones kept, checked first)."""
        for i, note in enumerate(self.notes):
            if note.get("method") == method and test(note["params"]):
                return self.notes.pop(i)["params"]
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("method") == method and test(message["params"]):
                return message["params"]
            self.notes.append(message)

    def diagnostics(self, uri: str, version: int) -> list:
        return self.notification("textDocument/publishDiagnostics",
                                 lambda p: p["uri"] == uri and p.get("version") == version)["diagnostics"]

    def open(self, uri: str, text: str, version: int = 1):
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "grad", "version": version,
                                                              "text": text}})

    def change(self, uri: str, text: str, version: int):
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})

    def at(self, method: str, uri: str, line: int, character: int):
        return self.request(method, {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})

    def close(self):
        if self.process.poll() is None:
            try:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
                self.process.wait(timeout=10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()


def start(env: dict | None = None, args: tuple = ()) -> Client:
    client = Client(env, args)
    result = client.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {}})
    caps = result["capabilities"]
    assert caps["hoverProvider"] and caps["definitionProvider"] and caps["codeActionProvider"]
    assert "gradcheck.explain" in caps["executeCommandProvider"]["commands"]
    client.notify("initialized", {})
    return client


@pytest.fixture(scope="module")
def client():
    c = start()
    yield c
    c.close()
    assert c.process.returncode == 0


def test_a_wrong_d_line_is_an_error_on_its_line_and_clears_when_fixed(client):
    client.open(URI, WRONG)
    found = client.diagnostics(URI, 1)
    errors = [d for d in found if d["severity"] == 1]
    assert len(errors) == 1, found
    assert errors[0]["range"]["start"] == {"line": 1, "character": 2}   # `dt = dout * t`
    assert errors[0]["range"]["end"]["line"] == 1
    assert "backprop disagrees with both" in errors[0]["message"] and errors[0]["source"] == "gradcheck"
    client.change(URI, RIGHT, 2)
    assert client.diagnostics(URI, 2) == []


def test_hover_shows_a_nodes_value_and_gradient_and_a_gates_rule(client):
    client.open(URI + "2", RIGHT)
    assert client.diagnostics(URI + "2", 1) == []
    x, y = 1.5, -0.5
    shown = client.at("textDocument/hover", URI + "2", 5, 9)["contents"]["value"]  # the x inside exp(x)
    assert "**x**" in shown and "value: `1.5`" in shown
    assert f"`{math.exp(x) * y + 2 * x:.4g}` (backprop)" in shown and "status: **pass**" in shown
    call = client.at("textDocument/hover", URI + "2", 5, 18)["contents"]["value"]  # sq in sq(x)
    assert "**sq(x)**" in call and f"value: `{x * x:.4g}`" in call
    assert "dt = 2 * dout * t" in call  # the gate's local-gradient rule: the user's d line
    exp = client.at("textDocument/hover", URI + "2", 5, 5)["contents"]["value"]  # exp in exp(x)
    assert "**exp(x)**" in exp and f"value: `{math.exp(x):.4g}`" in exp and "local gradient of `exp`" in exp
    assert client.at("textDocument/hover", URI + "2", 2, 0) is None  # a blank line


def test_go_to_definition_of_a_gate_and_of_a_name(client):
    client.open(URI + "3", RIGHT)
    client.diagnostics(URI + "3", 1)
    gate = client.at("textDocument/definition", URI + "3", 5, 17)   # sq in sq(x)
    assert gate["uri"] == URI + "3" and gate["range"] == {"start": {"line": 0, "character": 5},
                                                          "end": {"line": 0, "character": 7}}
    name = client.at("textDocument/definition", URI + "3", 5, 13)   # the y of `* y`
    assert name["range"]["start"] == {"line": 4, "character": 0}
    param = client.at("textDocument/definition", URI + "3", 1, 18)  # the t of `dout * t`: the gate's parameter
    assert param["range"]["start"] == {"line": 0, "character": 8}


def test_a_code_action_explains_the_chain_rule_at_a_node(client):
    client.open(URI + "4", WRONG)
    client.diagnostics(URI + "4", 1)
    here = {"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 0}}   # x = 1.5
    actions = client.request("textDocument/codeAction", {"textDocument": {"uri": URI + "4"}, "range": here,
                                                         "context": {"diagnostics": []}})
    assert [a["title"] for a in actions] == ["Explain the chain rule at x"]
    text = client.request("workspace/executeCommand", {"command": actions[0]["command"]["command"],
                                                       "arguments": actions[0]["command"]["arguments"]})
    x, y = 1.5, -0.5
    wrong_total = math.exp(x) * y + x   # what the wrong d line gives: dout * t instead of 2 * dout * t
    assert f"dx = 1 × {x:.4g} = {x:.4g}" in text and f"total: dx = {wrong_total:.4g}" in text
    assert "✗ this gate's backward is wrong" in text
    shown = client.notification("window/showMessage", lambda p: p["message"] == text)
    assert shown["type"] == 3


def test_syntax_name_kink_and_warning_marks_at_their_positions(client):
    cases = [("x = 1\nf = x *\n", 1, 1, 6, "unfinished"),
             ("x = 1\nf = yy * x\n", 1, 1, 4, "unknown name 'yy'"),
             ("x = 0\nf = relu(x)\n", 3, 1, 4, "changes branch"),
             ("x = 1\ny = 2\nf = x * x\n", 2, 1, 0, "not used by the output 'f': y")]
    for i, (text, *_) in enumerate(cases):  # all open at once: each file's pause runs beside the others'
        client.open(f"{URI}.case{i}", text)
    for i, (text, severity, line, character, words) in enumerate(cases):
        found = client.diagnostics(f"{URI}.case{i}", 1)
        assert any(d["severity"] == severity and d["range"]["start"] == {"line": line, "character": character}
                   and words in d["message"] for d in found), (text, found)


def test_a_file_typed_character_by_character_never_stops_the_server(client):
    uri = URI + ".typed"
    client.open(uri, "")
    for n in range(1, len(WRONG) + 1):
        client.change(uri, WRONG[:n], n + 1)
        if n % 9 == 0:  # requests are answered mid-typing (None or a hover, never an error)
            shown = client.at("textDocument/hover", uri, 0, 0)
            assert shown is None or "contents" in shown
            client.request("textDocument/codeAction", {"textDocument": {"uri": uri}, "context": {"diagnostics": []},
                                                       "range": {"start": {"line": 0, "character": 0},
                                                                 "end": {"line": 0, "character": 0}}})
    final = client.diagnostics(uri, len(WRONG) + 1)
    assert [d["range"]["start"]["line"] for d in final if d["severity"] == 1] == [1]
    published = [n for n in client.notes if n.get("method") == "textDocument/publishDiagnostics"
                 and n["params"]["uri"] == uri]
    assert len(published) < len(WRONG) // 3, len(published)  # debounced: a check per pause, not per keystroke
    assert client.process.poll() is None


def test_every_prefix_of_a_file_gets_diagnostics_not_a_crash():
    """Each half-typed version checked (waiting for each): positioned errors, never the server's own.
    With `--delay 0` each is checked as soon as it arrives (the default pause is held by the test above)."""
    client = start(args=("--delay", "0"))
    try:
        uri = URI + ".prefixes"
        client.open(uri, "")
        text = "gate sq(t) = t^2\n  dt = 2 * dout * t\nx = [1, 2]\nf = sum(sq(x) @ x)\n"
        for n in range(1, len(text) + 1):
            client.change(uri, text[:n], n + 1)
            found = client.diagnostics(uri, n + 1)
            assert not any("bug of gradcheck" in d["message"] for d in found), (text[:n], found)
        assert found == []
    finally:
        client.close()


def test_the_delay_is_the_pause_before_a_check(client):
    """`--delay MS`: nothing is checked before the pause has passed (a minute here: the file stays
    unchecked while requests are answered), and a delay that is not 0 to 60,000 ms is a usage error.
    The module's server (the default 300 ms) is the control: the same file opened there after it is opened
    here is checked and published; twice that long after, this server has still published nothing."""
    waiting = start(args=("--delay", "60000"))
    try:
        text = "x = 2\nf = x * x\n"
        waiting.open(URI + ".waiting", text)
        assert waiting.at("textDocument/hover", URI + ".waiting", 1, 4) is None  # answered at once, no analysis yet
        opened = time.monotonic()
        client.open(URI + ".control", text)
        client.diagnostics(URI + ".control", 1)  # past the default pause, a file this small has been checked
        time.sleep(max(time.monotonic() - opened, 0.5))
        assert waiting.at("textDocument/hover", URI + ".waiting", 1, 4) is None
        assert not [n for n in waiting.notes if n.get("method") == "textDocument/publishDiagnostics"]
    finally:
        waiting.close()
    bad = gradcheck_in_process("lsp", "--delay", "-1", cwd=ROOT)  # refused before any server starts: in this process
    assert bad.returncode == 2 and "--delay" in bad.stderr and "Traceback" not in bad.stderr


def test_limits_are_diagnostics_not_hangs():
    client = start({"GRADCHECK_MAX_FILE_BYTES": "200", "GRADCHECK_MAX_WORK": "1000"})
    try:
        client.open(URI, "x = 1\n" + "# padding\n" * 30 + "f = x * x\n")
        client.open(URI + "w", "x = randn(30)\nf = sum(exp(x) * x)\n")  # both pauses at once
        big = client.diagnostics(URI, 1)
        assert [d["severity"] for d in big] == [1] and "GRADCHECK_MAX_FILE_BYTES raises it" in big[0]["message"]
        work = client.diagnostics(URI + "w", 1)
        assert [d["severity"] for d in work] == [1] and "MAX_WORK" in work[0]["message"]
    finally:
        client.close()


MALFORMED = [b"Content-Length: 4\r\n\r\nnull", b"Content-Length: 7\r\n\r\n[1,2,3]", b"Content-Length: 10\r\n\r\n{not json}",
             b"Content-Length: -5\r\n\r\n", b"Content-Length: abc\r\n\r\n", b"Content-Length: 99999999999999999999\r\n\r\n{}",
             b"Content-Length: 9000000000\r\n\r\n{}"]


def test_a_malformed_message_is_dropped_and_the_server_answers_the_next():
    # (pygls alone then answered nothing more, or ended with an OverflowError): one server, each message in turn
    c = start()
    try:
        c.open("file:///m.grad", "x = 2\nf = x*x\n")
        assert c.diagnostics("file:///m.grad", 1) == []
        for raw in MALFORMED:
            c.process.stdin.write(raw)
            c.process.stdin.flush()
            assert c.at("textDocument/hover", "file:///m.grad", 1, 0) is not None, raw
    finally:
        c.close()
    assert c.process.returncode == 0


def test_without_pygls_the_command_says_how_to_install_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygls", None)  # (an import of it raises ImportError, as where it is not installed)
    done = gradcheck_in_process("lsp", cwd=ROOT)  # in this process: said before any server starts
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install 'gradcheck-cli[lsp]'" in done.stderr


# --- a real editor: Neovim's own LSP client, headless --------------------------------------------

NEOVIM_SCRIPT = r"""
local out = {}
local file = vim.fn.getenv("GRAD_FILE")
vim.cmd("edit " .. file)
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start_client({ name = "gradcheck", root_dir = vim.fn.fnamemodify(file, ":h"),
                                  cmd = { vim.fn.getenv("GRAD_PYTHON"), "-m", "gradcheck_cli", "lsp" } })
vim.lsp.buf_attach_client(buf, id)
local function diags() return vim.diagnostic.get(buf) end
vim.wait(120000, function() return #diags() > 0 end, 50)
for _, d in ipairs(diags()) do
  table.insert(out, string.format("wrong %d %d %d %s", d.lnum + 1, d.col + 1, d.severity, (d.message:gsub("\n", " "))))
end
vim.api.nvim_buf_set_lines(buf, 1, 2, false, { "  dt = 2 * dout * t" })
local cleared = vim.wait(120000, function() return #diags() == 0 end, 50)
table.insert(out, "cleared " .. tostring(cleared))
local params = { textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = 3, character = 0 } }
for _, r in pairs(vim.lsp.buf_request_sync(buf, "textDocument/hover", params, 60000) or {}) do
  if r.result then table.insert(out, "hover " .. (r.result.contents.value:gsub("\n", " "))) end
end
vim.fn.writefile(out, vim.fn.getenv("GRAD_OUT"))
vim.lsp.stop_client(id)
vim.cmd("qa!")
"""


def test_neovims_own_client_marks_the_wrong_line_clears_it_when_fixed_and_hovers(tmp_path):
    import shutil
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (Debian's neovim package): the real-editor test needs it")
    (tmp_path / "neuron.grad").write_text(WRONG, encoding="utf-8")
    (tmp_path / "client.lua").write_text(NEOVIM_SCRIPT, encoding="utf-8")
    out = tmp_path / "seen.txt"
    env = {**os.environ, "GRAD_FILE": str(tmp_path / "neuron.grad"), "GRAD_PYTHON": sys.executable,
           "GRAD_OUT": str(out), "PYTHONPATH": str(ROOT)}
    subprocess.run([nvim, "--headless", "--clean", "-u", "NONE", "-c", f"luafile {tmp_path / 'client.lua'}"],
                   env=env, cwd=tmp_path, timeout=400, stdin=subprocess.DEVNULL, capture_output=True)
    seen = out.read_text(encoding="utf-8").splitlines()
    wrong = [s for s in seen if s.startswith("wrong ")]
    # one error (severity 1), at line 2 of the file, the d line, column 3 where `dt` starts
    assert len(wrong) == 1 and wrong[0].startswith("wrong 2 3 1 "), seen
    assert "dt" in wrong[0] and "fails its own check" in wrong[0], seen
    assert "cleared true" in seen, seen
    (hover,) = [s for s in seen if s.startswith("hover ")]
    assert "**x**" in hover and f"`{math.exp(1.5) * -0.5 + 2 * 1.5:.4f}`" in hover, hover


def test_the_docs_screen_of_neovim_is_what_neovim_shows(tmp_path):
    """docs/lsp.md shows a terminal screen of Neovim on a file with a wrong d line: here Neovim runs
    in tmux (110 columns) with the server, and its screen must be that block, line for line."""
    import re
    import shutil
    if shutil.which("nvim") is None or shutil.which("tmux") is None:
        pytest.skip("Neovim and tmux are needed (Debian's neovim and tmux packages) to take the screen")
    docs = (ROOT / "docs" / "lsp.md").read_text(encoding="utf-8")
    shown = re.search(r"<!-- lsp-screen -->\n```text\n(.*?)```", docs, re.S).group(1).splitlines()
    (tmp_path / "wrong.grad").write_text(WRONG, encoding="utf-8")
    (tmp_path / "init.lua").write_text(
        'vim.cmd("autocmd BufRead *.grad lua StartGrad()")\nfunction StartGrad()\n'
        f'  local id = vim.lsp.start_client({{ name = "gradcheck", cmd = {{ "{sys.executable}", "-m", "gradcheck_cli", "lsp" }},'
        ' root_dir = vim.fn.getcwd() })\n  vim.lsp.buf_attach_client(0, id)\nend\n', encoding="utf-8")
    session = f"gradcheck-lsp-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    subprocess.run(["tmux", "-L", session, "new-session", "-d", "-s", session, "-x", "110", "-y", "12",
                    f"cd {tmp_path} && nvim -u {tmp_path / 'init.lua'} wrong.grad"], env=env, check=True, timeout=60)
    try:
        screen: list = []
        before: list = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # until the error's sign is drawn and the screen is still
            screen = subprocess.run(["tmux", "-L", session, "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True, timeout=60).stdout.splitlines()
            if any(line.startswith("E ") for line in screen) and screen == before:
                break
            before = screen
            time.sleep(0.1)
        assert [line.rstrip() for line in screen[:len(shown)]] == [line.rstrip() for line in shown], "\n".join(screen)
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], timeout=60)
