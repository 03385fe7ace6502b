"""What the user's source says about itself (python/pysource.py), read from small backwards in this
file: the line that last writes each returned gradient — an in-place method on it counts — the
`return` line, the parameters never read, and where a decorated function is written."""

from __future__ import annotations

import functools
from pathlib import Path

from gradcheck_cli.python.pysource import display, grad_lines, return_line, shared_line, unused_parameters, where


def here(text: str) -> int:
    return next(i for i, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1)
                if line.rstrip().endswith(text))


def in_place(ctx, grad_output):
    x, w, out = ctx.saved_tensors
    grad_x = grad_output.clone()
    grad_x.addcmul_(grad_output, w, value=2.0)  # addcmul_
    grad_w = grad_output * x
    grad_w.mul_(2).add_(1)  # chain
    grad_b = grad_output.sum(0)
    grad_b[0].zero_()  # a view of it
    grad_c = grad_output * 2
    grad_output.mul(3, out=grad_c)  # out=
    grad_d = grad_output * 3
    grad_d.clone().mul_(2)  # a copy's update, not grad_d's
    return grad_x, grad_w, grad_b, grad_c, grad_d  # return


def test_an_in_place_update_of_a_returned_gradient_is_its_last_write():
    lines = grad_lines(in_place, ("x", "w", "b", "c", "d"))
    assert {n: line for n, (line, _) in lines.items()} == {
        "x": here("# addcmul_"), "w": here("# chain"), "b": here("# a view of it"), "c": here("# out="),
        "d": here("# a copy's update, not grad_d's") - 1}
    assert lines["x"][1] == 5  # the statement's column
    assert return_line(in_place) == (here("# return"), 5)


def swapped_backward(dout, cache):
    x, w = cache
    dx = dout * w
    dw = dout * x
    return dw, dx


def test_the_parameters_never_read():
    def forgets(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 2 * x
    assert unused_parameters(forgets) == ("grad_output",)
    assert unused_parameters(swapped_backward) == ()


def shared_through_saved(ctx, grad):
    a, b, out = ctx.saved_tensors
    ga = grad * a / out
    gb = grad * b / out
    return ga, gb


def test_ctx_is_not_taken_for_the_upstream_of_a_shared_cause():
    # `a, b, out = ctx.saved_tensors` feeds both gradients but carries no upstream: not a shared cause
    assert shared_line(shared_through_saved, ("a", "b"), {"a", "b"}) is None


def decorated(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class Holder:
    @staticmethod
    @decorated
    def backward(ctx, grad):  # def line
        return grad


def test_a_decorated_function_is_where_the_user_wrote_it_at_its_def_line():
    assert where(Holder.backward) == (display(__file__), here("# def line"))
