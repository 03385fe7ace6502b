"""Forward and backward passes over a Graph. No gate-specific code: everything goes through the registry,
or, for the call of a user gate (a `Composite`), through its graphs: `gate_forward`, `gate_vjp` and
`gate_branch` are the one place the two kinds are told apart.

One evaluator (`_sweep`) serves the plain forward pass, small sub-graphs (a composite's body or
backward, an expectation) and the batched forward pass of the finite differences, where each row of
a leading axis carries its own perturbation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.errors import BackwardError, GradValueError
from ..gates.record import Gate
from ..language.graph import Composite, Graph, Node
from ..core.meter import active, count, gate_units
from ..gates.tensors import fmt_note
from .buffers import WorkBuffers

__all__ = ["BackwardError", "forward", "run_graph", "backward", "batched_forward", "jacobian"]

# another chain rule's VJP for one gate call: (node, upstream rows g, operands, output) -> per operand
LocalVjp = Callable[[Node, np.ndarray, list, Any], Sequence[Any]]


def _pad(a: np.ndarray, shape: tuple, n_rows: int) -> np.ndarray:
    """Give a batched operand of an elementwise gate the result's rank, so broadcasting lines up."""
    extra = len(shape) - (a.ndim - 1)
    return a.reshape((n_rows,) + (1,) * extra + a.shape[1:]) if extra > 0 else a


class BodyValues:
    """The values of every node of composites' bodies, by composite and operands, kept while one VJP
    through a body runs: a composite calling composites then runs each nested body once, not once per
    level of nesting. Made by the outermost `body_vjp` and handed down the passes it runs (`bodies=`),
    so that nothing outlives that VJP or is shared between checks."""

    def __init__(self) -> None:
        self._known: dict = {}

    def of(self, composite: Composite, args: list) -> list:
        """Every node of the composite's body on these (unbatched) operands, computed once."""
        key = (id(composite), tuple((np.asarray(a).dtype.str, np.asarray(a).tobytes()) for a in args))
        if key not in self._known:
            self._known[key] = forward(composite.body, dict(zip([n.id for n in composite.body.leaves()], args)),
                                       bodies=self)
        return self._known[key]


def body_values(composite: Composite, args: list, bodies: BodyValues | None = None) -> list:
    """Every node of a composite's body on these (unbatched) operands (kept in `bodies`, when given);
    a non-finite value raises GradValueError."""
    if bodies is not None:
        return bodies.of(composite, args)
    return forward(composite.body, dict(zip([n.id for n in composite.body.leaves()], args)))


def gate_forward(gate: Gate | Composite, args: list, attrs: dict, batched: bool = False, *,
                 bodies: BodyValues | None = None) -> np.ndarray:
    """A gate's forward: the registry's, or a composite's body run."""
    if not isinstance(gate, Composite):
        return gate.forward_on(args, attrs)
    if not batched and not any(np.iscomplexobj(a) for a in args):
        try:
            return body_values(gate, args, bodies)[gate.body.output]
        except GradValueError:
            pass  # undefined inside: its nan output is reported at the call, as for any gate
    return run_graph(gate.body, list(args), bodies=bodies)


def gate_vjp(gate: Gate | Composite, g: np.ndarray, args: list, out, attrs: dict, *,
             bodies: BodyValues | None = None) -> Sequence[Any]:
    """A gate's VJP for upstream rows g: the registry's, a composite's d lines, or backprop through
    its body when it has none."""
    if active():
        count("call")
        if isinstance(gate, Gate):
            count("element", int(np.size(g)) + sum(int(np.size(a)) for a in args))
            if gate.workspace is not None:
                count("window", g.shape[0] * int(gate.workspace([np.shape(a) for a in args], attrs)))
    if not isinstance(gate, Composite):
        return gate.vjp(g, args, out, attrs)
    if gate.backward is None:
        return body_vjp(gate, g, args, bodies=bodies)
    wanted = gate.backward_outputs()
    results = run_graph(gate.backward, list(args) + [out, g], outputs=wanted, bodies=bodies) if wanted else []
    return gate.gradients(results, g.shape[0])


