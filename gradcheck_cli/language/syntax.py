"""Text → AST. Lark's errors become GradSyntaxError with a line, a column and a caret."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from contextvars import ContextVar

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from . import nodes
from ..core.cache import file, read_json, write_json
from ..core.errors import GradSyntaxError
from ..core.limits import MAX_STATEMENTS

_TOKEN_WORDS = {
    "_NL": "end of line", "$END": "end of input", "_INDENT": "indentation",
    "_DEDENT": "end of the indented block", "NAME": "a name", "NUMBER": "a number",
    "COMPARE": "a comparison", "POW": "'^'",
}


class _GradIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


def _pos(item) -> nodes.Pos:
    """The position of a token or of an AST node."""
    if isinstance(item, Token):
        return nodes.Pos(item.line, item.column, item.start_pos, item.end_pos)
    return item.pos


# id(expr) -> its span with enclosing parentheses, for the parse under way (one per parse: re-entrant)
_outer: ContextVar = ContextVar("outer")


def _span(first, last) -> nodes.Pos:
    """From the start of `first` to the end of `last`, parentheses around them included."""
    spans = _outer.get()
    a = spans.get(id(first)) or _pos(first)
    b = spans.get(id(last)) or _pos(last)
    return nodes.Pos(a.line, a.col, a.start, b.end)


def _exprs(items) -> tuple:
    return tuple(i for i in items if i is not None and not isinstance(i, Token))


def _op(op):
    def build(self, *items):
        tok = next((i for i in items if isinstance(i, Token)), None)
        return nodes.Op(op, _exprs(items), _span(items[0], items[-1]), _pos(tok) if tok else None)
    return build


@v_args(inline=True)
class _ToAst(Transformer):
    """Builds AST nodes while the LALR parser runs (no recursion, so deep nesting is fine)."""

    def number(self, tok):
        return nodes.Num(float(tok), _pos(tok))  # float() of any digit string is safe: huge → inf

    def name(self, tok):
        return nodes.Name(str(tok), _pos(tok))

    add = _op("+")
    sub = _op("-")
    mul = _op("*")
    div = _op("/")
    matmul = _op("@")
    neg = _op("neg")
    transpose = _op(".T")
    shape_of = _op(".shape")

    def index(self, base, lsqb, *rest):
        items = tuple(i for i in rest[:-1] if i is not None and not isinstance(i, Token))
        return nodes.Index(base, items, _span(base, rest[-1]), _pos(lsqb))

    def slice(self, *items):
        parts, current, first = [], None, None
        for item in items:
            if isinstance(item, Token) and item.type == "COLON":
                first = first or item
                parts.append(current)
                current = None
            else:
                current = item
        parts.append(current)
        parts += [None] * (3 - len(parts))
        start = next((i for i in items if i is not None), first)
        end = next((i for i in reversed(items) if i is not None), first)
        return nodes.Slice(*parts[:3], _span(start, end))

    def newaxis(self, tok):
        return nodes.NewAxis(_pos(tok))

    def pos(self, _plus, operand):
        return operand

    def atom(self, lpar, expr, rpar):
        _outer.get()[id(expr)] = nodes.Pos(lpar.line, lpar.column, lpar.start_pos, rpar.end_pos)
        return expr

    def pow(self, base, _tok, exponent):
        return nodes.Op("^", (base, exponent), _span(base, exponent), _pos(_tok))

    def compare(self, left, tok, right):
        return nodes.Op(str(tok), (left, right), _span(left, right), _pos(tok))

    def call(self, func, *rest):
        args = _exprs(rest)
        pos_args = tuple(a for a in args if not isinstance(a, tuple))
        kwargs = tuple(a for a in args if isinstance(a, tuple))
        return nodes.Call(str(func), pos_args, kwargs, _span(func, rest[-1]), _pos(func))

    def kwarg(self, name, _eq, value):
        return (str(name), value, _pos(name))

    def comprehension(self, func, _lpar, element, *rest):
        loops = tuple(r for r in rest if isinstance(r, nodes.Loop))
        kwargs = tuple(r for r in rest if isinstance(r, tuple))
        return nodes.Comprehension(str(func), element, loops, kwargs, _span(func, rest[-1]), _pos(func))

    def comp_for(self, kw, name, _in, _range, _lpar, *rest):
        return nodes.Loop(str(name), _exprs(rest), _pos(kw))

    def array(self, *items):
        return nodes.Array(_exprs(items), _span(items[0], items[-1]))

    def assign(self, name, _eq, expr):
        return nodes.Assign(str(name), expr, _pos(name))

    def const_assign(self, _kw, name, _eq, expr):
        return nodes.Assign(str(name), expr, _pos(name), const=True)

    def output(self, _kw, name):
        return nodes.Output(str(name), _pos(name))

    def expect(self, _kw, name, _eq, expr):
        return nodes.Expect(str(name), expr, _pos(name))

    def expr_stmt(self, expr):
        return nodes.ExprStmt(expr, _pos(expr))

    def params(self, *items):
        return tuple(t for t in items if isinstance(t, Token) and t.type == "NAME")

    def gate_line(self, name, _eq, expr, *_nl):
        return nodes.Assign(str(name), expr, _pos(name))

    def gate_def(self, _kw, name, _lpar, params, _rpar, _eq, expr, *body):
        params = params or ()
        return nodes.GateDef(str(name), tuple(str(p) for p in params), expr,
                         tuple(b for b in body if isinstance(b, nodes.Assign)), _pos(name),
                         tuple(_pos(p) for p in params))

    def start(self, *statements):
        return [s for s in statements if s is not None and not isinstance(s, Token)]


def _grammar() -> tuple[str, str]:
    """The grammar's text, and the key its saved tables must carry: its digest and lark's version
    (tables saved by another lark are rebuilt, never loaded)."""
    # read by this module's own loader, as importlib.resources would (from a folder or a zip), without
    # importing importlib.resources (3 ms of every run); newlines made "\n" as a text read makes them
    data = __loader__.get_data(os.path.join(os.path.dirname(__file__), "grammar.lark"))
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    return text, f"{hashlib.sha256(text.encode('utf-8')).hexdigest()} lark-{lark.__version__}"


def _build(grammar: str) -> Lark:
    return Lark(grammar, parser="lalr", postlex=_GradIndenter(), propagate_positions=False,
                maybe_placeholders=True, keep_all_tokens=True, transformer=_ToAst())


def tables_name(digest: str) -> str:
    """The cache file of the tables for this grammar and lark (`core/cache.py`'s folder)."""
    grammar_hash, version = digest.split()
    return f"grammar-{grammar_hash[:20]}-{version}.json"


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser: its tables as lark built them for this grammar on an earlier run (0.2 s to build,
    milliseconds to load), kept in gradcheck's cache folder as JSON and loaded through lark's own
    deserialiser (never a pickle); built, and kept, where they are missing, stale or damaged."""
    grammar, digest = _grammar()
    kept = file(tables_name(digest))
    saved = read_json(kept, object_hook=_untag)
    if isinstance(saved, dict) and saved.get("key") == digest:
        try:
            return Lark.__new__(Lark)._load(saved["tables"], postlex=_GradIndenter(), transformer=_ToAst())
        except Exception:  # noqa: BLE001 - tables that do not load (damaged, edited) mean: build the parser
            pass
    parser = _build(grammar)
    data, memo = parser.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k not in ("postlex", "transformer")}
    write_json(kept, {"key": digest, "tables": _tagged({"data": data, "memo": memo})})
    return parser


def warm() -> None:
    """The parser made now, before any text is parsed (a fork server's children then share it)."""
    _parser()


def _tagged(value):
    """Lark's serialised tables as JSON: tuples and dicts (whose keys may be numbers) tagged."""
    if isinstance(value, dict):
        return {"d": [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"t": [_tagged(v) for v in value]}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot keep {type(value).__name__} in the parser's tables")


def _untag(obj: dict):
    """`_tagged` undone as the tables' JSON is read (json's object_hook, innermost objects first, so a
    tagged dict's keys are tuples already): a tag's dict or tuple, the file's outer object as it is, and
    a ValueError for anything else (the tables are then built)."""
    if len(obj) == 1:
        (tag, body), = obj.items()
        if isinstance(body, list):
            try:
                if tag == "d":
                    return {key: value for key, value in body}
                if tag == "t":
                    return tuple(body)
            except (TypeError, ValueError) as err:  # a pair that is not one, a key that is a list
                raise ValueError(f"damaged {tag!r} entry") from err
        raise ValueError(f"a damaged or unknown tag {tag!r}")
    if obj.keys() == {"key", "tables"}:
        return obj
    raise ValueError("an object that is not tagged")


def _describe(token: Token) -> str:
    if token.type in ("NAME", "NUMBER"):
        return f"{_TOKEN_WORDS[token.type][2:]} '{token.value}'"
    if token.type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token.type]
    return f"'{token.value}'"


def _syntax_error(err: UnexpectedInput, text: str) -> GradSyntaxError:
    line, col = getattr(err, "line", None), getattr(err, "column", None)
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        if ch in "\"'":
            msg = "strings are not part of the language"
        elif ch == "." and text[err.pos_in_stream:err.pos_in_stream + 2] != ".T" \
                and text[err.pos_in_stream:err.pos_in_stream + 6] != ".shape":
            msg = "attributes are not part of the language (the postfixes are '.T' and '.shape')"
        elif ch == "\r":
            msg = "a bare carriage return (use LF or CRLF line endings)"
        elif not ch.isprintable():
            msg = f"unexpected character {ch!r}"
        else:
            msg = f"unexpected character '{ch}'"
        return GradSyntaxError(msg, line, col)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END" or line in (None, -1):
            lines = text.rstrip("\n").split("\n")
            return GradSyntaxError("unexpected end of input: something is unfinished",
                                   len(lines), len(lines[-1]) + 1)
        if tok.type == "_INDENT":  # borrowed from the newline token: point past the indentation
            return GradSyntaxError("unexpected indentation (only the lines under a `gate` are indented)",
                                   tok.end_line, tok.end_column)
        if tok.type == "_NL":
            return GradSyntaxError("unexpected end of line: the statement is unfinished", tok.line, tok.column)
        python = _python_keyword_before(text, tok)
        if python:
            return GradSyntaxError(f"'{python[0]}' is Python, not part of this language", python[1], python[2])
        return GradSyntaxError(f"unexpected {_describe(tok)}", tok.line, tok.column)
    if isinstance(err, UnexpectedEOF):
        lines = text.rstrip("\n").split("\n")
        return GradSyntaxError("unexpected end of input", len(lines), len(lines[-1]) + 1)
    return GradSyntaxError(str(err).splitlines()[0], line, col)


_PYTHON = {"lambda", "import", "from", "def", "class", "for", "while", "if", "return", "with", "print"}


def _python_keyword_before(text: str, tok: Token):
    """(keyword, line, col) when the unexpected token follows a Python keyword on its line."""
    line_start = text.rfind("\n", 0, tok.start_pos) + 1
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", text[line_start:tok.start_pos + len(str(tok.value))]):
        if m.group() in _PYTHON:
            return m.group(), tok.line, m.start() + 1
    return None


def normalize(text: str) -> str:
    """Drop a UTF-8 BOM and make sure the text ends with a newline."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text if text.endswith("\n") else text + "\n"


def parse(text: str) -> nodes.Program:
    """Parse source text into a Program; raise GradSyntaxError on anything not in the language."""
    text = normalize(text)
    if "\x00" in text:
        raise GradSyntaxError("this is not a text file (it contains NUL bytes)", 1, 1)
    _refuse_long(text)
    with _parsed_lock:
        kept = _parsed.pop(text, None)
        if kept is not None:
            _parsed[text] = kept  # the newest now
            return kept
    token = _outer.set({})
    try:
        statements = _parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None
    except DedentError:
        raise GradSyntaxError("inconsistent indentation", *_dedent_position(text)) from None
    except VisitError as err:  # a transformer callback failed: report as a syntax error
        raise GradSyntaxError(str(err.orig_exc), 1, 1) from None
    finally:
        _outer.reset(token)
    program = nodes.Program(tuple(statements), text)
    with _parsed_lock:
        _parsed[text] = program
        while len(_parsed) > PARSED_KEPT:
            del _parsed[next(iter(_parsed))]
    return program


PARSED_KEPT = 8  # texts whose trees parse() keeps: the same text checked again in one process (with other
                 # settings, in the editor's server, a notebook) is not parsed again; the tree is immutable
_parsed: dict = {}  # normalized text -> its Program, oldest first
_parsed_lock = threading.Lock()


def _refuse_long(text: str) -> None:
    """More lines of code than MAX_STATEMENTS: refused before parsing, at the first line past it."""
    if text.count("\n") < MAX_STATEMENTS:
        return
    code = [number for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]
    if len(code) > MAX_STATEMENTS:
        raise GradSyntaxError(f"this source has {len(code):,} lines of code (at most {MAX_STATEMENTS:,}; "
                              "GRADCHECK_MAX_STATEMENTS raises it); split it into several files",
                              code[MAX_STATEMENTS], 1)


def _dedent_position(text: str) -> tuple[int, int]:
    """The first line whose indentation matches no enclosing block (best effort)."""
    levels = [0]
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line[: len(line) - len(stripped)].expandtabs(8))
        if indent > levels[-1]:
            levels.append(indent)
        else:
            while indent < levels[-1]:
                levels.pop()
            if indent != levels[-1]:
                return number, 1
    return 1, 1
