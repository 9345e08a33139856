"""``LatencyTable``: the predicted latency of any architecture of a space, from per-op timings.

``predict(arch, corrected=False) = fixed + Σ over the Choices derive keeps of
their chosen op's time + Σ over the sums it keeps of a sum's time``; by default
a line fitted to end-to-end timings corrects that sum (``offset + scale * Σ``,
see :attr:`LatencyTable.correction`). Ops that ``derive`` folds
away (identities, ``none`` terms, whatever no longer reaches the output) cost
nothing. A Choice nested in a kept Choice's op (an OFA stage's depth Choice holding
blocks that choose their kernel) adds its chosen op's entry when the op enclosing it
runs, and each op's entry is its own part, without the Choices nested in it
(:mod:`gmgraph.latency.nested`). An InputChoice's op costs the combination of the
inputs it picks, and the plain nodes that only unpicked inputs needed cost nothing
(:mod:`gmgraph.latency.input_choices`). A table is plain data: it holds the few facts of the graph that
liveness needs, so it predicts without the supernet::

    >>> flow = [
    ...     {"name": "x", "kind": "kept", "inputs": []},
    ...     {"name": "a", "kind": "choice", "inputs": ["x"], "label": "a", "identity": ["id"], "zero": ["none"],
    ...      "shape": [1, 4]},
    ...     {"name": "out", "kind": "output", "inputs": ["a"]},
    ... ]
    >>> table = LatencyTable(key={}, space={"a": ["id", "none", "fc"]}, flow=flow, fixed_ms=0.5,
    ...                      entries=[{"label": "a", "op": "fc", "shape": [1, 4], "ms": 0.25, "stable": True},
    ...                               {"label": "a", "op": "none", "shape": [1, 4], "ms": 0.01, "stable": True}])
    >>> table.predict({"a": "fc"}), table.predict({"a": "id"})
    (0.75, 0.5)

Build one for a supernet with :meth:`LatencyTable.build` (cached on disk).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gmgraph.arch import validate
from gmgraph.errors import ConfigError, FileError
from gmgraph.latency.input_choices import flow_under
from gmgraph.latency.nested import running_nested
from gmgraph.liveness import live_nodes


@dataclass(frozen=True)
class LatencyTable:
    """Per-op latencies of one supernet on one target, and the fixed part of its networks.

    Attributes:
        key: what the table was measured for (:func:`gmgraph.latency.cache.key_fields`).
        space: label -> op names.
        flow: the supernet's :func:`~gmgraph.liveness.dataflow`, Choice nodes with
            their input ``shape`` and sums with their operand ``shapes``.
        fixed_ms: the part every network of the space runs (stem, reductions, head).
        entries: one per (label, op, input shape): ``{"label", "op", "shape", "ms", "stable"}`` and
            ``"signature"``: entries of equal signature run the same computation.
        sums: one per operand shapes: ``{"shapes", "ms", "stable"}``.
        nodes: one per plain node of the flow that an InputChoice may leave unread:
            ``{"name", "ms", "stable", "signature"}``; it costs its time only while it is live.
        calibration: the end-to-end timings the fixed part was estimated from:
            ``{"arch", "measured_ms", "ops_ms", "stable"}`` (``ops_ms``: its ops and sums).
        correction: ``{"offset_ms", "scale"}`` of the line ``measured = offset + scale * (ops + sums)``
            fitted to the calibration timings (least absolute relative error), which ``predict``
            uses unless told ``corrected=False``; None when the calibration cannot determine it.
        shares_pure_ops: the runtime computes equal parameter-free ops (e.g. two pools) of one input
            once, as onnxruntime's common-subexpression elimination does.
        build_seconds: how long building took.
    """

    key: dict
    space: dict
    flow: list
    fixed_ms: float
    entries: list
    sums: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    calibration: list = field(default_factory=list)
    correction: dict | None = None
    shares_pure_ops: bool = False
    build_seconds: float = 0.0

    @classmethod
    def build(cls, supernet, input_shape: Sequence[int], **options) -> LatencyTable:
        """Measure (or load from the cache) the table of ``supernet``; see :func:`gmgraph.latency.build.build_table`."""
        from gmgraph.latency.build import build_table

        return build_table(cls, supernet, input_shape, **options)

    def predict(self, arch: Mapping[str, str], *, corrected: bool | None = None) -> float:
        """Predicted milliseconds of ``derive(supernet, arch)`` on the table's target.

        ``corrected``: None (default) uses the fitted line (:attr:`correction`) when the table has
        one, else the plain ``fixed + sum``; False always the plain sum; True requires the line.

        Raises:
            ArchError: ``arch`` does not fit the table's space.
            ConfigError: ``corrected=True`` on a table without a correction.
        """
        parts = self.breakdown(arch)
        return self.corrected(parts["ops_ms"] + parts["sums_ms"], corrected)

    def corrected(self, variable_ms, corrected: bool | None = None):
        """The latency of a network whose ops and sums take ``variable_ms`` (a float or a tensor).

        See :meth:`predict` for ``corrected``.
        """
        if corrected is False or (corrected is None and self.correction is None):
            return self.fixed_ms + variable_ms
        if self.correction is None:
            raise ConfigError("this latency table has no correction (too few or too alike calibration archs); "
                              "build it with more calibration archs, or predict with corrected=False")
        return self.correction["offset_ms"] + self.correction["scale"] * variable_ms

    def breakdown(self, arch: Mapping[str, str]) -> dict[str, float]:
        """``fixed_ms``, ``ops_ms`` (the kept Choices, and the kept plain nodes that an InputChoice may
        leave unread), ``sums_ms`` (the kept sums) and their ``total_ms``."""
        validate(arch, {label: tuple(ops) for label, ops in self.space.items()})
        live = live_nodes(flow_under(self.flow, arch) if self._picking else self.flow, arch)
        ops, shared = 0.0, set()
        for name in live.choices:
            node = self._nodes[name]
            key = (node["label"], arch[node["label"]], tuple(node["shape"]))
            if self.shares_pure_ops and key[1] in node.get("pure", ()):
                # onnxruntime computes identical parameter-free ops on one input once (common subexpressions)
                twin = (live.sources[name], self._signature[key])
                if twin in shared:
                    continue
                shared.add(twin)
            ops += self._op_ms[key]
            for inner in running_nested(node["label"], node.get("nested", ()), arch):
                ops += self._op_ms[(inner["label"], arch[inner["label"]], tuple(inner["shape"]))]
        ops += sum(self._node_ms[n] for n in live.reads if n in self._node_ms)
        sums = sum(self.sum_ms(self._nodes[n]) for n in live.sums)
        return {"fixed_ms": self.fixed_ms, "ops_ms": ops, "sums_ms": sums, "total_ms": self.fixed_ms + ops + sums}

    def entry(self, label: str, op: str, shape: Sequence[int]) -> float:
        """The table's milliseconds of ``op`` of decision ``label`` at input ``shape`` (KeyError if absent)."""
        return self._op_ms[(label, op, tuple(shape))]

    @property
    def unstable(self) -> list[str]:
        """The timings that stayed unstable while building (empty when every one was stable)."""
        out = [f"{e['label']}={e['op']} at {tuple(e['shape'])}" for e in self.entries if not e["stable"]]
        out += [f"sum of {[tuple(s) for s in e['shapes']]}" for e in self.sums if not e["stable"]]
        out += [f"node {e['name']}" for e in self.nodes if not e["stable"]]
        out += [f"calibration arch {i}" for i, c in enumerate(self.calibration) if not c["stable"]]
        return out

    def to_dict(self) -> dict:
        """The table as JSON-able data (what the cache file holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> LatencyTable:
        """The table stored by :meth:`to_dict`.

        Raises:
            FileError: the data is not a whole table.
        """
        try:
            table = cls(**{name: data[name] for name in cls.__dataclass_fields__})
            table._op_ms, table._nodes, table._node_ms  # noqa: B018 - reading them checks the entries and the flow
            [table.sum_ms(n) for n in table.flow if n["kind"] == "sum"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FileError(f"not a latency table ({type(exc).__name__}: {exc})") from exc
        if not isinstance(table.fixed_ms, (int, float)):
            raise FileError("not a latency table (fixed_ms is not a number)")
        return table

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically)."""
        from gmgraph.latency.cache import write

        return write(Path(path), self.to_dict())

    @functools.cached_property
    def _nodes(self) -> dict[str, dict]:
        return {n["name"]: n for n in self.flow}

    @functools.cached_property
    def _picking(self) -> bool:
        return any("picks" in n for n in self.flow)

    @functools.cached_property
    def _node_ms(self) -> dict[str, float]:
        return {e["name"]: float(e["ms"]) for e in self.nodes}

    @functools.cached_property
    def _signature(self) -> dict[tuple, str]:
        return {(e["label"], e["op"], tuple(e["shape"])): e.get("signature", f"{e['op']}@{e['shape']}")
                for e in self.entries}

    @functools.cached_property
    def _op_ms(self) -> dict[tuple, float]:
        table = {(e["label"], e["op"], tuple(e["shape"])): float(e["ms"]) for e in self.entries}
        for node in self.flow:  # folded ops never run; every other op has an entry (KeyError otherwise)
            if node["kind"] == "choice":
                for op in self.space[node["label"]]:
                    key = (node["label"], op, tuple(node["shape"]))
                    table[key] = 0.0 if op in node["identity"] else table[key]
                for inner in node.get("nested", ()):  # nested Choices are never folded
                    for op in self.space[inner["label"]]:
                        table[(inner["label"], op, tuple(inner["shape"]))]  # noqa: B018 - KeyError when absent
        return table

    def sum_ms(self, node: dict) -> float:
        """Milliseconds of the sum ``node`` of the flow (0 for a sum with a constant operand)."""
        shapes = node.get("shapes")
        if not shapes:  # a constant operand: it stays in the fixed part
            return 0.0
        return self._sums_by_shapes[tuple(tuple(s) for s in shapes)]

    @functools.cached_property
    def _sums_by_shapes(self) -> dict[tuple, float]:
        return {tuple(tuple(s) for s in e["shapes"]): float(e["ms"]) for e in self.sums}
