"""gradcheck: check backpropagation at every node against finite differences and SymPy."""

__version__ = "0.1.0"

__all__ = ["check", "check_file", "check_paths", "GradcheckError", "__version__"]


def __getattr__(name):
    # Lazy: `gradcheck --help` must not pay for numpy and sympy.
    if name in ("check", "check_file", "check_paths"):
        from . import checker as _check
        return getattr(_check, name)
    if name == "GradcheckError":
        from .errors import GradcheckError
        return GradcheckError
    raise AttributeError(name)