def body_vjp(composite: Composite, g: np.ndarray, args: list, *, bodies: BodyValues | None = None) -> list:
    """Backprop through a composite's body, its d lines (if it has any) left out: per parameter."""
    bodies = BodyValues() if bodies is None else bodies  # the outermost VJP holds the body values
    try:
        adjoints = backward(composite.body, bodies.of(composite, args), seed=g, bodies=bodies)
    except BackwardError as err:  # a gate inside failed: its partial gradients are shaped for it, not us
        raise BackwardError(err.message, err.line, err.col) from None
    return [adjoints[n.id] for n in composite.body.leaves()]


def gate_branch(gate: Gate | Composite, args: list, attrs: dict) -> np.ndarray:
    """A kink gate's branch array; a composite's is its body's kink gates' branches, side by side."""
    if isinstance(gate, Composite):
        _, branches = run_graph(gate.body, list(args), collect_branches=True)
        return np.concatenate(branches, axis=-1)
    assert gate.branch is not None  # a kink gate
    return gate.branch(args, attrs)


def _count_call(node: Node, args: list, batched: list, rows) -> None:
    """The meter's counts for one gate call (a composite's too: running its body costs a call)."""
    count("call")
    if isinstance(node.gate, Gate):
        shapes = [] if node.gate.workspace is None else [np.shape(a)[1:] if b and rows else np.shape(a)
                                                         for a, b in zip(args, batched)]  # read by workspace only
        elements, windows = gate_units(node.gate, shapes, node.attrs, node.size, rows or 1)
        count("element", elements)
        count("window", windows)


def apply_gate(node: Node, args: list, batched: list, n_rows: int | None,
               bodies: BodyValues | None = None, buffers: WorkBuffers | None = None) -> np.ndarray:
    """A gate's forward on operands of which those flagged `batched` carry a leading row axis
    (`bodies`: composites' body values kept by a VJP through a body; `buffers`: where a batched
    result on real operands is written, when the gate can write into a given array)."""
    rows = n_rows if n_rows is not None and any(batched) else None
    if active():
        _count_call(node, args, batched, rows)
    assert node.gate is not None  # a gate node
    if rows is not None:  # then rows is n_rows
        if node.gate.elementwise:
            args = [_pad(a, node.shape, rows) if b else a for a, b in zip(args, batched)]
        gate = node.gate
        if buffers is not None and isinstance(gate, Gate) and gate.forward_into is not None:
            dtypes = {np.asarray(a).dtype for a in args}
            if dtypes <= _REAL or (dtypes <= _COMPLEX and gate.complex_forward is None):
                out = buffers.take((rows,) + node.shape, np.result_type(*dtypes))
                gate.forward_into(args, node.attrs, out)
                return _numbers_into(out)
        out = _numbers(gate_forward(node.gate, args, node.attrs, batched=True, bodies=bodies))
        return np.broadcast_to(out, (rows,) + node.shape)
    return _numbers(gate_forward(node.gate, args, node.attrs, bodies=bodies))


IMAG_LIMIT = 1e-6  # the complex step's rows: an imaginary part past this left the linear regime (H times a
                   # derivative is not small: exp(i·1e16) is no derivative), so it is poisoned with nan


_REAL = {np.dtype(float)}
_COMPLEX = {np.dtype(float), np.dtype(complex)}


def _numbers_into(out: np.ndarray) -> np.ndarray:
    """_numbers on a result written into a work buffer: the complex step's rows poisoned in place."""
    if out.dtype.kind == "c":  # (np.iscomplexobj, without its overhead: a work buffer is an ndarray)
        past = np.abs(out.imag) > IMAG_LIMIT
        if past.any():
            out[past] = complex(np.nan, np.nan)
    return out


def _numbers(out) -> np.ndarray:
    """A gate's result as float64, or complex128 on the complex step's rows (nan where it is not one)."""
    out = np.asarray(out)
    if out.dtype.kind != "c":  # (np.iscomplexobj of an ndarray)
        return out.astype(float, copy=False)
    out = out.astype(complex, copy=False)
    past = np.abs(out.imag) > IMAG_LIMIT
    return np.where(past, complex(np.nan, np.nan), out) if past.any() else out


