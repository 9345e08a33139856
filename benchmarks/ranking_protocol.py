"""The ranking benchmark's protocol: methods, split schedules under both budget rules, and the job list.

Two rules compare a few-shot method with one-shot (docs/algorithms.md §8):

(a) **equal epochs per leaf lineage** (the papers'): one-shot trains ``E``
    epochs; a few-shot leaf has trained ``E`` epochs counting its ancestors.
    Splits fall at fixed fractions of ``E`` (GM-NAS on NB201: 10 and 20 of 40).
(b) **equal total supernet-epochs**: every method spends ``B`` (one epoch of
    one (sub-)supernet is one), so few-shot leaves train fewer epochs.

Either way the few-shot run *forks* from the one-shot run of the same seed
and sampler (uniform; DARTS for ``gm-darts``) at its first split epoch
(weights, optimizer, sampler and RNG state), so the two share their
initialisation and first epochs exactly::

    >>> a = schedule_a(method("gm"), 40, (0.25, 0.5))
    >>> a.parent, a.fork, a.split_at, a.epochs, a.cost
    (40, 10, (10, 20), 40, 110)
    >>> b = schedule_b(method("gm"), 40, (0.25, 0.5))
    >>> b.parent, b.fork, b.split_at, b.epochs, b.cost
    (40, 10, (10, 13), 19, 40)

Under (b) the children continue the parent's cosine learning rate, re-aimed
to reach its minimum at the leaf's last epoch (see ``ranking_jobs.fork_state``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from gmgraph.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One compared method: a splitter, the sampler of its supernets and its split tree's shape."""

    key: str  # short, file-safe
    label: str  # the table's name
    splitter: str  # FewShotConfig.method
    sampler: str = "uniform"
    fanout: int = 1  # children per split
    splits: int = 0  # split points used (the first ``splits`` of the schedule's)
    rounds: str | None = None  # gradient matching: "small" (scoring <= one epoch) or "large"
    darts_order: int = 1  # darts: 2 for the second-order (unrolled) architecture gradient
    base: str = "oneshot"  # a few-shot method: the one-shot method (of its own sampler) whose run it forks from

    @property
    def forked(self) -> bool:
        """Whether it forks from a one-shot run (every few-shot method does: from :attr:`base`)."""
        return self.splits > 0


DEFAULT_METHODS = (
    Method("oneshot", "one-shot (uniform)", "oneshot"),
    Method("pada", "one-shot (PA&DA)", "oneshot", sampler="pada"),
    Method("exhaustive", "few-shot exhaustive", "exhaustive", fanout=5, splits=1),
    Method("gm", "GM split (R small)", "gm", fanout=2, splits=2, rounds="small"),
    Method("gm-large", "GM split (R large)", "gm", fanout=2, splits=2, rounds="large"),
    Method("synflow", "metric split (synflow)", "metric:synflow", fanout=2, splits=2),
    Method("random", "random split", "random", fanout=2, splits=2),
)
"""The methods a run compares unless ``--methods`` says otherwise; ``oneshot`` is the baseline each other one
is paired with."""

GRADIENT_METHODS = (
    Method("darts", "one-shot (DARTS)", "oneshot", sampler="darts"),
    Method("darts2", "one-shot (DARTS 2nd order)", "oneshot", sampler="darts", darts_order=2),
    Method("gdas", "one-shot (GDAS)", "oneshot", sampler="gdas"),
    Method("snas", "one-shot (SNAS)", "oneshot", sampler="snas"),
    Method("proxyless", "one-shot (ProxylessNAS)", "oneshot", sampler="proxyless"),
)
"""One-shot supernets trained with architecture parameters (the seeds' other search algorithms, issue 29), on
request (``--methods``): the same protocol, estimates from the supernet's weights as for every other method (the
architecture parameters steer which paths train; the estimates read the weights)."""

