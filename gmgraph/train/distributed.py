"""Scale-out on torch.distributed: the worker processes, their process group, and who trains what.

Workers are started by ``torchrun`` (or ``gmgraph search --nproc N``, which runs
torch's own elastic launcher, :func:`launch`); each one calls :func:`session`,
which joins the process group the launcher's environment describes (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...)::

    >>> team() is None            # one process: every helper here stays out of the way
    True
    >>> placement(1, 2), placement(4, 2)
    ([(0, 1)], [(0,), (1,), (0,), (1,)])

Two ways of sharing work, chosen per (sub-)supernet by :func:`placement`:

* **Data parallel** (:mod:`gmgraph.train.data_parallel`): a group of ranks
  trains one supernet, each rank on its slice of every global batch, with
  gradients and BatchNorm statistics summed over the group; the numerics
  live there, on top of this module's :class:`Team` and :func:`collective`.
* **Sub-supernets** (``gmgraph.train.fewshot``): once there are as many
  leaves as ranks, each rank trains its own leaves alone at the full batch
  size; states are exchanged after the epoch (rank 0 writes the checkpoint).

A collective that fails (a worker died, or stayed silent for longer than
``GMGRAPH_DIST_TIMEOUT`` seconds, default 600) raises :class:`WorkerLost`,
a :class:`~gmgraph.errors.TrainError`, instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gmgraph import errors
from gmgraph.errors import ConfigError, GmGraphError, TrainError

TIMEOUT_ENV = "GMGRAPH_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # long enough for one rank to finish a leaf epoch while another waits


class WorkerLost(TrainError):
    """A collective failed: another worker died, or stayed silent past the timeout."""


# -- the process group -----------------------------------------------------------------


def timeout_seconds() -> float:
    """Seconds a collective may wait for the other ranks (``GMGRAPH_DIST_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def launched_by_torchrun() -> bool:
    """True in a worker started by torchrun (or any launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend() -> str:
    """gloo for CPU tensors; NCCL joins in for CUDA tensors when there is a GPU."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def session() -> Iterator[Team | None]:
    """Join the process group torchrun's environment describes; leave it on exit.

    Yields None (and touches nothing) outside torchrun or with one worker.

    Raises:
        WorkerLost: when the other workers cannot be reached in time.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        yield team()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    with collective("joining the process group"):
        dist.init_process_group(backend(), timeout=timedelta(seconds=timeout_seconds()))
    try:
        yield team()
    finally:
        global _TEAM
        _TEAM = None
        dist.destroy_process_group()


_TEAM: Team | None = None


def team() -> Team | None:
    """This process's :class:`Team`, or None when it runs alone (no group, or a group of one)."""
    global _TEAM
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    if _TEAM is None or _TEAM.size != dist.get_world_size():
        _TEAM = Team()
    return _TEAM


def placement(n_nodes: int, world: int) -> list[tuple[int, ...]]:
    """The ranks that train each of ``n_nodes`` supernets.

    With at least as many nodes as ranks, nodes go round robin to single
    ranks; with fewer, each node gets a contiguous block of ranks (neighbours
    on one machine) that trains it data-parallel.
    """
    if n_nodes >= world:
        return [(i % world,) for i in range(n_nodes)]
    return [tuple(range(i * world // n_nodes, (i + 1) * world // n_nodes)) for i in range(n_nodes)]


class Team:
    """The ranks of a running job and the few collectives gmgraph needs from them.

    Object collectives pickle (they only carry gmgraph's own states between
    its own workers); every failure becomes a :class:`WorkerLost`::

        with session() as team:                  # under torchrun
            states = team.all_gather({"rank": team.rank}, "saying hello")
    """

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self._groups: dict[tuple[int, ...], Any] = {tuple(range(self.size)): None}

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def group(self, ranks: Sequence[int]):
        """The process group of ``ranks`` (None: everyone). Every rank must ask, in the same order."""
        ranks = tuple(ranks)
        if ranks not in self._groups:
            with collective("creating a process group"):
                self._groups[ranks] = dist.new_group(list(ranks), timeout=timedelta(seconds=timeout_seconds()))
        return self._groups[ranks]

    def assign(self, n_nodes: int) -> list[tuple[int, ...]]:
        """:func:`placement` of ``n_nodes``, with the process groups it needs created on every rank."""
        ranks = placement(n_nodes, self.size)
        for r in ranks:
            if len(r) > 1:
                self.group(r)
        return ranks

    def all_gather(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.size
        with collective(what):
            dist.all_gather_object(out, obj)
        return out

    def gather(self, obj: Any, what: str) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        out: list[Any] | None = [None] * self.size if self.is_root else None
        with collective(what):
            dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any, what: str, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        box = [obj]
        with collective(what):
            dist.broadcast_object_list(box, src=src)
        return box[0]

    def on_root(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 only; every rank returns its result or raises its gmgraph error."""
        if not self.is_root:
            outcome = self.broadcast(None, what)
            if outcome[0] == "error":
                raise getattr(errors, outcome[1], GmGraphError)(outcome[2])
            return outcome[1]
        try:
            value = fn()
        except GmGraphError as exc:
            self.broadcast(("error", type(exc).__name__, str(exc)), what)
            raise
        self.broadcast(("ok", value), what)
        return value


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective (dead peer, timeout) into one clear error."""
    try:
        yield
    except GmGraphError:
        raise
    except RuntimeError as exc:  # DistBackendError, DistNetworkError, gloo's errors
        where = f"rank {dist.get_rank()}: " if dist.is_initialized() else ""
        raise WorkerLost(
            f"{where}lost contact with the other workers while {what} ({_reason(exc)}). Another worker died or "
            f"stayed silent for more than {timeout_seconds():.0f} s ({TIMEOUT_ENV}); "
            "continue from the last checkpoint with --resume"
        ) from exc


def _reason(exc: Exception) -> str:
    """The first sentence of a backend error, without gloo's source-file prefix."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip().split("\n")[0])
    return text.split(". ")[0].rstrip(".") or type(exc).__name__


# -- launching on one machine -----------------------------------------------------------------


def launch(args: Sequence[str], nproc: int) -> int:
    """Run ``python -m gmgraph <args>`` in ``nproc`` workers on this machine; return the exit code.

    Uses torch's elastic launcher (what ``torchrun --standalone`` runs) with a
    rendezvous on a free local port. Each worker gets
    ``OMP_NUM_THREADS = cores // nproc`` unless the variable is already set.

    Raises:
        TrainError: when a worker failed for another reason than a user error
            (exit code 2, which rank 0 has already printed).
        KeyboardInterrupt: when the launcher was interrupted (the workers are stopped).
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failures are reported below
    try:
        with tempfile.TemporaryDirectory(prefix="gmgraph-launch-") as logs:  # the launcher's error files
            config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                                  rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                  logs_specs=DefaultLogsSpecs(log_dir=logs))
            elastic_launch(config, sys.executable)("-m", "gmgraph", *args)
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        if all(code == 2 for code in codes.values()):
            return 2
        detail = ", ".join(f"rank {rank} exit code {code}" for rank, code in sorted(codes.items()))
        raise TrainError(f"the distributed run failed ({detail}); see the workers' messages above") from None
    except SignalException:  # Ctrl-C or a kill: the launcher has stopped the workers
        raise KeyboardInterrupt from None
    return 0
