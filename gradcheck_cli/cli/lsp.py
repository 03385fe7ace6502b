"""`gradcheck lsp`: the language server for editors (the server itself is in lsp_server, with pygls)."""

from __future__ import annotations

import os
import sys

import click

from . import main


@main.command(short_help="Run the language server for .grad files (for editors).")
@click.option("--stdio", is_flag=True, help="Talk over standard input and output (the default, and the only way).")
@click.option("--delay", type=click.IntRange(0, 60_000), default=300, show_default=True, metavar="MS",
              help="Milliseconds without a change before a file is checked.")
def lsp(stdio, delay):
    """A Language Server over standard input and output for .grad files: the check's findings
    as you type, the value and gradient of a node on hover, go to a gate's definition, and the
    chain rule at a node. Editors start it; it needs the lsp extra:
    pip install 'gradcheck-cli[lsp]'."""
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError:
        click.echo("gradcheck lsp: the language server needs pygls, the lsp extra: "
                   "pip install 'gradcheck-cli[lsp]' (or pip install 'pygls>=1.3,<2')", err=True)
        sys.exit(2)
    from .lsp_server import serve
    serve(delay=delay / 1000)
    if sys.stdout.closed:  # the server closes its output at the client's `exit`: the exit's flush writes nowhere
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
