"""The memory layouts a torch target's backward is called in (torch_layouts.py runs them), by name,
and the constants of the layouts' and the repeated runs' comparison. Imports no torch: the command
line reads `--layouts` with it."""

from __future__ import annotations

from enum import Enum

from ..core.errors import UsageError, did_you_mean


class Layout(str, Enum):
    """A layout of the upstream gradient (grad_output) and of each differentiated input."""
    CONTIGUOUS = "contiguous"        # the layout torch.autograd.gradcheck feeds; run RUNS times (the spread)
    TRANSPOSED = "transposed"        # a transposed (2-d) or permuted (n-d) non-contiguous view
    EXPANDED = "expanded"            # stride 0: grad_output a scalar expanded (behind y.sum()), an input a row expanded
    OFFSET = "offset"                # contiguous, at a storage offset inside a larger storage
    CHANNELS_LAST = "channels-last"  # 4-d tensors only
    GAPPED = "gapped"                # rows of a wider tensor (a column slice, torch.cat's part): gaps between rows

    def __str__(self) -> str:
        return self.value


ALL = tuple(Layout)
RUNS = 2  # the backward's calls at the same point, contiguous layout, to see a run-to-run spread
# Two results the same up to rounding: a relative difference (to the gradient's largest element) at most
# ROUNDING_ULPS units in the last place of float64 (a layout may change a reduction's order, not its value).
ROUNDING_ULPS = 1024
ROUNDING = ROUNDING_ULPS * 2.0 ** -52   # 2.3e-13
SPREAD_FACTOR = 4.0  # a layout's difference is allowed SPREAD_FACTOR × the run-to-run spread, when that is larger


def parse(text: str | None) -> tuple[Layout, ...]:
    """`--layouts` / `layouts=`: "all" (the default, None), "none", or names separated by commas
    (contiguous, transposed, expanded, offset, channels-last, gapped). Raises UsageError."""
    if text is None:
        return ALL
    if not isinstance(text, str):
        text = ",".join(str(t) for t in text)
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return ALL
    if words == ["none"]:
        return ()
    known = [str(layout) for layout in ALL]
    chosen = []
    for word in words:
        if word not in known:
            raise UsageError(f"--layouts: unknown layout '{word}'" + did_you_mean(word, known + ["all", "none"])
                             + f" (known: {', '.join(known)}; or all, none)")
        chosen.append(Layout(word))
    if not chosen:
        raise UsageError("--layouts: give layouts separated by commas, or all, or none")
    return tuple(dict.fromkeys(chosen))


def flag(chosen: tuple[Layout, ...]) -> str | None:
    """The `--layouts` value that chooses `chosen` (None for the default, all)."""
    if set(chosen) == set(ALL):
        return None
    return ",".join(str(layout) for layout in chosen) if chosen else "none"
