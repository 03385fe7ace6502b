"""The same CS231n layers with the classic mistakes: each backward has one bug.

    gradcheck check-py examples/python/layers_wrong.py::affine --shape x=10,20,3 --shape w=60,5 --shape b=5
"""

import numpy as np

from layers import affine_forward, batchnorm_forward, conv_forward_naive, relu_forward  # noqa: F401


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.mean(axis=0)  # bug: the bias is added to every row, so its gradient is the sum
    return dx, dw, db


def relu_backward(dout, cache):
    x = cache
    dx = (x > 0).astype(float)  # bug: forgets the upstream gradient (right only when dout is all ones)
    return dx


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0)) / (n * std)  # bug: drops the path through the variance
    return dx, dgamma, dbeta


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = xp[:, :, i * stride:i * stride + hh, j * stride:j * stride + ww]
            dw += np.tensordot(dout[:, :, i, j], window, axes=([0], [0]))
            dxp[:, :, i * stride:i * stride + hh, j * stride:j * stride + ww] += \
                np.tensordot(dout[:, :, i, j], w[:, :, ::-1, ::-1], axes=([1], [0]))  # bug: flipped kernel
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, db


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):  # right, but it calls the wrong relu_backward and affine_backward above
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db