SAMPLER_SPLIT_METHODS = (
    Method("gm-darts", "GM split (DARTS, R small)", "gm", sampler="darts", fanout=2, splits=2, rounds="small",
           base="darts"),
    Method("random-darts", "random split (DARTS)", "random", sampler="darts", fanout=2, splits=2, base="darts"),
    Method("gm-snas", "GM split (SNAS, R small)", "gm", sampler="snas", fanout=2, splits=2, rounds="small",
           base="snas"),
    Method("random-snas", "random split (SNAS)", "random", sampler="snas", fanout=2, splits=2, base="snas"),
)
"""GM and random splits whose (sub-)supernets train with the DARTS (first-order) or SNAS sampler, on request
(issue 29): split as ``gm`` / ``random``, forked from the one-shot run of their own sampler (:attr:`Method.base`:
weights, optimizer, architecture parameters and sampler state, RNG), whose children inherit the architecture
parameters of their ops."""

METHODS = DEFAULT_METHODS + GRADIENT_METHODS + SAMPLER_SPLIT_METHODS
"""Every method a run may compare, in the tables' order."""

BASELINE = "oneshot"
ZERO_COST = ("params", "synflow", "naswot")
"""Untrained reference lines (zero-cost proxies on the freshly initialised supernet of each seed)."""


def method(key: str) -> Method:
    """The method called ``key``.

    Raises:
        ConfigError: an unknown key (the message lists them).

    Example:
        >>> method("exhaustive").fanout
        5
    """
    for m in METHODS:
        if m.key == key:
            return m
    raise ConfigError(f"unknown method {key!r}; choose from {', '.join(m.key for m in METHODS)}")


def leaves_fork(key: str) -> bool:
    """Whether the one-shot method ``key`` is the :attr:`Method.base` of some few-shot method (its runs then
    save the fork those start from).

    Example:
        >>> leaves_fork("oneshot"), leaves_fork("darts"), leaves_fork("darts2"), leaves_fork("gm")
        (True, True, False, False)
    """
    return any(m.forked and m.base == key for m in METHODS)


# ------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class Schedule:
    """How one run trains: its lineage length, split epochs, and which one-shot run it forks from."""

    epochs: int  # epochs of every leaf's lineage
    split_at: tuple[int, ...] = ()
    parent: int = 0  # length of the one-shot run it forks from (its cosine, up to the fork)
    fork: int | None = None  # the epoch it forks at (None: not forked)
    fanout: int = 1

    @property
    def cost(self) -> int:
        """Total supernet-epochs, the shared one-shot prefix included."""
        return lineage_cost(self.epochs, self.split_at, self.fanout)

    @property
    def own_cost(self) -> int:
        """Supernet-epochs trained after the fork (what the fork job itself costs)."""
        return self.cost - (self.fork or 0)