def branch_of(node: Node, args: list, flags: list, n_rows: int | None) -> np.ndarray:
    """The gate's branch array, one flattened row per batch row (or one row when unbatched)."""
    args = [np.real(a) for a in args]  # on the complex step's rows the real part decides a branch
    assert node.gate is not None  # a gate node (with a kink)
    if n_rows is not None and node.gate.elementwise and any(flags):
        args = [_pad(a, node.shape, n_rows) if b else a for a, b in zip(args, flags)]
    b = np.asarray(gate_branch(node.gate, args, node.attrs))
    if n_rows is None or not any(flags):
        return b.reshape(1, -1)
    b = np.broadcast_to(b, np.broadcast_shapes(b.shape, (n_rows,) + (1,) * (b.ndim - 1)))
    return b.reshape(n_rows, -1)


def _sweep(graph: Graph, values: list, nodes, batched: dict, n_rows: int | None,
           inject: dict | None = None, centre_branches: list | None = None, kinks=None,
           branches: list | None = None, last_use: list | None = None, keep: int | None = None,
           bodies: BodyValues | None = None):
    """Evaluate the gates of `nodes` in order.

    Unbatched results go into `values`, batched ones into `batched` (node id -> (n_rows, *shape)).
    `inject` (node id -> [batches.Probe]: .rows, .flat, .delta) adds perturbations to a node's batched value. With `kinks`
    (a bool array per row), a row is flagged when a kink gate's branch differs from its branch in
    `centre_branches`. `branches` collects every kink gate's branch rows. With `last_use`,
    batched values no longer needed are dropped (all but `keep`). `bodies`: as apply_gate takes it.
    """
    for node in nodes:
        nid = node.id
        if node.gate is not None:
            flags = [i in batched for i in node.inputs]
            args = [batched[i] if f else values[i] for i, f in zip(node.inputs, flags)]
            if any(flags):
                batched[nid] = apply_gate(node, args, flags, n_rows, bodies)
            elif values[nid] is None:
                values[nid] = apply_gate(node, args, flags, None, bodies)
            if node.gate.has_kinks and (branches is not None or (kinks is not None and any(flags))):
                rows = branch_of(node, args, flags, n_rows)
                if branches is not None:
                    branches.append(rows)
                if kinks is not None and any(flags):
                    assert centre_branches is not None  # given with kinks
                    kinks |= (rows != centre_branches[nid]).any(axis=1)
        if inject is not None and nid in inject:
            if nid not in batched:
                batched[nid] = np.broadcast_to(values[nid], (n_rows,) + node.shape)
            value = batched[nid].astype(np.result_type(batched[nid], *[p.delta for p in inject[nid]]), order="C")
            flat = value.reshape(n_rows, -1)
            for p in inject[nid]:
                if p.flat is None:  # a dense perturbation: one full vector per row
                    flat[p.rows] += p.delta
                else:
                    flat[p.rows, p.flat] += p.delta
            batched[nid] = value
        if last_use is not None:
            for i in dict.fromkeys(node.inputs):
                if i in batched and last_use[i] <= nid and i != keep:
                    del batched[i]


def forward(graph: Graph, inputs: dict | None = None, *, bodies: BodyValues | None = None) -> list:
    """Every node's value at the given point; a non-finite value is an input error naming its node.

    `inputs` gives values for leaves by id (a composite's parameters); `bodies` as apply_gate takes it.
    """
    values: list = [None] * len(graph.nodes)
    for node in graph.nodes:
        if node.gate is None:
            values[node.id] = (inputs or {}).get(node.id, node.value)
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.gate is None:
                continue
            _sweep(graph, values, (node,), {}, None, bodies=bodies)
            if not np.isfinite(values[node.id]).all():
                raise _domain_error(graph, node, [values[i] for i in node.inputs], values[node.id])
    return values


