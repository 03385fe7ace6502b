"""The documented resource limits: every input is bounded before anything is allocated or run.

Each limit is checked where a size is first known (a literal, a constructor's arguments, a gate's
inferred shape, a file's length) and refused with a positioned error, exit 2.
"""

from __future__ import annotations

import os
import re

from .errors import UsageError

INVALID: dict = {}  # GRADCHECK_<NAME> variables set to something that is not a positive whole number


def _limit(name: str, default: int) -> int:
    """A limit, raised (or lowered) with the environment variable GRADCHECK_<NAME>; a value that is
    not a positive whole number is recorded in INVALID (the CLI refuses it) and the default kept."""
    value = os.environ.get(f"GRADCHECK_{name}")
    if value is None:
        return default
    if re.fullmatch(r"\s*0*[0-9]{1,30}\s*", value, re.ASCII) and int(value) > 0:  # (a 5,000-digit value is
        return int(value)                                                          # no limit: refused, not raised on)
    INVALID[f"GRADCHECK_{name}"] = value
    return default


RENAMED = {"GRADCHECK_MAX_DIFFERENCE_WORK": "GRADCHECK_MAX_WORK"}  # old name -> the limit that replaced it


def check_environment() -> None:
    """Raise UsageError naming the first GRADCHECK_* limit variable whose value is not a positive
    whole number, or that names a limit that is gone (a setting silently ignored is worse)."""
    for old, new in RENAMED.items():
        if old in os.environ:
            raise UsageError(f"{old} is gone: the one work limit is {new} (work units of the cost model, "
                             f"default {MAX_WORK:,}); set that instead")
    if INVALID:
        variable, value = next(iter(INVALID.items()))
        raise UsageError(f"{variable}={value!r}: a limit must be a positive whole number "
                         f"(e.g. {variable}=1000000), or unset for its default")


MAX_ELEMENTS = _limit("MAX_ELEMENTS", 2_000_000)              # elements in any one array (16 MB of float64)
MAX_TOTAL_ELEMENTS = _limit("MAX_TOTAL_ELEMENTS", 4_000_000)  # elements in all the nodes of one file together
MAX_JACOBIAN = _limit("MAX_JACOBIAN", 4_000_000)    # output elements × elements of every node up to it (adjoints held)
MAX_NDIM = 8                                          # dimensions of any array (a --shape's too)
MAX_NESTING = 32                                      # arrays and tables inside one another: a --param's JSON,
                                                      # pyproject.toml (Python's parsers recurse: ~1000 is a crash)
MAX_REACH_PROBES = 16                                 # elements of each input a native-precision check probes (a NaN,
                                                      # ±inf put in each) to measure n, the outputs one element reaches
MAX_NODES = _limit("MAX_NODES", 250_000)              # nodes in one file's graph
MAX_GATE_WORK = _limit("MAX_GATE_WORK", 40_000)       # gate applications a forward pass expands to (calibrated:
# a check runs the forward ~30 times over; an automatic VJP runs each nested body once (remembered);
# 16,384 nested applications check in 8 s, 32,768 in 15 s, 65,536 in 28 s on this project's 2-core machine)
MAX_FILE_BYTES = _limit("MAX_FILE_BYTES", 4 * 1024 * 1024)  # bytes read from one source (or standard input)
MAX_STATEMENTS = _limit("MAX_STATEMENTS", 20_000)     # lines of code (not blank, not comments) parsed from one source:
                                                      # parsing is ~60 µs a line, so past this a file is refused in ms,
                                                      # not after seconds of parsing (one forward pass allows 20,000 gates)
MAX_UNROLL = _limit("MAX_UNROLL", 10_000)            # terms one comprehension unrolls to (all its loops)
MAX_WORK = _limit("MAX_WORK", 8_000_000_000)  # work units one check may take, predicted by cost.py before it starts
# (calibrated by tests/benchmarks/bench_cost.py: the slowest shape runs 7.2 ns a unit here, so 58 s)
MAX_DESCENT_WORK = _limit("MAX_DESCENT_WORK", 20_000_000)  # steps × (each node's elements + NODE_COST) of `descend`
MAX_HISTORY = _limit("MAX_HISTORY", 4_000_000)           # leaf values `descend` keeps: (steps + 1) × leaf elements
MAX_DRAWN_NODES = _limit("MAX_DRAWN_NODES", 1_000)        # nodes `graph` hands Graphviz to lay out (svg, png)
MAX_SECONDS = _limit("MAX_SECONDS", 300)  # CPU seconds check-py gives one target's code, and 3× that of wall clock (a
# backstop for code that never returns, not a budget: the largest check MAX_WORK admits takes about a minute)


def size_error(what: str, size: int, limit: int, unit: str = "elements", name: str | None = None) -> str:
    """`X would have N elements (at most L; GRADCHECK_NAME raises it)`."""
    hint = f"; GRADCHECK_{name} raises it" if name else ""
    return f"{what} would have {size:,} {unit} (at most {limit:,}{hint})"
