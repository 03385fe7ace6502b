"""The smallest relative bug each oracle catches in a .grad file (run by hand; issue 25): the GELU of
examples/subtle/gelu_rounded.grad with √(2/π) in its backward rounded to k digits, checked by finite
differences alone (--no-complex-step --no-symbolic), SymPy (--no-complex-step), and the complex step
(--no-symbolic). Prints, per k, the bug's relative size and each oracle's verdict on the file.

    python tests/benchmarks/bench_oracles.py
"""

from __future__ import annotations

import math
from pathlib import Path

from gradcheck_cli import check

SOURCE = (Path(__file__).resolve().parents[2] / "examples" / "subtle" / "gelu_rounded.grad").read_text(encoding="utf-8")
ORACLES = {"differences": {"complex_step": False, "symbolic": False}, "SymPy": {"complex_step": False},
           "complex step": {"symbolic": False}}


def main():
    exact = math.sqrt(2 / math.pi)
    print(f"{'digits':>6} {'relative bug':>13}  " + "  ".join(f"{name:>12}" for name in ORACLES))
    for k in range(3, 13):
        rounded = round(exact, k)
        text = SOURCE.replace("0.7978846", repr(rounded))
        verdicts = ["fail" if not check(text, source="gelu.grad", **o).passed else "pass" for o in ORACLES.values()]
        print(f"{k:>6} {abs(rounded - exact) / exact:>13.1e}  " + "  ".join(f"{v:>12}" for v in verdicts))


if __name__ == "__main__":
    main()