def run_graph(graph: Graph, inputs: list, outputs: list | None = None, collect_branches: bool = False, *,
              bodies: BodyValues | None = None):
    """Evaluate a small graph (a composite's body or backward) on values for its leaves, in order.

    An input with more dimensions than its leaf carries a leading row axis; results that depend
    on it do too. Returns the output's value, or the values of `outputs` (node ids); with
    `collect_branches`, also the kink gates' branch arrays, one row each.
    """
    values: list = [None] * len(graph.nodes)
    batched: dict = {}
    n_rows = None
    for leaf, value in zip(graph.leaves(), inputs):
        if np.ndim(value) > len(leaf.shape):
            batched[leaf.id] = value
            n_rows = np.shape(value)[0]
        else:
            values[leaf.id] = value
    for node in graph.nodes:
        if node.kind == "literal":
            values[node.id] = node.value
    branches: list | None = [] if collect_branches else None
    with np.errstate(all="ignore"):
        _sweep(graph, values, graph.nodes[: graph.output + 1], batched, n_rows, branches=branches, bodies=bodies)
    wanted = [graph.output] if outputs is None else outputs
    results = [batched[i] if i in batched else values[i] for i in wanted]
    if branches is not None:  # collect_branches
        rows = [np.broadcast_to(b, (n_rows or 1, b.shape[1])) for b in branches]
        return results[0], rows
    return results[0] if outputs is None else results


def batched_forward(graph: Graph, values: list, probes: list, n_rows: int, centre_branches: list,
                    reads: dict | None = None, *, buffers: WorkBuffers | None = None):
    """Run the forward pass once for `n_rows` perturbed copies of the graph.

    Row r of the result is the output when the element named by row r's probe is nudged and
    everything downstream of it is recomputed; nodes upstream of every probe are shared. Only the
    nodes some row reaches are visited, each on only the rows that reach it (a thousand x[i] in one
    batch: each x[i] computes the rows that nudge its element, not the batch's, and an x[i] whose
    element no row nudges is not visited), so a batch costs what its rows change, not the whole graph.
    `reads`: a cache of the elements each gate with a `reads` rule picks (node id -> flat indices).
    Returns (outputs shaped (n_rows, *output.shape), kink flags shaped (n_rows,)): a flag is
    set when some gate with a kink switched branch in that row (`centre_branches` from `branch_rows`).
    `buffers`: work buffers the pass writes its batched values into (the output is never one of them).
    """
    inject: dict[int, list] = {}
    for p in probes:
        inject.setdefault(p.node, []).append(p)
    out_id = graph.output
    kinks = np.zeros(n_rows, dtype=bool)
    with np.errstate(all="ignore"):
        held = _sweep_rows(graph, values, inject, centre_branches, kinks, out_id, {} if reads is None else reads,
                           buffers)
    out = graph.nodes[out_id]
    if out_id not in held:  # no probe reaches the output
        return np.broadcast_to(values[out_id], (n_rows,) + out.shape), kinks
    rows, value = held[out_id]
    if rows.size == n_rows:
        return value, kinks
    full = np.empty((n_rows,) + out.shape, dtype=np.result_type(value, values[out_id]))
    full[...] = values[out_id]
    full[rows] = value
    return full, kinks


class _Nudged:
    """The rows of an injected node that nudge each of its elements (sparse probes only), sorted by element."""
    __slots__ = ("flat", "rows")

    def __init__(self, probes: list):
        pairs = [np.broadcast_arrays(p.rows, p.flat) for p in probes]  # a row may nudge several elements
        flat = np.concatenate([np.ravel(f) for _, f in pairs])
        rows = np.concatenate([np.ravel(r) for r, _ in pairs])
        order = np.argsort(flat, kind="stable")
        self.flat, self.rows = flat[order], rows[order]

    def reaching(self, elements: np.ndarray) -> np.ndarray:
        """The rows (sorted, each once) that nudge some of `elements` (sorted)."""
        lo = np.searchsorted(self.flat, elements, side="left")
        hi = np.searchsorted(self.flat, elements, side="right")
        if elements.size == 1:
            return np.unique(self.rows[lo[0]:hi[0]])
        keep = np.zeros(self.flat.size + 1, dtype=np.int64)
        np.add.at(keep, lo, 1)
        np.add.at(keep, hi, -1)
        return np.unique(self.rows[np.cumsum(keep[:-1]) > 0])


