"""Building a latency table: every distinct op and sum of a supernet timed once, the fixed part calibrated.

Steps: one forward pass records the input shape of every Choice and the
operand shapes of every sum; each distinct (op, shapes) is timed as its
marginal cost (:mod:`gmgraph.latency.ops`), as are an InputChoice's combinations
and the plain nodes it may leave unread (:mod:`gmgraph.latency.input_choices`); ``calibration`` architectures
(the quickest and the slowest of 200 random ones by those times, then random ones) are derived
and timed end to end (in turns, three rounds): the fixed part is the median of
(measured - sum of their op and sum times), and a line through them is the
correction ``predict`` applies by default. The table is then cached
under its key (:mod:`gmgraph.latency.cache`); the same key later loads it
without timing anything::

    >>> import tempfile, torch, gmgraph
    >>> from torch import nn
    >>> from gmgraph.choice import Choice
    >>> gm = gmgraph.trace(nn.Sequential(nn.Linear(4, 4), Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, "act")))
    >>> from gmgraph.latency import LatencyTable
    >>> table = LatencyTable.build(gm, (4,), cache_dir=tempfile.mkdtemp(), calibration=2, runs=5, quiet=True)
    >>> sorted((e["label"], e["op"]) for e in table.entries)
    [('act', 'relu'), ('act', 'tanh')]

The table format (:mod:`gmgraph.latency.table`) sits below this module: ``LatencyTable.build`` calls
:func:`build_table` with its class, so this module never imports the format back (no cycle).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

import numpy as np
import torch
from torch import fx, nn

from gmgraph.choice import Choice
from gmgraph.config import check_positive_int
from gmgraph.errors import ConfigError, FileError, SpaceError
from gmgraph.graph import choices, sample_from, space
from gmgraph.latency import cache
from gmgraph.latency.input_choices import annotate, timing_specs
from gmgraph.latency.measure import check_shape, check_timing, measure_runner, resolve_clock
from gmgraph.latency.nested import inner_runs, nested_choices, plain_copy
from gmgraph.latency.ops import marginal_inputs_ms, marginal_ms, marginal_sum_ms, node_shapes
from gmgraph.latency.runtimes import RUNTIMES, check_runtime, runtime_version
from gmgraph.liveness import dataflow
from gmgraph.passes.derive import derive
from gmgraph.progress import Progress, log

if TYPE_CHECKING:  # for annotations only: the class comes in as build_table's argument
    from gmgraph.latency.table import LatencyTable

CALIBRATION_ROUNDS = 3
ANCHOR_POOL = 200


def build_table(
    table_class: type[LatencyTable],
    supernet: fx.GraphModule,
    input_shape: Sequence[int],
    *,
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch: int = 1,
    cache_dir: str | None = None,
    quiet: bool = False,
    calibration: int = 16,
    seed: int = 0,
    warmup: int = 5,
    runs: int = 20,
    max_spread: float = 0.1,
    attempts: int = 3,
    clock: str = "auto",
    rebuild: bool = False,
    stream: TextIO | None = None,
) -> LatencyTable:
    """The latency table of ``supernet`` at inputs ``(batch, *input_shape)`` on ``runtime``.

    Args:
        table_class: the class to fill (``LatencyTable``; :meth:`LatencyTable.build` passes its own).
        supernet: a traced supernet (``gmgraph.trace``); it is not changed.
        input_shape: one input without the batch dimension, e.g. ``(1, 8, 8)``.
        runtime, threads, batch: the target (see :func:`gmgraph.latency.measure`).
        cache_dir: folder of cached tables (default ``$GMGRAPH_CACHE/latency`` or ``~/.cache/gmgraph/latency``).
        quiet: no progress on stderr (``stream``, default stderr).
        calibration: archs timed end to end to estimate the fixed part and fit the correction: the
            quickest and the slowest by the op times of 200 random archs, then random ones (all drawn
            with ``seed``).
        warmup, runs, max_spread, attempts, clock: how each timing is taken (see ``measure``).
        rebuild: measure again even when the cache holds this table.

    Timings that stay unstable are kept, listed in ``table.unstable`` and reported on ``stream``;
    such a table is not cached, so the next build (on a quieter machine) measures again.

    Raises:
        ConfigError: a bad argument. SpaceError: Choices sharing a label, op and input
        shape that differ (the table keys ops by those three); an InputChoice inside another
        Choice's op (:mod:`gmgraph.latency.input_choices`).
    """
    check_timing(warmup=warmup, runs=runs, max_spread=max_spread, attempts=attempts, threads=threads)
    clock = resolve_clock(clock, check_runtime(runtime), threads)
    shape = check_shape(input_shape)
    check_positive_int("batch", batch)
    check_positive_int("calibration", calibration)
    if not isinstance(supernet, fx.GraphModule):
        raise ConfigError(f"build a latency table from a traced supernet (gmgraph.trace(model)), "
                          f"not {type(supernet).__name__}")
    device = next((p.device for p in supernet.parameters()), torch.device("cpu"))
    shapes = node_shapes(supernet, torch.zeros((batch, *shape), device=device))
    fields = cache.key_fields(
        supernet=cache.fingerprint(supernet, shapes), input_shape=shape, batch=batch, runtime=runtime,
        version=runtime_version(runtime), threads=threads,
        method={"calibration": calibration, "seed": seed, "clock": clock})
    path = cache.table_path(cache.cache_dir(cache_dir), fields)
    if not rebuild:
        table = _cached(table_class, path, fields, quiet, stream)
        if table is not None:
            return table
    timing = {"runtime": runtime, "threads": threads, "warmup": warmup, "runs": runs, "max_spread": max_spread,
              "attempts": attempts, "clock": clock}
    table = _measure(table_class, supernet, shapes, fields, timing, calibration, seed, quiet, stream)
    if table.unstable:  # kept out of the cache: the next build measures again
        log(f"latency table: {len(table.unstable)} timing(s) stayed unstable (spread > {max_spread:g}): "
            f"{', '.join(table.unstable[:5])}{' ...' if len(table.unstable) > 5 else ''}; the table is not cached",
            stream=stream, quiet=quiet)
    else:
        table.save(path)
    return table


def _cached(table_class: type[LatencyTable], path, fields, quiet: bool, stream) -> LatencyTable | None:
    data, problem = cache.read(path, fields)
    if data is not None:
        try:
            return table_class.from_dict(data)
        except FileError as exc:
            problem = str(exc)
    if problem is not None:
        log(f"latency table {path} cannot be used ({problem}): rebuilding it", stream=stream, quiet=quiet)
    return None


def _measure(table_class: type[LatencyTable], gm, shapes, fields, timing, calibration, seed, quiet,
             stream) -> LatencyTable:
    start = time.perf_counter()
    flow = _annotated_flow(gm, shapes)
    signatures, ops, inner = _signatures(gm, flow)
    picks, nodes = timing_specs(gm, flow, shapes, _reference(gm))
    sums = sorted({tuple(tuple(s) for s in n["shapes"]) for n in flow if n["kind"] == "sum" and n.get("shapes")})
    distinct = {spec[0] for spec in [*picks.values(), *nodes.values()]}
    bar = Progress(f"latency table ({timing['runtime']}, {timing['threads']} thread(s), batch {fields['batch']})",
                   total=len(ops) + len(distinct) + len(sums) + calibration, stream=stream, quiet=quiet)
    entries = _time_ops(signatures, ops, inner, timing, bar)
    pick_entries, node_entries = _time_input_choices(picks, nodes, timing, bar)
    entries += pick_entries
    sum_entries = _time_sums(sums, timing, bar)
    shares = timing["runtime"] == "onnxruntime"  # its common-subexpression elimination merges equal pure ops
    raw = table_class(key=fields, space={k: list(v) for k, v in space(gm).items()}, flow=flow, fixed_ms=0.0,
                       entries=entries, sums=sum_entries, nodes=node_entries, shares_pure_ops=shares)
    runs = _calibrate(gm, _calibration_archs(gm, raw, calibration, seed), raw, fields, timing, bar)
    fixed = statistics.median(r["measured_ms"] - r["ops_ms"] for r in runs)
    bar.close(fixed_ms=fixed)
    return table_class(key=fields, space=raw.space, flow=flow, fixed_ms=fixed, entries=entries, sums=sum_entries,
                        nodes=node_entries, calibration=runs, correction=fit_correction(runs), shares_pure_ops=shares,
                        build_seconds=time.perf_counter() - start)


def _time_ops(signatures: dict, ops: dict, inner: dict, timing: dict, bar: Progress) -> list[dict]:
    """The table's entries: each distinct op timed once, its time given to every (label, op, shape) it runs as.

    An op holding nested Choices gets its own part: its time less its nested Choices' times at the
    reference (``inner``: (label, op, shape) -> the keys of the Choices nested directly in it).
    """
    timed: dict[tuple, tuple[float, bool]] = {}
    for signature, (module, in_shape) in ops.items():
        x = torch.randn(in_shape, generator=torch.Generator().manual_seed(0))
        timed[signature] = marginal_ms(module, x, **timing)
        bar.update(op=signature[0][:24])
    total = {key: timed[sig][0] for key, sig in signatures.items()}
    own = {key: max(0.0, ms - sum(total[k] for k in inner.get(key, ()))) for key, ms in total.items()}
    return [{"label": label, "op": op, "shape": list(in_shape), "ms": own[(label, op, in_shape)],
             "stable": timed[sig][1], "signature": cache.key_hash({"signature": str(sig)})}
            for (label, op, in_shape), sig in signatures.items()]


def _time_input_choices(picks: dict, nodes: dict, timing: dict, bar: Progress) -> tuple[list[dict], list[dict]]:
    """Entries of the InputChoices' ops and of the plain nodes they may leave unread
    (:func:`~gmgraph.latency.input_choices.timing_specs`), each distinct computation timed once."""
    timed: dict[tuple, tuple[float, bool]] = {}
    for signature, module, in_shapes in [*picks.values(), *nodes.values()]:
        if signature not in timed:
            timed[signature] = marginal_inputs_ms(module, in_shapes, **timing)
            bar.update(op=signature[0])

    def entry(signature) -> dict:
        ms, stable = timed[signature]
        return {"ms": ms, "stable": stable, "signature": cache.key_hash({"signature": str(signature)})}

    return ([{"label": label, "op": op, "shape": list(shape), **entry(spec[0])}
             for (label, op, shape), spec in picks.items()],
            [{"name": name, **entry(spec[0])} for name, spec in nodes.items()])


def _time_sums(sums: list[tuple], timing: dict, bar: Progress) -> list[dict]:
    out = []
    for operand_shapes in sums:
        ms, stable = marginal_sum_ms(operand_shapes, **timing)
        out.append({"shapes": [list(s) for s in operand_shapes], "ms": ms, "stable": stable})
        bar.update(op="sum")
    return out


def fit_correction(runs: Sequence[dict]) -> dict | None:
    """The line ``measured = offset + scale * ops`` with the least mean absolute *relative* error over
    the calibration timings (a linear program): relative, as latencies are judged; absolute values, so
    that one disturbed timing moves it little. None when it is undetermined (fewer than 3 timings, ops
    times too alike, or a slope of 0 or less, which only noise gives).

    >>> line = fit_correction([{"ops_ms": x, "measured_ms": 1 + 2 * x} for x in (1.0, 2.0, 4.0)])
    >>> round(line["offset_ms"], 6), round(line["scale"], 6)
    (1.0, 2.0)
    >>> fit_correction([{"ops_ms": 1.0, "measured_ms": 2.0}] * 3) is None
    True
    """
    x = np.array([r["ops_ms"] for r in runs], dtype=float)
    y = np.array([r["measured_ms"] for r in runs], dtype=float)
    if len(runs) < 3 or x.max() - x.min() <= 0.05 * np.abs(x).max() or not (y > 0).all():
        return None
    from scipy.optimize import linprog

    # variables: offset, scale, t_1..t_n >= |(offset + scale * x_i) / y_i - 1|; minimise sum(t)
    n = len(x)
    rows = np.c_[1 / y, x / y]
    a_ub = np.block([[rows, -np.eye(n)], [-rows, -np.eye(n)]])
    b_ub = np.r_[np.ones(n), -np.ones(n)]
    cost = np.r_[0.0, 0.0, np.ones(n)]
    bounds = [(None, None), (None, None)] + [(0, None)] * n
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if not result.success or not result.x[1] > 0:
        return None
    return {"offset_ms": float(result.x[0]), "scale": float(result.x[1])}


def _annotated_flow(gm: fx.GraphModule, shapes: dict) -> list[dict]:
    """:func:`dataflow` with each Choice's input shape, each sum's operand shapes, and the Choices
    nested in a Choice's ops (``nested``, :func:`~gmgraph.latency.nested.nested_choices`), if any."""
    flow = dataflow(gm)
    annotate(gm, flow, shapes)  # InputChoices: what each op reads
    targets = {n.name: n.target for n in gm.graph.nodes}
    reference = _reference(gm)
    for node in flow:
        if node["kind"] == "choice" and "picks" not in node:
            node["shape"] = list(shapes[node["inputs"][0]])
            _check_shapes_kept(gm.get_submodule(targets[node["name"]]), tuple(node["shape"]), reference)
            nested = nested_choices(gm.get_submodule(targets[node["name"]]), node["shape"], reference)
            if nested:
                node["nested"] = nested
        elif node["kind"] == "sum" and all(o in shapes for o in node["operands"]):
            node["shapes"] = [list(shapes[o]) for o in node["operands"]]
    return flow