def split_epochs(epochs: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """The split epochs at ``fractions`` of a lineage of ``epochs`` (rounded half up).

    Raises:
        ConfigError: splits that coincide, fall before epoch 1 or at/after the end.

    Example:
        >>> split_epochs(40, (0.25, 0.5)), split_epochs(20, (0.25, 0.5))
        ((10, 20), (5, 10))
    """
    out = tuple(int(f * epochs + 0.5) for f in fractions)
    if len(set(out)) != len(out) or any(not 1 <= e < epochs for e in out) or list(out) != sorted(out):
        raise ConfigError(f"split fractions {list(fractions)} of {epochs} epochs give split epochs {list(out)}; "
                          "they must be increasing, distinct and between 1 and epochs - 1: use more epochs")
    return out


def lineage_cost(epochs: int, split_at: tuple[int, ...], fanout: int) -> int:
    """Supernet-epochs of a schedule splitting every leaf ``fanout`` ways at ``split_at``.

    Example:
        >>> lineage_cost(40, (10, 20), 2), lineage_cost(40, (10,), 5), lineage_cost(40, (), 1)
        (110, 160, 40)
    """
    return sum(fanout ** sum(s <= e for s in split_at) for e in range(epochs))


def schedule_a(m: Method, epochs: int, fractions: tuple[float, ...]) -> Schedule:
    """Rule (a): every lineage trains ``epochs``; splits at ``fractions`` of it; forks at the first.

    A method splits at its first ``splits`` fractions (fewer if fewer are given).

    Example:
        >>> schedule_a(method("exhaustive"), 40, (0.25, 0.5))
        Schedule(epochs=40, split_at=(10,), parent=40, fork=10, fanout=5)
        >>> schedule_a(method("gm"), 4, (0.5,)).split_at
        (2,)
    """
    split_at = split_epochs(epochs, fractions)[: m.splits]
    return Schedule(epochs, split_at, epochs, split_at[0] if split_at else None, m.fanout)


def schedule_b(m: Method, budget: int, fractions: tuple[float, ...]) -> Schedule:
    """Rule (b): ``budget`` supernet-epochs in all, forking from the one-shot run of ``budget`` epochs.

    The fork is at that run's first split. After it, generation i (with
    ``fanout**i`` leaves) trains ``g_i >= 1`` epochs with ``sum(fanout**i * g_i)``
    equal to what is left of the budget; of the exact solutions, the one
    closest to the generation lengths of rule (a) at ``budget``, scaled to fit.

    Raises:
        ConfigError: no schedule spends exactly ``budget``.

    Example:
        >>> s = schedule_b(method("exhaustive"), 40, (0.25, 0.5))
        >>> s.split_at, s.epochs, s.cost
        ((10,), 16, 40)
    """
    a = schedule_a(m, budget, fractions)
    if not m.forked:
        return a
    fork = a.fork
    ends = a.split_at + (budget,)
    shape = [ends[i + 1] - ends[i] for i in range(len(a.split_at))]  # rule (a)'s generation lengths
    weights = [m.fanout ** (i + 1) for i in range(len(shape))]
    left = budget - fork
    scale = left / sum(w * g for w, g in zip(weights, shape))
    best = None
    for gens in itertools.product(range(1, left + 1), repeat=len(shape)):
        if sum(w * g for w, g in zip(weights, gens)) != left:
            continue
        distance = sum(abs(g - scale * s) for g, s in zip(gens, shape))
        if best is None or distance < best[0] - 1e-9:
            best = (distance, gens)
    if best is None:
        raise ConfigError(f"no {m.label} schedule forking at epoch {fork} spends exactly {budget} supernet-epochs "
                          f"(fanout {m.fanout}); choose another --budget (40 and 80 work for every method)")
    split_at = tuple(fork + sum(best[1][:i]) for i in range(len(best[1])))
    return Schedule(fork + sum(best[1]), split_at, budget, fork, m.fanout)


# ------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class Job:
    """One unit of work for a worker process; its result is one file named by :attr:`id`.

    ``kind``: ``oneshot`` (a one-shot run from scratch, which also saves the
    fork the few-shot runs start from), ``fork`` (a few-shot run from that
    fork) or ``zerocost`` (untrained proxies). ``cell`` is ``E`` under rule
    (a) and ``B`` under rule (b).
    """

    kind: str
    method: str
    seed: int
    rule: str  # "a", "b" or "zc"
    cell: int
    schedule: Schedule | None = None

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.cell}-{self.method}-s{self.seed}"

    @property
    def needs(self) -> str | None:
        """The id of the one-shot job whose fork this job starts from (None: starts from scratch)."""
        if self.kind != "fork":
            return None
        return Job("oneshot", method(self.method).base, self.seed, "a", self.schedule.parent).id

    @property
    def cost(self) -> int:
        """Supernet-epochs this job trains (a fork's shared prefix is paid by its one-shot job)."""
        if self.schedule is None:
            return 0
        return self.schedule.own_cost if self.kind == "fork" else self.schedule.cost