def _sweep_rows(graph: Graph, values: list, inject: dict, centre_branches: list, kinks: np.ndarray,
                keep: int, reads: dict, buffers: WorkBuffers | None = None) -> dict:
    """The nodes that some row reaches, up to `keep`, in order, on the rows that reach them:
    node id -> (rows (sorted), values (len(rows), *shape)). A gate runs on the union of its batched
    operands' rows, an operand lacking one of them taking its value at the point there; a gate that
    reads a few elements of an injected node (its `reads` rule) runs on the rows nudging those only.
    Values no longer read are dropped (all but `keep`'s). Visits are metered as `sweep`. Batched values
    are written into `buffers` where they can be, `keep`'s never (it outlives the pass)."""
    held: dict = {}
    nudged: dict = {}
    last_use = graph.last_uses
    consumers = graph.consumers
    queue = sorted(inject)
    queued = set(queue)
    visits = copies = 0
    while queue:
        nid = heapq.heappop(queue)
        visits += 1
        node = graph.nodes[nid]
        pool = buffers if nid != keep else None
        if node.gate is not None:
            flags = [i in held for i in node.inputs]
            if any(flags):
                rows, args = _operands(graph, node, held, nudged, values, flags, reads, buffers)
                if rows is not None:
                    held[nid] = (rows, apply_gate(node, args, flags, rows.size, buffers=pool))
                    if node.gate.has_kinks:
                        kinks[rows] |= (branch_of(node, args, flags, rows.size) != centre_branches[nid]).any(axis=1)
        if nid in inject:
            copies += _inject(node, inject[nid], held, nudged, values, pool)
        if nid in held:
            for c in (consumers[nid] if nid not in nudged else _reached(graph, nid, nudged[nid], reads)):
                if c <= keep and c not in queued:
                    queued.add(c)
                    heapq.heappush(queue, c)
        for i in dict.fromkeys(node.inputs):
            if i in held and last_use[i] <= nid and i != keep:
                del held[i]
                nudged.pop(i, None)
    if active():
        count("sweep", visits)
        count("element", copies)
    return held


