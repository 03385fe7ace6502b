"""CS231n's assignment 2 graded as students write it (examples/grading/cs231n_a2.py): a generated class
of one-slip edits of the reference, each labelled by hand with the points every part must get, graded
with -j 2 and matched exactly in the table, the CSV and the JSON; students' files in CS231n's own
styles (written here) graded with no adapter; a loop costs only its pair; dropout graded by its rule."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from conftest import gradcheck_in_process

ROOT = Path(__file__).resolve().parent.parent.parent
EXERCISE = ROOT / "examples" / "grading" / "cs231n_a2.py"
REFERENCE = EXERCISE.read_text(encoding="utf-8")
PARTS = ["affine.dx", "affine.dw", "affine.db", "relu.dx", "batchnorm.dx", "batchnorm.dgamma", "batchnorm.dbeta",
         "dropout.forward", "dropout.dx", "conv.dx", "conv.dw", "conv.db", "max_pool.dx", "svm_loss.dx",
         "softmax_loss.dx"]
POINTS = dict(zip(PARTS, [1, 1, 1, 1, 2, 1, 1, 1, 1, 2, 2, 1, 2, 2, 2]))


def slip(old: str, new: str, count: int = 1) -> str:
    """The reference with one edit (the edited text must be there, `count` times)."""
    assert REFERENCE.count(old) == count, old
    return REFERENCE.replace(old, new)


def without(function: str) -> str:
    """The reference without one function."""
    start = REFERENCE.index(f"\ndef {function}(")
    end = REFERENCE.find("\ndef ", start + 1)
    return REFERENCE[:start] + (REFERENCE[end:] if end > 0 else "\n")


def zero(*parts: str) -> dict:
    return {**POINTS, **{p: 0 for p in parts}}


TIE_ROUTING = ("                    r, s = np.unravel_index(np.argmax(window), window.shape)  # one maximum takes it all\n"
               "                    dx[a, c, i * stride + r, j * stride + s] += dout[a, c, i, j]\n")

# name: (source, {part: points}, {part: a phrase its reason holds}); every label by hand, from the slip
CLASS = {
    "s01_right": (REFERENCE, POINTS, {}),
    "s02_tie_routing": (slip(TIE_ROUTING, "                    dx[a, c, i * stride:i * stride + ph, j * stride:j * stride "
                                          "+ pw] += (window == window.max()) * dout[a, c, i, j]\n"),
                        zero("max_pool.dx"), {"max_pool.dx": "wrong at point 1 of"}),
    "s03_dw_transposed": (slip("dw = x.reshape(x.shape[0], -1).T.dot(dout)", "dw = dout.T.dot(x.reshape(x.shape[0], -1))"),
                          zero("affine.dw"), {"affine.dw": "transpose"}),
    "s04_dx_not_reshaped": (slip("dx = dout.dot(w.T).reshape(x.shape)", "dx = dout.dot(w.T)"),
                            zero("affine.dx"), {"affine.dx": "wrong shape"}),
    "s05_dgamma_not_summed": (slip("dgamma = (dout * xhat).sum(axis=0)", "dgamma = dout * xhat"),
                              zero("batchnorm.dgamma"), {"batchnorm.dgamma": "not summed over the batch"}),
    "s06_bn_dx_no_mean": (slip("(n * dxhat - dxhat.sum(axis=0) - xhat", "(n * dxhat - xhat"),
                          zero("batchnorm.dx"), {}),
    "s07_bn_unbiased_var": (slip("mu, var = x.mean(axis=0), x.var(axis=0)", "mu, var = x.mean(axis=0), x.var(axis=0, ddof=1)"),
                            zero("batchnorm.dx", "batchnorm.dgamma", "batchnorm.dbeta"), {"batchnorm.dx": "fix the forward"}),
    # the backward is right for the student's own forward: only the forward's scaling is wrong
    "s08_dropout_unscaled": (slip("mask = (np.random.rand(*x.shape) < p) / p", "mask = np.random.rand(*x.shape) < p"),
                             zero("dropout.forward"), {"dropout.forward": "scaled by 1, but inverted dropout"}),
    "s09_dropout_keeps_1_minus_p": (slip("mask = (np.random.rand(*x.shape) < p) / p", "mask = (np.random.rand(*x.shape) > p) / p"),
                                    zero("dropout.forward"), {"dropout.forward": "keep probability"}),
    "s10_dropout_backward_unscaled": (slip("return dout * mask if", "return dout * (mask > 0) if"),
                                      zero("dropout.dx"), {"dropout.dx": "your own forward"}),
    # a right dropout whose mask comes from other numpy calls (same seed, other sequence): full marks
    "s11_dropout_binomial": (slip("mask = (np.random.rand(*x.shape) < p) / p", "mask = np.random.binomial(1, p, size=x.shape) / p"),
                             POINTS, {}),
    "s12_conv_backward_loops": (slip("    db = dout.sum(axis=(0, 2, 3))\n", "    db = dout.sum(axis=(0, 2, 3))\n    while True:\n"
                                     "        db = db + 0\n"),
                                zero("conv.dx", "conv.dw", "conv.db"), {"conv.dx": "conv_backward_naive did not finish in 0.5 s"}),
    "s13_conv_db_not_summed": (slip("db = dout.sum(axis=(0, 2, 3))", "db = dout.sum(axis=(0, 2))"),
                               zero("conv.db"), {}),
    "s14_conv_dx_no_stride": (slip("dxp[:, :, rows, cols] +=", "dxp[:, :, i:i + hh, j:j + ww] +="),
                              zero("conv.dx"), {}),
    "s15_no_svm_loss": (without("svm_loss"), zero("svm_loss.dx"), {"svm_loss.dx": "missing: svm_loss is not defined"}),
    "s16_softmax_raises": (slip("    n = x.shape[0]\n    shifted", "    raise NotImplementedError('softmax')\n    shifted"),
                           zero("softmax_loss.dx"), {"softmax_loss.dx": "raised NotImplementedError"}),
    "s17_svm_not_averaged": (slip("    return loss, dx / n\n\n\ndef softmax", "    return loss, dx\n\n\ndef softmax"),
                             zero("svm_loss.dx"), {"svm_loss.dx": "factor of 5"}),
    "s18_softmax_no_minus_one": (slip("    dx[np.arange(n), y] -= 1\n", "", 1), zero("softmax_loss.dx"), {}),
    "s19_relu_at_zero": (slip("return dout * (cache > 0)", "return dout * (cache >= 0)"), POINTS, {}),
    "s20_relu_no_mask": (slip("return dout * (cache > 0)", "return dout.copy()"), zero("relu.dx"), {}),
    "s21_pool_backward_no_stride": (slip("dx[a, c, i * stride + r, j * stride + s]", "dx[a, c, i + r, j + s]"),
                                    zero("max_pool.dx"), {}),
    "s22_dropout_backward_exits": (slip("    dropout_param, mask = cache\n", "    dropout_param, mask = cache\n"
                                        "    raise SystemExit(1)\n"),
                                   zero("dropout.forward", "dropout.dx"), {"dropout.dx": "SystemExit"}),
    "s23_does_not_import": (slip("import numpy as np\n", "import numpy as np\nthis is not python\n"),
                            {p: 0 for p in PARTS}, {"affine.dx": "cannot import it"}),
    "s24_svm_returns_loss_only": (slip("    return loss, dx / n\n\n\ndef softmax", "    return loss\n\n\ndef softmax"),
                                  zero("svm_loss.dx"), {}),
}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """The class graded once (-j 2, 2 hidden points, a limit of 0.5 s of CPU per call, where each call of
    the others takes milliseconds of it): JSON, CSV and the table."""
    folder = tmp_path_factory.mktemp("cs231n") / "class"
    folder.mkdir()
    for name, (source, _, _) in CLASS.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    files = sorted(str(p) for p in folder.iterdir())
    env = {**os.environ, "COLUMNS": "400"}
    # in this process (not about the process: each submission still runs in its own, sandboxed)
    done = gradcheck_in_process("grade", EXERCISE, *files, "--secret", "8675309", "--hidden", "2", "-j", "2",
                                "--call-timeout", "0.5", "--csv", folder.parent / "g.csv", "--json", folder.parent / "g.json",
                                cwd=folder.parent, env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads((folder.parent / "g.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader(io.StringIO((folder.parent / "g.csv").read_text(encoding="utf-8"))))
    return {s["student"]: s for s in found["submissions"]}, {r["student"]: r for r in rows}, done.stdout


@pytest.mark.parametrize("name", list(CLASS))
def test_every_part_gets_its_label_in_the_json(graded_class, name):
    graded, _, _ = graded_class
    _, expected, phrases = CLASS[name]
    parts = {p["what"]: p for p in graded[name]["parts"]}
    assert {k: p["earned"] for k, p in parts.items()} == expected, {k: p["reason"] for k, p in parts.items()
                                                                     if p["earned"] != expected[k]}
    assert graded[name]["score"] == sum(expected.values()) and graded[name]["out_of"] == sum(POINTS.values())
    for part, phrase in phrases.items():
        assert phrase in parts[part]["reason"], (name, part, parts[part]["reason"])


def test_the_csv_and_the_table_say_the_same(graded_class):
    _, rows, table = graded_class
    assert set(rows) == set(CLASS)
    lines = table.splitlines()
    for name, (_, expected, _) in CLASS.items():
        row = rows[name]
        assert {p: float(row[p]) for p in PARTS} == expected and float(row["score"]) == sum(expected.values())
        found = [ln for ln in lines if re.search(rf"\b{name}\b", ln)]
        assert found, name
        cells = [c.strip() for c in found[0].split("│")[1:]]
        assert cells[1] == f"{sum(expected.values()):g}"
        assert [float(c) for c in cells[2:2 + len(PARTS)]] == [expected[p] for p in PARTS], found[0]


# --- CS231n students' files in their own styles, graded with no adapter --------------------------------------

STYLE_B = '''import numpy as np


def affine_forward(x, w, b):
    N = x.shape[0]
    out = np.reshape(x, (N, -1)) @ w + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    dx = np.reshape(dout @ w.T, x.shape)
    dw = np.reshape(x, (N, -1)).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    out = x.copy()
    out[out < 0] = 0
    return out, x


def relu_backward(dout, cache):
    dx = dout.copy()
    dx[cache <= 0] = 0
    return dx


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))
    out, cache = None, None
    if mode == 'train':
        sample_mean = np.mean(x, axis=0)
        xmu = x - sample_mean
        sq = xmu ** 2
        var = np.sum(sq, axis=0) / N
        sqrtvar = np.sqrt(var + eps)
        ivar = 1. / sqrtvar
        xhat = xmu * ivar
        out = gamma * xhat + beta
        cache = (xhat, gamma, xmu, ivar, sqrtvar, var, eps)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * var
    elif mode == 'test':
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    # the staged graph, one node at a time
    xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    N, D = dout.shape
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1. / (sqrtvar ** 2) * divar
    dvar = 0.5 * 1. / np.sqrt(var + eps) * dsqrtvar
    dsq = 1. / N * np.ones((N, D)) * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dxmu1 + dxmu2, axis=0)
    dx2 = 1. / N * np.ones((N, D)) * dmu
    dx = dx1 + dx2
    return dx, dgamma, dbeta


def dropout_forward(x, dropout_param):
    p, mode = dropout_param['p'], dropout_param['mode']
    if 'seed' in dropout_param:
        np.random.seed(dropout_param['seed'])
    mask = None
    out = None
    if mode == 'train':
        mask = (np.random.random_sample(x.shape) < p) / p
        out = x * mask
    elif mode == 'test':
        out = x
    cache = (dropout_param, mask)
    out = out.astype(x.dtype, copy=False)
    return out, cache


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    mode = dropout_param['mode']
    dx = None
    if mode == 'train':
        dx = dout * mask
    elif mode == 'test':
        dx = dout
    return dx


def conv_forward_naive(x, w, b, conv_param):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0,), (0,), (pad,), (pad,)), mode='constant', constant_values=0)
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    out[n, f, i, j] = np.sum(x_pad[n, :, hs:hs + HH, ws:ws + WW] * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0,), (0,), (pad,), (pad,)), mode='constant', constant_values=0)
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += np.sum(dout[n, f])
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    dw[f] += x_pad[n, :, hs:hs + HH, ws:ws + WW] * dout[n, f, i, j]
                    dx_pad[n, :, hs:hs + HH, ws:ws + WW] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    N, C, H, W = x.shape
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    H_out = 1 + (H - ph) // stride
    W_out = 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw])
    cache = (x, pool_param)
    return out, cache


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    N, C, H, W = x.shape
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    _, _, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    idx = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * stride + idx[0], j * stride + idx[1]] += dout[n, c, i, j]
    return dx


def svm_loss(x, y):
    N = x.shape[0]
    correct = x[np.arange(N), y]
    margins = np.maximum(0, x - correct[:, np.newaxis] + 1.0)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N
    num_pos = np.sum(margins > 0, axis=1)
    dx = np.zeros_like(x)
    dx[margins > 0] = 1
    dx[np.arange(N), y] -= num_pos
    dx /= N
    return loss, dx


def softmax_loss(x, y):
    shifted_logits = x - np.max(x, axis=1, keepdims=True)
    Z = np.sum(np.exp(shifted_logits), axis=1, keepdims=True)
    log_probs = shifted_logits - np.log(Z)
    probs = np.exp(log_probs)
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx
'''

# the same student, mask drawn through np.random.uniform and a loop-based svm with its own slip
STYLE_C = (STYLE_B.replace("mask = (np.random.random_sample(x.shape) < p) / p",
                           "mask = (np.random.uniform(size=x.shape) < p).astype(float) / p")
           .replace("    dx[np.arange(N), y] -= num_pos\n", "    dx[np.arange(N), y] -= num_pos\n    dx = dx.T\n")
           # its own names for the arguments: called by position, in the exercise's order
           .replace("def batchnorm_forward(x, gamma, beta, bn_param):\n",
                    "def batchnorm_forward(X, g, b, params):\n    x, gamma, beta, bn_param = X, g, b, params\n")
           .replace("def softmax_loss(x, y):\n", "def softmax_loss(scores, labels):\n    x, y = scores, labels\n"))


def test_students_files_in_cs231n_style_are_graded_with_no_adapter(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "bea.py").write_text(STYLE_B, encoding="utf-8")
    (folder / "cal.py").write_text(STYLE_C, encoding="utf-8")
    done = gradcheck_in_process("grade", EXERCISE, folder / "bea.py", folder / "cal.py", "--secret", "31337",
                                "--format", "json", "-j", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    graded = {s["student"]: {p["what"]: p for p in s["parts"]} for s in json.loads(done.stdout)["submissions"]}
    assert {k: p["earned"] for k, p in graded["bea"].items()} == POINTS, {k: p["reason"] for k, p in graded["bea"].items()}
    assert {k: p["earned"] for k, p in graded["cal"].items()} == zero("svm_loss.dx"), {k: p["reason"] for k, p in graded["cal"].items()}
    assert "svm_loss" in graded["cal"]["svm_loss.dx"]["reason"] or "dx" in graded["cal"]["svm_loss.dx"]["reason"]


# --- the teacher's mistakes: exit 2 at the header, before any student is graded ---------------------

@pytest.mark.parametrize("edit, fragment, line, col", [
    (('# params: batchnorm bn_param={"mode": "train"}', '# params: batchnorm bn_param={"mode": "train"'),
     "not JSON", 10, 46),
    (('# params: batchnorm bn_param={"mode": "train"}', '# inputs: batchnorm bn_param={"mode":"train"}'),
     "bn_param", 10, 30),
    (("# points: affine.dx=1", "# points: layernorm.dx=1 affine.dx=1\n# shapes: layernorm x=2,3"),
     "no layernorm_forward/layernorm_backward pair", 4, 1),
    (("# points: affine.dx=1", "# points: layernorm.dx=1 affine.dx=1"), "give its inputs", 4, 1),
    (("# points: affine.dx=1", "# points: affine.dq=1"), "affine_forward has no differentiated input 'q'", 4, 1),
    (('# params: svm_loss y=[1, 0, 3, 3, 2]', '# params: svm_loss y=[1, 0, 3, 3, 2] margin=1'),
     "svm_loss has no parameter 'margin'", 19, 38),
    (('# params: batchnorm bn_param={"mode": "train"}', "#"), "batchnorm_forward needs bn_param", 9, 21),
    (("# random: dropout keep=dropout_param.p", "# random: dropout keep=dropout_param.q"), "no param dropout_param with a key 'q'", 13, 19),
    (("# random: dropout keep=dropout_param.p", "# random: dropout keep=2"), "must be a number in (0, 1]", 13, 19),
])
def test_a_malformed_header_is_the_teachers_error(tmp_path, edit, fragment, line, col):
    exercise = tmp_path / "ex.py"
    text = REFERENCE.replace(*edit)
    assert text != REFERENCE
    exercise.write_text(text, encoding="utf-8")
    student = tmp_path / "ada.py"
    student.write_text(REFERENCE, encoding="utf-8")
    # in this process (the header is read before any submission runs: not about the process)
    done = gradcheck_in_process("grade", exercise, student, "--secret", "1", "--format", "csv")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert fragment in done.stderr and f"ex.py:{line}:{col}: error:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_header_lines_keep_json_integers_and_positions(tmp_path):
    from gradcheck_cli.teaching.exercise import load_exercise
    ex = load_exercise(str(EXERCISE))
    assert ex.params["svm_loss"]["y"] == [1, 0, 3, 3, 2] and all(type(v) is int for v in ex.params["svm_loss"]["y"])
    assert ex.params["conv"]["conv_param"] == {"stride": 2, "pad": 1} and ex.random == {"dropout": "dropout_param.p"}
    assert ex.where["svm_loss.y"] == [19, 20]


# --- several outputs and then the cache (lstm_step), with and without a forward of the student's ------------

LSTM = '''# points: lstm_step.dx=1 lstm_step.dprev_h=1 lstm_step.dprev_c=1 lstm_step.dWx=1 lstm_step.dWh=1 lstm_step.db=1
# shapes: lstm_step x=3,4 prev_h=3,2 prev_c=3,2 Wx=4,8 Wh=2,8 b=8
import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    h = prev_h.shape[1]
    i, f, o, g = sigmoid(a[:, :h]), sigmoid(a[:, h:2 * h]), sigmoid(a[:, 2 * h:3 * h]), np.tanh(a[:, 3 * h:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    t = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - t ** 2)
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * t * o * (1 - o), dc * i * (1 - g ** 2)])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)
'''


def test_several_outputs_then_the_cache(tmp_path):
    (tmp_path / "lstm.py").write_text(LSTM, encoding="utf-8")
    backward_only = LSTM[LSTM.index("def lstm_step_backward"):]
    subs = {"full": LSTM, "only_backward": "import numpy as np\n\n\n" + backward_only,
            "no_forget_gate": LSTM.replace("dc * f, x.T", "dc, x.T")}
    for name, text in subs.items():
        (tmp_path / f"{name}.py").write_text(text, encoding="utf-8")
    done = gradcheck_in_process("grade", tmp_path / "lstm.py", *[tmp_path / f"{n}.py" for n in subs], "--secret", "99",
                                "--format", "json")
    assert done.returncode == 0, done.stderr
    graded = {s["student"]: {p["what"]: p["earned"] for p in s["parts"]} for s in json.loads(done.stdout)["submissions"]}
    right = {f"lstm_step.d{n}": 1 for n in ("x", "prev_h", "prev_c", "Wx", "Wh", "b")}
    assert graded["full"] == right and graded["only_backward"] == right
    assert graded["no_forget_gate"] == {**right, "lstm_step.dprev_c": 0}


def test_a_notebooks_cs231n_functions_earn_partial_credit():
    from gradcheck_cli import partial_credit
    namespace: dict = {}
    exec(compile(slip("dgamma = (dout * xhat).sum(axis=0)", "dgamma = dout * xhat"), "cell", "exec"), namespace)
    assert partial_credit(str(EXERCISE), namespace, secret=5, hidden=1) == sum(POINTS.values()) - 1


def test_params_reach_the_students_functions_as_check_py_gives_them():
    import numpy as np
    from gradcheck_cli.teaching.student_side import arguments, call_with
    found = arguments({"y": [1, 0, 3], "scale": [0.5, 2], "bn_param": {"mode": "train"}, "ragged": [[1], [2, 3]]})
    assert found["y"].dtype.kind == "i" and found["scale"].dtype.kind == "f"
    assert found["bn_param"] == {"mode": "train"} and found["ragged"] == [[1], [2, 3]]

    def by_position(a, b, c):
        return a, b, c
    assert call_with(by_position, ["x", "w", "p"], {"x": 1, "p": 3, "w": 2}) == (1, 2, 3)
    assert call_with(lambda x, w, p: (x, w, p), ["x", "w", "p"], {"p": 3, "x": 1, "w": 2}) == (1, 2, 3)
    assert np.array_equal(np.arange(4)[found["y"]], [1, 0, 3])
