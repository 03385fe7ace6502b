"""MkDocs hooks (mkdocs.yml `hooks:`): the docs site carries the circuit stepper itself, written by
`gradcheck explain --format html` at build time, where the teaching page embeds it — a live page
instead of a screenshot, and nothing generated kept in the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# (the example, the page written into the site beside teaching/)
EMBEDDED = [("examples/mistakes/sigmoid_gate_forgot_1_minus_out.grad", "circuits/neuron-forgot-1-minus-out.html"),
            ("expressions/cs231n_circuit.grad", "circuits/cs231n-circuit.html")]


def on_post_build(config, **kwargs):
    site = Path(config["site_dir"])
    for example, page in EMBEDDED:
        target = site / page
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "explain", example,
                               "--format", "html", "-o", str(target)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        # exit 1 is the wrong d line the page is there to show; anything else is a broken build
        if done.returncode not in (0, 1) or not target.is_file():
            raise RuntimeError(f"gradcheck explain {example} --format html failed:\n{done.stdout}")