def _inject(node: Node, probes: list, held: dict, nudged: dict, values: list, pool: WorkBuffers | None = None) -> int:
    """Add the probes' perturbations to a node's rows (its value at the point where no earlier row
    reached it; then, sparse probes, which rows nudge which element); returns the elements copied."""
    nid = node.id
    mine = _sorted_unique(np.concatenate([p.rows for p in probes]) if len(probes) > 1 else probes[0].rows)
    if nid in held:
        rows = _union(held[nid][0], mine)
        base = _on_rows(held[nid], rows, values[nid])
    else:
        rows, base = mine, np.broadcast_to(values[nid], (mine.size,) + node.shape)
        if all(p.flat is not None for p in probes):
            nudged[nid] = _Nudged(probes)
    dtype = np.result_type(base, *[p.delta for p in probes])
    if pool is None:
        value = base.astype(dtype, order="C")
    else:  # a work buffer (`pool`: none for the output, which outlives the pass)
        value = pool.take(base.shape, dtype)
        np.copyto(value, base)
    flat = value.reshape(rows.size, -1)
    for p in probes:
        at = np.searchsorted(rows, p.rows)
        if p.flat is None:  # a dense perturbation: one full vector per row
            flat[at] += p.delta
        else:
            flat[at, p.flat] += p.delta
    held[nid] = (rows, value)
    return value.size


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted union of two sorted arrays of distinct rows; joined without sorting where one lies wholly
    before the other (a deep chain nudging node after node: each node's rows follow those reaching it)."""
    if not a.size or not b.size:
        return a if b.size == 0 else b
    if a[-1] < b[0]:
        return np.concatenate((a, b))
    if b[-1] < a[0]:
        return np.concatenate((b, a))
    return _sorted_unique(np.concatenate((a, b)))


def _sorted_unique(rows: np.ndarray) -> np.ndarray:
    """np.unique of an integer array (its distinct values, sorted), without its overhead; an array
    already strictly increasing is returned as it is (row arrays are never written to)."""
    if rows.size < 2 or bool((rows[1:] > rows[:-1]).all()):
        return rows
    rows = np.sort(rows)
    keep = np.empty(rows.size, dtype=bool)
    keep[0] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    return rows[keep]


def _reached(graph: Graph, nid: int, nudged: _Nudged, reads: dict) -> list:
    """The consumers of an injected node that its rows reach: those with a `reads` rule only where
    they read a nudged element (a thousand x[i] and a batch nudging ten elements of x: ten)."""
    key = ("readers", nid)
    if key not in reads:
        others, picks, owners = [], [], []
        for c in graph.consumers[nid]:
            node = graph.nodes[c]
            if len(node.inputs) == 1 and isinstance(node.gate, Gate) and node.gate.reads is not None:
                picks.append(_picked(graph, node, reads))
                owners.append(np.full(picks[-1].size, c, dtype=np.int64))
            else:
                others.append(c)
        flat = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        order = np.argsort(flat, kind="stable")
        reads[key] = (others, flat[order], owner[order])
    others, flat, owner = reads[key]
    if not flat.size:
        return others
    elements = np.unique(nudged.flat)
    lo, hi = np.searchsorted(flat, elements, side="left"), np.searchsorted(flat, elements, side="right")
    hit = np.concatenate([owner[a:b] for a, b in zip(lo.tolist(), hi.tolist()) if b > a] or [owner[:0]])
    return others + np.unique(hit).tolist()


def _picked(graph: Graph, node: Node, reads: dict) -> np.ndarray:
    """The flat elements of its operand that a gate with a `reads` rule picks (kept in `reads`)."""
    if node.id not in reads:
        assert isinstance(node.gate, Gate) and node.gate.reads is not None
        reads[node.id] = np.asarray(node.gate.reads([graph.nodes[node.inputs[0]].shape], node.attrs), dtype=np.int64)
    return reads[node.id]


def _operands(graph: Graph, node: Node, held: dict, nudged: dict, values: list, flags: list, reads: dict,
              buffers: WorkBuffers | None = None):
    """The rows a gate runs on and its operands there; (None, None) when no row reaches what it reads."""
    if len(node.inputs) == 1 and node.inputs[0] in nudged and isinstance(node.gate, Gate) and node.gate.reads is not None:
        i = node.inputs[0]
        rows = nudged[i].reaching(_picked(graph, node, reads))
        if rows.size == 0:
            return None, None
        have, value = held[i]
        return rows, [value[np.searchsorted(have, rows)]]
    sets = [held[i][0] for i, f in zip(node.inputs, flags) if f]
    rows = sets[0]
    if any(other is not rows and not np.array_equal(other, rows) for other in sets[1:]):
        rows = _sorted_unique(np.concatenate(sets))
    return rows, [_on_rows(held[i], rows, values[i], buffers) if f else values[i] for i, f in zip(node.inputs, flags)]


def _on_rows(entry: tuple, rows: np.ndarray, centre, buffers: WorkBuffers | None = None) -> np.ndarray:
    """A held (rows, values) on `rows` (a superset): the point's value on the rows it lacks."""
    have, value = entry
    if have is rows or have.size == rows.size:
        return value
    shape, dtype = (rows.size,) + np.shape(value)[1:], np.result_type(value, centre)
    out = np.empty(shape, dtype=dtype) if buffers is None else buffers.take(shape, dtype)
    if have.size and rows[have.size - 1] == have[-1]:  # `have` is rows' first part (both sorted, have ⊆ rows)
        out[:have.size] = value
        out[have.size:] = centre
        return out
    out[...] = centre
    out[np.searchsorted(rows, have)] = value
    return out


def branch_rows(graph: Graph, values: list) -> list:
    """Each kink gate's branch array at the point (flattened, one row), by node id; None elsewhere."""
    rows: list = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.gate is not None and node.gate.has_kinks:
                rows[node.id] = branch_of(node, [values[i] for i in node.inputs], [False] * len(node.inputs), None)
    return rows


def _domain_error(graph: Graph, node: Node, args: list, out: np.ndarray) -> GradValueError:
    bad = "nan (undefined)" if np.isnan(out).any() else "infinite (an overflow or a pole)"
    assert node.gate is not None  # a gate node
    why = f"; {node.label} is defined for {node.gate.domain}" if node.gate.domain else ""
    if bad.startswith("infinite") and _overflows(node, args):
        bad, why = "infinite: it overflows, beyond the largest float (±1.8e308)", ""
    inputs = ", ".join(f"{graph.nodes[i].name} = {_short(a)}" for i, a in zip(node.inputs, args))
    msg = f"'{node.name}' is {bad} at this point{why}"
    if inputs:
        msg += f"; its inputs: {inputs}"
    return GradValueError(msg, node.pos.line, node.pos.col)


def _overflows(node: Node, args: list) -> bool:
    """Infinite from finite inputs, and still infinite with every input moved a little: an overflow
    (a pole, like 1/x at 0, is infinite only on the pole itself)."""
    if not all(np.all(np.isfinite(a)) for a in args):
        return False
    assert node.gate is not None  # a gate node
    try:
        with np.errstate(all="ignore"):
            moved = [np.asarray(a, dtype=float) + 1e-3 * np.maximum(1.0, np.abs(a)) for a in args]
            again = np.asarray(gate_forward(node.gate, moved, node.attrs), dtype=float)
            back = [np.asarray(a, dtype=float) - 1e-3 * np.maximum(1.0, np.abs(a)) for a in args]
            again2 = np.asarray(gate_forward(node.gate, back, node.attrs), dtype=float)
    except Exception:  # noqa: BLE001 - a gate that cannot even run moved inputs says nothing
        return False
    return bool(np.isinf(again).any() and np.isinf(again2).any())


def _short(value) -> str:
    v = np.asarray(value)
    if v.ndim == 0:
        return fmt_note(v)
    return f"array of shape {v.shape}"


def backward(graph: Graph, values: list, errors: dict | None = None, seed: np.ndarray | None = None,
             on_edge: Callable[[Node, int, np.ndarray, np.ndarray, bool], None] | None = None,
             on_node: Callable[[Node, np.ndarray], None] | None = None,
             local: LocalVjp | None = None, bodies: BodyValues | None = None) -> list:
    """Adjoints of every node, shaped (K, *node.shape) where K = output size (rows of the Jacobian).

    Fan-out accumulates: a node's adjoint is the sum over its consumers. `seed` replaces the
    identity at the output (a user gate's upstream gradient). A gate whose backward raises
    BackwardError is recorded in `errors` (node id -> error) and passes NaN to its inputs.
    `on_node(node, adjoint)` is called for every gate reached, before its backward runs, and
    `on_edge(node, slot, contribution, total, accumulated)` for every edge, in backward order.
    `local(node, g, args, out)` replaces the gates' own VJPs (another valid chain rule at a kink);
    `bodies`: composites' body values kept by a VJP through a body (body_vjp).
    """
    out = graph.nodes[graph.output]
    if seed is None:
        seed = np.eye(out.size).reshape((out.size,) + out.shape)
    k = seed.shape[0]
    adjoints: list = [None] * len(graph.nodes)
    adjoints[out.id] = seed
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: out.id + 1]):
            g = adjoints[node.id]
            if g is None or node.gate is None:
                continue
            if on_node is not None:
                on_node(node, g)
            args = [values[i] for i in node.inputs]
            try:
                grads = (local(node, g, args, values[node.id]) if local is not None
                         else gate_vjp(node.gate, g, args, values[node.id], node.attrs, bodies=bodies))
            except BackwardError as err:
                if errors is None:
                    raise
                errors[node.id] = err
                grads = err.grads or [np.full((k,) + np.shape(a), np.nan) for a in args]
            for slot, (i, gi) in enumerate(zip(node.inputs, grads)):
                shape = (k,) + graph.nodes[i].shape
                if type(gi) is not np.ndarray or gi.shape != shape:  # (one already shaped is read as it is)
                    gi = np.broadcast_to(gi, shape)
                accumulated = adjoints[i] is not None
                adjoints[i] = adjoints[i] + gi if accumulated else gi.copy()
                if on_edge is not None:
                    on_edge(node, slot, gi, adjoints[i], accumulated)
    for node in graph.nodes:
        if adjoints[node.id] is None:
            adjoints[node.id] = np.zeros((k,) + node.shape)
    return adjoints


def jacobian(graph: Graph, adjoint: np.ndarray, node: Node) -> np.ndarray:
    """A node's adjoint as the gradient (scalar output) or Jacobian (output.shape + node.shape)."""
    out = graph.nodes[graph.output]
    return adjoint.reshape(out.shape + node.shape)
