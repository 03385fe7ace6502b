"""How a report shows itself in Jupyter: report objects ask this hook for their MIME bundle, and the
package registers the notebook face's renderer here (so data never imports a face)."""

from __future__ import annotations

RENDERER = None  # obj -> {mime type: text}, set by gradcheck_cli/__init__.py


def bundle(obj) -> dict | None:
    """The object's MIME bundle (HTML and plain text), or None when no renderer is registered."""
    return None if RENDERER is None else RENDERER(obj)


class Displayed:
    """A mixin: Jupyter (IPython's display) calls `_repr_mimebundle_` to show the object."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        return bundle(self)
