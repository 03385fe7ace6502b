"""CS231n's other conventions (assignment 3 `rnn_layers.py`, assignment 1 losses), each right:
several outputs then the cache, an index argument, losses that return their own gradient.

    gradcheck check-py examples/python/rnn_layers.py::lstm_step --shape x=3,4 --shape prev_h=3,5 \
        --shape prev_c=3,5 --shape Wx=4,20 --shape Wh=5,20 --shape b=20
    gradcheck check-py examples/python/rnn_layers.py::word_embedding --param x='[[4, 3, 3], [4, 2, 3]]' --shape W=5,3
    gradcheck check-py examples/python/rnn_layers.py::svm_loss --shape x=4,5 --param y='[1, 0, 4, 2]'
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    dz = dnext_h * (1 - next_h ** 2)
    return dz @ Wx.T, dz @ Wh.T, x.T @ dz, prev_h.T @ dz, dz.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, caches, prev = np.zeros((N, T, h0.shape[1])), [], h0
    for t in range(T):
        prev, cache = rnn_step_forward(x[:, t], prev, Wx, Wh, b)
        h[:, t] = prev
        caches.append(cache)
    return h, caches


def rnn_backward(dh, cache):
    x0, _, Wx, Wh, _ = cache[0]
    N, T, _ = dh.shape
    dx, dWx, dWh = np.zeros((N, T, x0.shape[1])), np.zeros_like(Wx), np.zeros_like(Wh)
    db, dprev = np.zeros(Wh.shape[0]), np.zeros((N, Wh.shape[0]))
    for t in reversed(range(T)):
        dx[:, t], dprev, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev, cache[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev, dWx, dWh, db


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    t = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - t ** 2)
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * t * o * (1 - o), dc * i * (1 - g ** 2)])
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dprev_c = dc * f
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def word_embedding_forward(x, W):
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def svm_loss(x, y):
    N = x.shape[0]
    correct = x[np.arange(N), y]
    margins = np.maximum(0, x - correct[:, None] + 1.0)
    margins[np.arange(N), y] = 0
    loss = margins.sum() / N
    pos = (margins > 0).astype(float)
    pos[np.arange(N), y] -= pos.sum(axis=1)
    dx = pos / N
    return loss, dx


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    loss = -logp[np.arange(N), y].mean()
    dx = np.exp(logp)
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def temporal_softmax_loss(x, y, mask):
    N, T, V = x.shape
    flat = x.reshape(N * T, V)
    shifted = flat - flat.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    m = np.asarray(mask, dtype=float).ravel()
    loss = -(m * logp[np.arange(N * T), np.ravel(y)]).sum() / N
    dx = np.exp(logp)
    dx[np.arange(N * T), np.ravel(y)] -= 1
    dx *= m[:, None] / N
    return loss, dx.reshape(N, T, V)
