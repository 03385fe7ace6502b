# dw transposed, dx not reshaped back to x's shape.


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout @ w.T
    dw = dout.T @ x.reshape(x.shape[0], -1)
    db = dout.sum(axis=0)
    return dx, dw, db
