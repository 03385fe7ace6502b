# An affine layer, CS231n assignment 2: write affine_backward.
# points: affine.dx=2 affine.dw=2 affine.db=1
# shapes: affine x=4,2,3 w=6,5 b=5


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db