def _reference(gm: nn.Module) -> dict[str, str]:
    """Every label at its first op: the arch :func:`node_shapes` runs, and nested Choices' reference."""
    return {label: group[0].names[0] for label, group in choices(gm).items()}


def _signatures(gm: fx.GraphModule, flow: list[dict]) -> tuple[dict[tuple, tuple], dict[tuple, tuple], dict]:
    """(label, op, input shape) -> signature; signature -> (the plain module to time, its input shape);
    and (label, op, input shape) -> the keys of the Choices nested directly in that op at the reference.

    The signature of an op is what decides its time: (module text, input shape, output shape). Each
    distinct signature is timed once (NB201 repeats its 6 decisions in every cell of a stage). The
    module timed is what derive makes of the op (:func:`~gmgraph.latency.nested.plain_copy`): a view
    materialised, nested Choices at the reference (every label's first op). Nested Choices get
    entries of their own, at the input shape they have in that reference.

    Raises:
        SpaceError: two Choices share a label, an op name and an input shape but run different ops.
    """
    entries: dict[tuple, tuple] = {}
    ops: dict[tuple, tuple] = {}
    inner: dict[tuple, list] = {}
    reference = _reference(gm)
    targets = {n.name: n.target for n in gm.graph.nodes}
    for node in flow:
        if node["kind"] != "choice" or "picks" in node:  # InputChoices: input_choices.timing_specs
            continue
        top = gm.get_submodule(targets[node["name"]])
        found = [(top, node["label"], tuple(node["shape"]), set(node["identity"]))]
        found += [(top.get_submodule(m["path"]), m["label"], tuple(m["shape"]), set())
                  for m in node.get("nested", ())]
        for choice, label, shape, folded in found:
            for op, module in choice.ops.items():
                if op in folded:
                    continue
                key = (label, op, shape)
                plain = plain_copy(module, reference)
                signature = (repr(module), shape, _output_shape(plain, shape))
                if entries.setdefault(key, signature) != signature:
                    raise SpaceError(f"Choices labelled {label!r} run different {op!r} ops at input shape "
                                     f"{shape}; a latency table keys ops by (label, op, input shape)")
                ops.setdefault(signature, (plain, shape))
                inner[key] = [(c.label, reference[c.label], s) for _, c, s in inner_runs(module, shape, reference)]
    return entries, ops, inner


