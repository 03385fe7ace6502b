"""JSON, schema 1."""

from __future__ import annotations

import json

from ..report import RunReport


def render_json(run: RunReport) -> str:
    return json.dumps(run.to_dict(), indent=2, allow_nan=False)