def plan_jobs(methods: tuple[str, ...], seeds: int, epochs: tuple[int, ...], budget: int | None,
              fractions: tuple[float, ...], *, primary: int | None = None, primary_seeds: int = 0) -> list[Job]:
    """Every job of a run: per seed, the one-shot runs, their few-shot forks and the zero-cost scores.

    One-shot runs exist for every ``E`` in ``epochs`` and for ``budget``
    (rule (b)'s baseline); the uniform one is always run, and so is the
    one-shot method each chosen few-shot method forks from (its
    :attr:`Method.base`: ``darts`` for ``gm-darts``). With ``primary_seeds`` above ``seeds``,
    the seeds from ``seeds`` on run rule (a) at E = ``primary`` only: the
    verdict's cell gets more seeds than the others.

    Example:
        >>> jobs = plan_jobs(("oneshot", "gm"), 1, (20, 40), 40, (0.25, 0.5))
        >>> [j.id for j in jobs]
        ['a-20-oneshot-s0', 'a-40-oneshot-s0', 'a-20-gm-s0', 'a-40-gm-s0', 'b-40-gm-s0', 'zc-0-zerocost-s0']
        >>> jobs[4].needs, jobs[4].cost
        ('a-40-oneshot-s0', 30)
        >>> [j.id for j in plan_jobs(("oneshot", "gm"), 1, (20, 40), 40, (0.25, 0.5), primary=40,
        ...                          primary_seeds=2)][6:]
        ['a-40-oneshot-s1', 'a-40-gm-s1']
    """
    chosen = [method(k) for k in dict.fromkeys((BASELINE, *methods, *(method(k).base for k in methods)))]
    lengths = sorted(set(epochs) | ({budget} if budget else set()))
    jobs = []
    for seed in range(seeds):
        for m in (m for m in chosen if not m.forked):
            for e in lengths:
                jobs.append(Job("oneshot", m.key, seed, "a", e, schedule_a(m, e, fractions)))
        for m in (m for m in chosen if m.forked):
            for e in epochs:
                jobs.append(Job("fork", m.key, seed, "a", e, schedule_a(m, e, fractions)))
            if budget:
                jobs.append(Job("fork", m.key, seed, "b", budget, schedule_b(m, budget, fractions)))
        jobs.append(Job("zerocost", "zerocost", seed, "zc", 0))
    for seed in range(seeds, primary_seeds if primary is not None else 0):
        jobs += [Job("oneshot", m.key, seed, "a", primary, schedule_a(m, primary, fractions))
                 for m in chosen if not m.forked]
        jobs += [Job("fork", m.key, seed, "a", primary, schedule_a(m, primary, fractions))
                 for m in chosen if m.forked]
    return jobs


