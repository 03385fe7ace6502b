"""Named random streams: every random draw of a check (upstream gradients, random directions, second
points, samples, hidden grading points) comes from its own stream, named here once. Two streams can
never coincide: the entropy is the stream's number, how many keys follow, the keys, then the seed
(NumPy pads short entropy with zeros, so a count keeps `[a, b]` and `[a, b, 0]` apart; the seed goes
last because a large one takes several words). The leaves' `randn(...)` values are not a stream of
this table: they are `default_rng(--seed)` itself, as documented."""

from __future__ import annotations

from enum import IntEnum, unique

import numpy as np


@unique
class Stream(IntEnum):
    """Every random stream of the tool; a new one gets a new number."""
    DIFFERENCES = 1          # the finite-difference engine's random projections
    GATE_CHECK = 2           # a gate's own check: its upstream gradient, per point and gate
    SECOND_POINT = 3         # the second, random point of a .grad file
    LOCAL_SAMPLE = 4         # which gates of a large graph are checked on their own
    EXPECT_FORMULA = 5       # points at which an `expect` formula is compared
    HVP_DIRECTION = 6        # second order: the direction v and the output's weights
    HVP_GATE = 7             # second order: a gate's own check, per gate
    PYTHON_CHECK = 8         # a Python layer: upstreams, directions, second point
    PYTHON_MODULE = 9        # FILE.py: the values of inputs given by shape
    TORCH_INPUTS = 10        # a torch Function's inputs given by shape
    TORCH_DOUBLE = 11        # a torch Function's double backward
    JAX_LOW_PRECISION = 12   # the upstream of a JAX rule's low-precision check
    GRADE_POINTS = 13        # grading a .grad exercise: the hidden points
    GRADE_PYTHON_POINTS = 14  # grading a Python exercise: the hidden points (keyed by the pair's name)
    GRADE_EXERCISE_POINT = 15  # grading a Python exercise: inputs its point leaves to chance
    GRADE_UPSTREAM = 16      # grading: the upstream gradient a student's backward is called with
    GRADE_VARIANT = 17       # grading --variants: a student's own points (keyed by the student's name; a
    # Python exercise's also by the pair's)
    GRADE_VARIANT_DIMS = 18  # grading --variants: a student's own sizes of the exercise's `# dims:`
    FORWARD_TANGENTS = 19    # forward mode: the random tangents a jvp rule is checked along, per input and tangent
    PYTHON_PER_INPUT = 20    # a Python layer whose projections over every input fail: each input's own, per input


def stream(seed: int, name: Stream, *keys: int) -> np.random.Generator:
    """The generator of stream `name` for this seed and these keys (a point, a node, ...)."""
    if seed < 0 or any(k < 0 for k in keys):
        raise ValueError("seeds and stream keys are non-negative integers")
    return np.random.default_rng([int(name), len(keys), *map(int, keys), int(seed)])