def _check_shapes_kept(choice: Choice, shape: tuple[int, ...], reference: dict[str, str]) -> None:
    """Every op of ``choice`` (nested Choices at ``reference``) reads ``shape`` and gives one output shape.

    The table holds one input shape per Choice, so the shapes must not depend on the arch.

    Raises:
        SpaceError: an op cannot read ``shape`` or gives another shape than the others: the decision changes
            the shape of a tensor that modules after it read, as ``elastic_stage_widths`` does with a stage's
            width.
    """
    outputs = {}
    for op, module in choice.ops.items():
        try:
            outputs[op] = _output_shape(plain_copy(module, reference), shape)
        except RuntimeError as exc:
            raise SpaceError(_shape_dependent(choice.label, f"op {op!r} cannot read the input {list(shape)} its "
                                              f"Choice gets ({str(exc).splitlines()[0]})")) from exc
    if len(set(outputs.values())) > 1:
        given = ", ".join(f"{op}: {list(out)}" for op, out in outputs.items())
        raise SpaceError(_shape_dependent(choice.label, f"its ops give different shapes ({given})"))


def _shape_dependent(label: str, what: str) -> str:
    return (f"a latency table cannot be built for decision {label!r}: {what}. Latency tables need every decision "
            f"to keep the shapes the modules after it read; decisions that change a tensor's width for the layers "
            f"that follow (elastic_stage_widths) are not supported by latency tables yet: search without "
            f"--max-latency-ms and a latency objective, or without that rule")


