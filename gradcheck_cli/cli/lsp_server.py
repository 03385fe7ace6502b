"""The language server for `.grad` files (`gradcheck lsp`): pygls over standard input and output.

What it says comes from `render.editor` (plain data); this module only speaks the protocol. Every
change is checked after a pause in typing (`delay`, 300 ms unless `--delay` says otherwise), one check at a time on a worker thread, so
requests are answered while a check runs; a check's marks are published only if the file has not
changed since. Imported only by the `lsp` command: pygls is an optional extra.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from lsprotocol import types as lsp
from pygls.server import LanguageServer
from pygls.uris import to_fs_path

from .. import __version__
from ..render import editor

DELAY = 0.3              # seconds without a change before a file is checked, unless `--delay` says otherwise
EXPLAIN = "gradcheck.explain"  # the command a code action runs: the chain rule at a node, shown as a message


class GradServer(LanguageServer):
    """The server, with what it holds per open file: the last analysis and the pending check."""

    def __init__(self, delay: float = DELAY) -> None:
        super().__init__("gradcheck", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.delay = delay
        self.analyses: dict[str, editor.Analysis] = {}
        self.pending: dict[str, asyncio.Future] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcheck-check")

    def current(self, uri: str) -> editor.Analysis | None:
        """The analysis of the file as it is now, or None while the current text is still being checked."""
        analysis = self.analyses.get(uri)
        document = self.workspace.text_documents.get(uri)
        if analysis is None or document is None or analysis.text != document.source:
            return None
        return analysis

    def schedule(self, uri: str) -> None:
        """Check the file after `delay` seconds without another change (a newer change restarts the wait)."""
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        self.pending[uri] = asyncio.ensure_future(self._check(uri))

    async def _check(self, uri: str) -> None:
        await asyncio.sleep(self.delay)
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return
        text, version = document.source, document.version
        path = to_fs_path(uri) if uri.startswith("file:") else None
        analysis = await self.loop.run_in_executor(self.worker, partial(editor.analyse, text, source=path or uri,
                                                                        path=path))
        document = self.workspace.text_documents.get(uri)
        if document is None or document.source != text:  # changed meanwhile: a newer check is on its way
            return
        self.analyses[uri] = analysis
        self.publish_diagnostics(uri, [_diagnostic(m) for m in analysis.marks], version=version)

    def forget(self, uri: str) -> None:
        pending = self.pending.pop(uri, None)
        if pending is not None:
            pending.cancel()
        self.analyses.pop(uri, None)
        self.publish_diagnostics(uri, [])


def _range(span: editor.Span) -> lsp.Range:
    return lsp.Range(start=lsp.Position(line=span.line, character=span.character),
                     end=lsp.Position(line=span.end_line, character=span.end_character))


def _diagnostic(mark: editor.Mark) -> lsp.Diagnostic:
    return lsp.Diagnostic(range=_range(mark.span), message=mark.message, severity=lsp.DiagnosticSeverity(mark.severity),
                          source="gradcheck", code=mark.code)


def make_server(delay: float = DELAY) -> GradServer:
    """The server with its features registered; a file is checked `delay` seconds after its last change."""
    server = GradServer(delay)

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: GradServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: GradServer, params: lsp.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: GradServer, params: lsp.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def hover(ls: GradServer, params: lsp.HoverParams) -> lsp.Hover | None:
        analysis = ls.current(params.text_document.uri)
        if analysis is None:
            return None
        text = editor.hover(analysis, params.position.line, params.position.character)
        if text is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: GradServer, params: lsp.DefinitionParams) -> lsp.Location | None:
        analysis = ls.current(params.text_document.uri)
        if analysis is None:
            return None
        span = editor.definition(analysis, params.position.line, params.position.character)
        return None if span is None else lsp.Location(uri=params.text_document.uri, range=_range(span))

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION)
    def code_action(ls: GradServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction] | None:
        uri, start = params.text_document.uri, params.range.start
        analysis = ls.current(uri)
        node = None if analysis is None else editor.node_at(analysis, start.line, start.character)
        if node is None:
            return None
        title = f"Explain the chain rule at {node.name}"
        return [lsp.CodeAction(title=title, kind=lsp.CodeActionKind.Empty,
                               command=lsp.Command(title=title, command=EXPLAIN,
                                                   arguments=[uri, start.line, start.character]))]

    @server.command(EXPLAIN)
    async def explain(ls: GradServer, arguments: list) -> str | None:
        """The chain rule at (uri, line, character), shown as a message and returned."""
        if not isinstance(arguments, list) or len(arguments) != 3:
            return None
        uri, line, character = arguments
        analysis = ls.current(uri) if isinstance(uri, str) else None
        if analysis is None or not isinstance(line, int) or not isinstance(character, int):
            return None
        text = await ls.loop.run_in_executor(ls.worker, partial(editor.chain_rule, analysis, line, character))
        if text is not None:
            ls.show_message(text, lsp.MessageType.Info)
        return text

    return server


MAX_MESSAGE = 256 << 20  # bytes of one message from the client (a document past the language's own limit
# is refused by the check; this only bounds what is read before it)
_LENGTH = re.compile(rb"Content-Length:[ \t]*([0-9]{1,12})[ \t]*\r?$", re.IGNORECASE)


def framed(source, sink) -> None:
    """Copy the client's messages from `source` to `sink` (pygls's reader), each checked first: a header
    block with a Content-Length of at most MAX_MESSAGE bytes, and a body that is one JSON object. One that
    is not is dropped, and reading goes on at the next header: a `null` body, a batch, a negative or
    20-digit length no longer leave the server deaf to every later message, or end it. `sink` is closed
    at the end of `source`."""
    try:
        while True:
            length, ended = None, True
            for line in iter(source.readline, b""):
                found = _LENGTH.search(line.rstrip(b"\n"))
                if found:  # (anywhere in the line: a dropped body without its newline runs into the next header)
                    length = int(found.group(1))
                if line in (b"\r\n", b"\n"):
                    ended = False
                    break
            if ended:
                return
            if length is None or length > MAX_MESSAGE:
                continue
            body = source.read(length)
            if len(body) < length:
                return
            try:
                message = json.loads(body)
            except (ValueError, RecursionError):
                continue
            if isinstance(message, dict):
                sink.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                sink.flush()
    except (OSError, ValueError):
        return
    finally:
        try:
            sink.close()
        except OSError:
            pass


def serve(delay: float = DELAY) -> None:
    """Talk the protocol over standard input and output until the client says exit: the client's messages
    pass `framed` on their way in."""
    read, write = os.pipe()
    guard = threading.Thread(target=framed, args=(sys.stdin.buffer, os.fdopen(write, "wb")), daemon=True)
    guard.start()
    make_server(delay).start_io(stdin=os.fdopen(read, "rb"))
