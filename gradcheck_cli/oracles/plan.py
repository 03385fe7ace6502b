"""The plan of the finite differences: how many rows (perturbed copies of the function) the engine
evaluates for an element or a direction, pass by pass.

The engine reads these numbers when it runs (`numeric` plans its passes' rows from them, `runners`
counts a target's work by them, second order and the output-by-output kink analysis take their
steps from them), and the cost model (`checking.cost`) multiplies the same numbers out for its
prediction: change the plan and the prediction moves with the work. `PLAN` is the plan every check
runs; both sides read it when they run, never a copy of its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDES = (1.0, -1.0)   # a centred difference: a row at +step and a row at −step, in this order
REFINE = 0.5          # Richardson's second step, as a fraction of the first
STEPS = (1.0, REFINE)  # the steps, as fractions of h: ±h for every element, then ±REFINE·h where in doubt


@dataclass(frozen=True, kw_only=True)
class DifferencePlan:
    """The rows one target's differences take. An element is differenced at each of STEPS, a row on
    each SIDE, and Richardson extrapolates the pair; a target past the element budget is differenced
    along `projections` random ±1 directions instead, each taking the rows an element takes."""
    projections: int = 4

    def __post_init__(self) -> None:
        if self.projections < 1:
            raise ValueError(f"projections need at least one direction, not {self.projections}")

    @property
    def rows_per_element(self) -> int:
        """Rows an element (or a direction) takes when every step runs: each step, on each side."""
        return len(SIDES) * len(STEPS)

    @property
    def direction_rows_per_step(self) -> int:
        """Rows one step along every projection direction takes: a row on each side of each."""
        return len(SIDES) * self.projections

    @property
    def complex_rows_per_element(self) -> int:
        """The complex step's rows per element: one, at +i·H (nothing cancels, so no −i·H row)."""
        return 1

    def rows(self, elements: int, projected: bool) -> int:
        """Rows a target of `elements` takes at most: every step for each element, or for each
        direction when it is `projected`."""
        return self.rows_per_element * (self.projections if projected else elements)

    def offsets(self, h: float | np.ndarray) -> list:
        """The perturbations of an element at step h (or of each element, h an array), row by row:
        +h, −h, then +REFINE·h, −REFINE·h."""
        return [side * (step * h) for step in STEPS for side in SIDES]


PLAN = DifferencePlan()
