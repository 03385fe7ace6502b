"""The VS Code extension in editors/vscode/: its contributions point at files that exist, its grammar
is valid JSON whose patterns compile, and its patterns colour a sample as meant. Nothing generated
(node_modules, a .vsix) is committed."""

import json
import re
import subprocess

from conftest import ROOT

VSCODE = ROOT / "editors" / "vscode"


def _patterns(node):
    """Every `match` of a TextMate grammar, with its scope names."""
    if isinstance(node, dict):
        if "match" in node:
            yield node
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_the_extension_contributes_the_grad_language_and_starts_the_server():
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    (language,) = package["contributes"]["languages"]
    assert language["id"] == "grad" and language["extensions"] == [".grad"]
    assert (VSCODE / language["configuration"]).is_file()
    (grammar,) = package["contributes"]["grammars"]
    assert grammar["language"] == "grad" and (VSCODE / grammar["path"]).is_file()
    assert (VSCODE / package["main"]).is_file()
    assert package["contributes"]["configuration"]["properties"]["gradcheck.server.command"]["default"] == ["gradcheck", "lsp"]
    assert "vscode-languageclient" in package["dependencies"]
    source = (VSCODE / "extension.js").read_text(encoding="utf-8")
    assert "TransportKind.stdio" in source and 'language: "grad"' in source


def test_the_grammar_compiles_and_colours_a_gate_and_its_d_line():
    grammar = json.loads((VSCODE / "syntaxes" / "grad.tmLanguage.json").read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.grad"
    compiled = {p["match"]: re.compile(p["match"]) for p in _patterns(grammar)}  # Oniguruma's syntax, as Python reads it
    repo = grammar["repository"]
    header = compiled[repo["gate-header"]["match"]].match("gate sq(t) = t^2")
    assert header.group(1, 2, 4) == ("gate", "sq", "t")
    d_line = compiled[repo["d-line"]["match"]].match("  dt = 2 * dout * t")
    assert d_line.group(2) == "dt"
    assert compiled[repo["d-line"]["match"]].match("  dt == 2") is None
    assert compiled[repo["comment"]["match"]].search("x = 1  # a leaf").group() == "# a leaf"


def test_nothing_generated_is_committed():
    tracked = subprocess.run(["git", "ls-files", "editors"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if "node_modules" in f or f.endswith((".vsix", "package-lock.json"))], tracked
