"""The extension tables (samplers, splitters, metrics, strategies, datasets, spaces) by name, without torch.

Every extension point of gmgraph is one name -> object table. The built-in
entries are written here as ``"module:attribute"`` references and imported the
first time they are looked up, so the settings schema, ``gmgraph search
--help`` and argument errors know every name without importing torch. An
entry added from outside is an object and is used as given::

    >>> table = Table("greeting", {"upper": "builtins:str.upper"})
    >>> "upper" in table, list(table)
    (True, ['upper'])
    >>> table["upper"]("hi")
    'HI'
    >>> table["lower"] = str.lower
    >>> table["lower"]("HI"), table.names()
    ('hi', ('upper', 'lower'))
    >>> table["nope"]
    Traceback (most recent call last):
    ...
    KeyError: "unknown greeting 'nope'; choose one of upper, lower"
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any


class _Ref:
    """A not-yet-imported entry: ``module:dotted.attribute``, optionally ``[key]`` of that object."""

    def __init__(self, target: str):
        self.target = target

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def load(self) -> Any:
        module, _, path = self.target.partition(":")
        path, _, key = path.partition("[")
        value: Any = importlib.import_module(module)
        for part in path.split("."):
            value = getattr(value, part)
        return value[key.rstrip("]")] if key else value

    def __repr__(self) -> str:
        return f"<{self.target}>"


class Table(MutableMapping):
    """A name -> object table whose built-in entries are imported when first looked up.

    Args:
        kind: what an entry is, for error messages (``"sampler"``).
        builtins: name -> ``"module:attribute"`` (``"module:attribute[key]"`` picks
            one entry of a dict attribute).
    """

    def __init__(self, kind: str, builtins: Mapping[str, str]):
        self.kind = kind
        self._entries: dict[str, Any] = {name: _Ref(target) for name, target in builtins.items()}

    def __getitem__(self, name: str) -> Any:
        try:
            value = self._entries[name]
        except (KeyError, TypeError):
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}") from None
        if isinstance(value, _Ref):
            value = self._entries[name] = value.load()
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self._entries[name] = value

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries  # names only: nothing is imported
        except TypeError:  # an unhashable name is simply not there
            return False

    def names(self) -> tuple[str, ...]:
        """The accepted names, in registration order (imports nothing)."""
        return tuple(self._entries)

    def loaded(self, name: str) -> Any | None:
        """Entry ``name`` if it can be had without importing anything (added from outside, looked up before,
        or its module imported already); None otherwise. What the settings schema may look at.

        >>> table = Table("greeting", {"upper": "builtins:str.upper", "later": "not_imported_yet:f"})
        >>> table.loaded("upper") is str.upper, table.loaded("later")
        (True, None)
        """
        value = self._entries.get(name)
        if isinstance(value, _Ref):
            if value.module not in sys.modules:
                return None
            value = self._entries[name] = value.load()
        return value

    def __repr__(self) -> str:
        return f"Table({self.kind!r}, {list(self._entries)})"


SAMPLERS = Table("sampler", {
    "uniform": "gmgraph.samplers:UniformSampler",
    "darts": "gmgraph.samplers:DartsSampler",
    "gdas": "gmgraph.samplers:GdasSampler",
    "pada": "gmgraph.samplers:PadaSampler",
    "sandwich": "gmgraph.samplers:SandwichSampler",
    "snas": "gmgraph.snas:SnasSampler",
    "proxyless": "gmgraph.proxyless:ProxylessSampler",
})
"""name -> :class:`gmgraph.samplers.Sampler` subclass (``--sampler``)."""

BILEVEL = ("darts", "gdas", "proxyless")
"""The built-in samplers that train architecture parameters on validation batches (their classes say
``bilevel = True``); the settings schema reads it here, so that checking a setting imports no sampler."""

ARCH_TRAINED = ("darts", "gdas", "snas", "proxyless")
"""The built-in samplers that train architecture parameters at all: the bilevel ones and those whose
weight step's loss trains them too (``joint = True``: snas). ``--search argmax`` and ``--latency-weight``
need one of them; the settings schema reads it here (imports no sampler)."""

SPLITTERS = Table("method", {
    "oneshot": "gmgraph.scores.splitters:never",
    "exhaustive": "gmgraph.scores.splitters:split_exhaustive",
    "gm": "gmgraph.scores.splitters:split_by_gradient_matching",
    "random": "gmgraph.scores.splitters:split_randomly",
})
"""name -> splitter (``--method``); ``metric:<name>`` splitters come from :data:`METRICS`."""

METRICS = Table("metric", {
    name: f"gmgraph.scores.zero_cost:_{name}"
    for name in ("synflow", "grad_norm", "snip", "grasp", "naswot", "params", "flops")
})
"""name -> zero-cost scoring function (``metric=``, ``--method metric:<name>``)."""

DATA_FREE = ("synflow", "params", "flops")
"""Metrics that use only the shape of their input batch (never its values, never labels)."""

NB201_BENCHMARKS = ("nb201:cifar10", "nb201:cifar100", "nb201:imagenet16-120")
"""What ``gmgraph rank --against`` accepts: the NAS-Bench-201 table's datasets."""

