"""The helpers every Python target shares (python/usercode.py): several outputs as one flat output
and the upstream cut back into them, and the user's code called on copies, quietly, metered."""

from __future__ import annotations

import warnings

import numpy as np

from gradcheck_cli.core.meter import Meter
from gradcheck_cli.python.usercode import call_on_copies, flat_size, joined, split_outputs


def test_several_outputs_join_flat_and_split_back_in_their_shapes():
    outs = [np.arange(6.0).reshape(2, 3), np.array(7.0), np.arange(4.0)]
    flat = joined(outs)
    assert flat.shape == (11,) and flat_size([o.shape for o in outs]) == 11
    back = split_outputs(flat, [o.shape for o in outs])
    assert [b.shape for b in back] == [(2, 3), (), (4,)]
    assert all(np.array_equal(b, o) for b, o in zip(back, outs))
    one = np.ones((2, 2))
    assert joined([one]) is one  # a single output keeps its shape
    assert [p.shape for p in split_outputs(np.arange(4.0), [(2, 2)])] == [(2, 2)]


def test_the_users_code_gets_copies_runs_quietly_and_is_metered():
    u, args = np.ones(3), [np.zeros(3), np.zeros((2, 2))]

    def changes_its_arguments(upstream, arrays):
        upstream[:] = 5.0
        arrays[0][:] = 5.0
        warnings.warn("not shown", stacklevel=2)
        return np.log(arrays[1])  # log(0): a floating-point warning, silenced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Meter() as meter:
            out = call_on_copies(changes_its_arguments, u, args, calls=2)
    assert np.all(out == -np.inf) and np.all(u == 1.0) and np.all(args[0] == 0.0)
    assert meter.counts == {"python": 2, "element": 2 * (3 + 3 + 4)}
