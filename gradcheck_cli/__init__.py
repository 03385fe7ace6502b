"""gradcheck: check backpropagation at every node against finite differences and SymPy."""

__version__ = "0.1.0"

__all__ = ["check", "check_file", "check_paths", "check_layer", "check_function", "check_loss", "load", "Settings",
           "GradcheckError", "partial_credit", "__version__"]

_LAZY = {  # name -> module: `gradcheck --help` must not pay for numpy and sympy
    "check": "checking.checker", "check_file": "checking.files", "check_paths": "checking.files",
    "load": "language.frontend", "Settings": "core.settings", "GradcheckError": "core.errors",
    "check_layer": "python.pycheck", "check_function": "python.pycheck", "check_loss": "python.pycheck",
    "partial_credit": "teaching.grading",
}


def _notebook_bundle(obj):
    """A report's HTML and text for Jupyter (the notebook face, imported only when a report is shown)."""
    from .notebook import bundle
    return bundle(obj)


from .core import display as _display  # noqa: E402 - a tiny module: reports show themselves in Jupyter through it

_display.RENDERER = _notebook_bundle


def load_ipython_extension(ipython):
    """`%load_ext gradcheck_cli`: the `%%gradcheck` cell magic and `%gradcheck` line magic."""
    from .notebook import register
    register(ipython)


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
