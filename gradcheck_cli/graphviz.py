"""Rendering DOT text to SVG or PNG with Graphviz's `dot`, where it is installed."""

from __future__ import annotations

import shutil
import subprocess

from .errors import UsageError

INSTALL = ("Install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
           "conda: conda install graphviz), or use --format dot and render the text elsewhere.")


def render(dot_text: str, fmt: str) -> bytes:
    """The image bytes; a UsageError when Graphviz is missing or fails."""
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(f"--format {fmt} needs Graphviz's `dot`, which is not installed. " + INSTALL)
    result = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True)
    if result.returncode != 0:
        raise UsageError(f"Graphviz failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
