"""An input's stated structure without PyTorch: the map x = c + P z is a projection onto the structure's
directions (P idempotent and self-adjoint, so Pᵀ G is what the differences along z see), the second
point stays in the structure, and a numpy layer's verdicts follow a hand-derived gradient. Also dotted
targets of numpy layers (`FILE.py::Layers.square`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check_function
from gradcheck_cli.cli import main
from gradcheck_cli.python.structure import Structure

RNG = np.random.default_rng(0)


def point(kind: Structure, shape):
    return kind.draw(RNG.standard_normal(shape))


@pytest.mark.parametrize("kind, shape", [(Structure.SYMMETRIC, (4, 4)), (Structure.SPD, (2, 3, 3)),
                                         (Structure.SIMPLEX, (3, 5))])
def test_the_map_is_an_orthogonal_projection_onto_the_structures_directions(kind, shape):
    x = point(kind, shape)
    assert np.allclose(kind.embed(x), x)  # a point of the structure is its own coordinates
    z, w = RNG.standard_normal(shape), RNG.standard_normal(shape)
    moved = kind.embed(z)
    assert np.allclose(kind.embed(moved), moved)  # idempotent
    # self-adjoint: <P z, w> = <z, P w>, so the gradient along z of f(c + P z) is Pᵀ G = P G
    assert np.isclose(np.sum((kind.embed(z) - kind.embed(np.zeros(shape))) * w),
                      np.sum(z * (kind.embed(w) - kind.embed(np.zeros(shape)))))
    if kind is Structure.SIMPLEX:
        assert np.allclose(moved.sum(axis=-1), 1) and np.allclose(kind.pull(w).sum(axis=-1), 0)
    else:
        assert np.array_equal(moved, np.swapaxes(moved, -1, -2))


@pytest.mark.parametrize("scale", [0.1, 0.02, 0.004])
def test_the_second_point_stays_in_the_structure(scale):
    spd = point(Structure.SPD, (4, 4))
    moved = Structure.SPD.move(spd, RNG.standard_normal((4, 4)), scale)
    assert moved is not None and np.array_equal(moved, moved.T) and np.all(np.linalg.eigvalsh(moved) > 0)
    assert 0 < np.abs(moved - spd).max() < 3 * scale * np.abs(spd).max()
    onehot = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])  # a point on the simplex's edge
    mixed = Structure.SIMPLEX.move(onehot, RNG.standard_normal((2, 3)), scale)
    assert np.all(mixed > 0) and np.allclose(mixed.sum(axis=-1), 1)


def test_a_gradient_right_only_along_symmetric_directions():
    """f(X) = Σ (A ⊙ X) for a non-symmetric A: its gradient is A; along symmetric directions only
    (A + Aᵀ)/2 is seen, so a backward returning Aᵀ is right there and wrong elsewhere."""
    a = RNG.standard_normal((3, 3))
    x = point(Structure.SYMMETRIC, (3, 3))

    def f(x):
        return np.sum(a * x)
    for vjp, anywhere, symmetric in ((lambda g, x: g * a, True, True), (lambda g, x: g * a.T, False, True),
                                     (lambda g, x: 2 * g * a, False, False)):
        assert check_function(f, vjp, {"x": x}).passed == anywhere
        assert check_function(f, vjp, {"x": x}, structure={"x": "symmetric"}).passed == symmetric


def test_dotted_targets_of_numpy_layers(tmp_path):
    path = tmp_path / "ns.py"
    path.write_text(textwrap.dedent("""\
        class Layers:
            @staticmethod
            def square_forward(x):
                return x * x, x

            @staticmethod
            def square_backward(dout, cache):
                return 3 * cache * dout
    """))
    run = CliRunner()
    done = run.invoke(main, ["check-py", f"{path}::Layers.square", "--shape", "x=3"])
    assert done.exit_code == 1 and "(line 8)" in done.output  # 3·x·dout is wrong: 2·x·dout is the gradient
    done = run.invoke(main, ["check-py", f"{path}::Layers.cube", "--shape", "x=3"])
    assert done.exit_code == 2 and "Layers has no 'cube' (it has: square_forward, square_backward)" in done.output


@pytest.mark.parametrize("shape, kind", [("3", "spd"), ("3,4", "symmetric"), ("2,3,4", "spd")])
def test_a_structure_the_shape_cannot_have_is_an_input_error_before_any_draw(tmp_path, shape, kind):
    (tmp_path / "layer.py").write_text("def scale_forward(x):\n    return 2 * x, None\n\n\n"
                                       "def scale_backward(dout, cache):\n    return 2 * dout\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::scale", "--shape",
                           f"x={shape}", "--structure", f"x={kind}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "process running the code" not in done.stderr
    assert f"input 'x' is stated {kind}, so it must be square in its last two axes" in done.stderr