STRATEGIES = Table("search", {
    "evolution": "gmgraph.search.strategies:search_by_evolution",
    "random": "gmgraph.search.strategies:search_randomly",
    "argmax": "gmgraph.search.strategies:search_by_argmax",
    "pareto": "gmgraph.search.strategies:search_pareto",
})
"""name -> search strategy ``(SearchContext) -> SearchResult`` (``--search``)."""

DATASETS = Table("dataset", {
    name: f"gmgraph.data.builders:BUILDERS[{name}]"
    for name in ("digits", "digits16", "clutter16", "digits16-seg", "synthetic", "cifar10", "cifar100", "mnist",
                 "fashion-mnist", "imagefolder")
})
"""name -> dataset builder ``(DataRequest) -> ((train, val, test), classes)`` (``--data``)."""


def dataset_key(name: object) -> str | None:
    """The :data:`DATASETS` name ``name`` spells (any case, ``_`` for ``-``, spaces around), or None.

    >>> dataset_key(" Fashion_MNIST"), dataset_key("svhn")
    ('fashion-mnist', None)
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    return key if key in DATASETS else None

SPACES = Table("space", {name: f"gmgraph.spaces:BUILTIN[{name}]"
                         for name in ("nb201", "darts", "mobilenet", "ofa", "encdec")})
"""name -> :class:`gmgraph.spaces.SpaceSpec` (``--space``)."""

TASKS = ("classification", "regression", "segmentation")
"""The built-in tasks (``--task``; :data:`gmgraph.task.TASKS` holds them)."""

DATASET_TASKS = {"digits16-seg": "segmentation"}
"""The task of a dataset that is not classification (``--task`` defaults to it)."""


def task_of(task: str | None, data: object) -> str:
    """The task a run learns: ``task`` if given, else the dataset's own.

    >>> task_of(None, "digits16-seg"), task_of(None, "cifar10"), task_of("regression", "digits16")
    ('segmentation', 'classification', 'regression')
    """
    return task if task is not None else DATASET_TASKS.get(dataset_key(data) or "", "classification")


RULES = ("conv_kernels", "depthwise_kernels", "elastic_depth", "elastic_expansions", "elastic_kernels",
         "elastic_stage_widths", "elastic_widths", "inverted_residual_expansions", "mlp_ratios")
"""The rules ``--rules`` names: functions of :mod:`gmgraph.spaces.from_model`, each with its defaults."""

DISTANCES = ("cos", "per-filter-cos", "mse")
"""Gradient distances of gradient matching (``--distance``)."""

PRECISIONS = ("fp32", "bf16", "fp16")
"""Training precisions (``--precision``); :data:`gmgraph.device.PRECISIONS` maps them to dtypes."""
