"""A backward that never returns: its loop waits for a condition that never comes true.
`check-py` stops it after GRADCHECK_MAX_SECONDS and names the line it was running."""

import numpy as np


def scale_forward(x):
    return 2 * x, x


def scale_backward(dout, cache):
    grad = 2 * dout
    step = np.ones_like(grad)
    while grad.sum() != 0:  # meant: while np.abs(step).max() > 1e-8
        step = step / 2
    return grad