def gm_rounds(steps_per_epoch: int, candidates: int) -> int:
    """Gradient-matching rounds R whose scoring costs at most one supernet epoch (at least 1).

    One round takes one forward-backward pass per candidate op of every
    scored label (``candidates`` in all at the root, 6 x 5 on NB201), a
    training step one; so ``R = steps_per_epoch // candidates``.

    Example:
        >>> gm_rounds(34, 30), gm_rounds(300, 30)
        (1, 10)
    """
    return max(1, steps_per_epoch // candidates)


def job_seconds(job: Job, *, epoch_seconds: float, estimate_seconds: float, zero_cost_seconds: float, archs: int,
                scoring_seconds: dict[str, float] | None = None,
                method_epoch_seconds: dict[str, float] | None = None) -> float:
    """Predicted time of one ``job`` from unit costs (:func:`unit_costs`).

    ``method_epoch_seconds``: seconds per supernet-epoch measured per method; a method without its own
    (``gm-darts`` before it ran) takes its :attr:`Method.base`'s (``darts``: the same sampler), else
    ``epoch_seconds``.

    Example:
        >>> job = plan_jobs(("gm-darts",), 2, (40,), None, (0.25, 0.5))[2]
        >>> job.id, job.cost
        ('a-40-gm-darts-s0', 100)
        >>> job_seconds(job, epoch_seconds=1.0, estimate_seconds=0.5, zero_cost_seconds=0.0, archs=10,
        ...             scoring_seconds={"gm-darts": 20.0}, method_epoch_seconds={"darts": 4.0})   # 100 * 4 + 5 + 20
        425.0
    """
    if job.kind == "zerocost":
        return archs * zero_cost_seconds
    per_method = method_epoch_seconds or {}
    epoch = per_method.get(job.method, per_method.get(method(job.method).base, epoch_seconds))
    return job.cost * epoch + archs * estimate_seconds + (scoring_seconds or {}).get(job.method, 0.0)


def predict_seconds(jobs: list[Job], *, workers: int, **unit) -> float:
    """Wall time of ``jobs`` on ``workers`` processes from unit costs (perfect packing; ``unit``: the keywords
    of :func:`job_seconds`).

    ``scoring_seconds``: split-scoring time of one job, per method key (gradient matching's R matters).

    Example:
        >>> jobs = plan_jobs(("oneshot",), 2, (10,), None, (0.25, 0.5))
        >>> predict_seconds(jobs, epoch_seconds=1.0, estimate_seconds=0.1, zero_cost_seconds=0.2,
        ...                 archs=10, workers=2)   # (2 * (10 + 1) + 2 * 2) / 2
        13.0
    """
    return sum(job_seconds(job, **unit) for job in jobs) / workers


def unit_costs(results: list[dict]) -> dict:
    """Unit costs measured by finished jobs: what :func:`predict_seconds` needs, from a timed small run.

    ``epoch_seconds``: training time per supernet-epoch (split scoring left
    out); ``estimate_seconds``: per estimated architecture;
    ``zero_cost_seconds``: per architecture for all zero-cost proxies;
    ``scoring_seconds``: split-scoring time per job, per method;
    ``method_epoch_seconds``: training time per supernet-epoch, per method
    (the samplers differ: DARTS runs every op).

    Example:
        >>> results = [{"kind": "fork", "method": "gm", "cost": 30, "fork": 10, "train_seconds": 25.0,
        ...             "scoring_seconds": 5.0, "estimate_seconds": 2.0, "estimates": [0.5] * 4},
        ...            {"kind": "zerocost", "method": "zerocost", "seconds": 0.4, "scores": {"params": [1] * 4}}]
        >>> unit = unit_costs(results)
        >>> unit["epoch_seconds"], unit["estimate_seconds"], unit["zero_cost_seconds"], unit["scoring_seconds"]
        (1.0, 0.5, 0.1, {'gm': 5.0})
        >>> unit["method_epoch_seconds"]
        {'gm': 1.0}
    """
    trained = [r for r in results if r["kind"] != "zerocost"]
    zc = [r for r in results if r["kind"] == "zerocost"]
    scoring: dict[str, list[float]] = {}
    for r in trained:
        if r["kind"] == "fork":
            scoring.setdefault(r["method"], []).append(r["scoring_seconds"])
    return {
        "epoch_seconds": _epoch_seconds(trained),
        "estimate_seconds": sum(r["estimate_seconds"] for r in trained) / max(sum(len(r["estimates"]) for r in trained), 1),
        "zero_cost_seconds": sum(r["seconds"] for r in zc) / max(sum(len(next(iter(r["scores"].values()))) for r in zc), 1),
        "scoring_seconds": {k: sum(v) / len(v) for k, v in scoring.items()},
        "method_epoch_seconds": {k: _epoch_seconds([r for r in trained if r["method"] == k])
                                 for k in dict.fromkeys(r["method"] for r in trained)},
    }


def _epoch_seconds(trained: list[dict]) -> float:
    """Training seconds (split scoring left out) per supernet-epoch the results trained themselves."""
    epochs = sum(r["cost"] - (r["fork"] or 0 if r["kind"] == "fork" else 0) for r in trained)
    return sum(r["train_seconds"] - r["scoring_seconds"] for r in trained) / max(epochs, 1)