@torch.no_grad()
def _output_shape(module, in_shape) -> tuple[int, ...]:
    modes = [(m, m.training) for m in module.modules()]
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        return tuple(module.eval()(torch.zeros(in_shape, device=device)).shape)
    finally:
        for m, training in modes:
            m.training = training


def _calibration_archs(gm: fx.GraphModule, raw: LatencyTable, n: int, seed: int) -> list[dict]:
    """``n`` archs drawn with ``seed``: the quickest and the slowest by the table's op times among
    ``ANCHOR_POOL`` random ones (they spread the calibration, which pins the correction's slope), then
    random ones."""
    generator = torch.Generator().manual_seed(seed)
    labels = space(gm)  # read once, not once per draw (a walk over every module)
    pool = sorted((sample_from(labels, generator) for _ in range(ANCHOR_POOL)),
                  key=lambda a: raw.predict(a, corrected=False))
    return ([pool[0], pool[-1]] + [sample_from(labels, generator) for _ in range(max(n - 2, 0))])[:n]


def _calibrate(gm, archs: list[dict], raw: LatencyTable, fields, timing, bar: Progress) -> list[dict]:
    """End-to-end timings of ``archs``, each the median of ``CALIBRATION_ROUNDS`` timings taken in turns
    (every arch once per round), so that a change in the machine's load hits them all alike."""
    x = torch.randn((fields["batch"], *fields["input_shape"]), generator=torch.Generator().manual_seed(0))
    runners = [RUNTIMES[timing["runtime"]](derive(gm, arch), (x,), threads=timing["threads"]) for arch in archs]
    rounds = [[measure_runner(r, batch=fields["batch"], **timing) for r in runners] for _ in range(CALIBRATION_ROUNDS)]
    out = []
    for i, arch in enumerate(archs):
        parts = raw.breakdown(arch)
        out.append({"arch": dict(arch), "measured_ms": statistics.median(t[i].median_ms for t in rounds),
                    "ops_ms": parts["ops_ms"] + parts["sums_ms"], "stable": all(t[i].stable for t in rounds)})
        bar.update(op="calibration")
    return out
