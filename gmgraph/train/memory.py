"""Will training fit in memory? An estimate made before anything is allocated.

The supernet is built on torch's ``meta`` device (shapes, no storage) and run
once on a meta batch, so even ``--width 100000`` costs nothing to estimate (a
small one, which is cheap to hold, runs one real image on the CPU instead). The
estimate is a floor, not a forecast: the supernet's weights and their SGD
momentum, plus the activations a training step keeps for its backward pass
(every op's under a weighted sampler such as darts, the ops outside the Choices
otherwise). A run whose floor exceeds the machine's memory cannot work, and is
refused with what would fit::

    >>> from gmgraph.spaces import nb201
    >>> need = estimate(lambda width: nb201.supernet(C=width, N=1, in_channels=1), 4, (1, 16, 16), batch=64)
    >>> need.params, need.total_bytes > need.weight_bytes
    (24982, True)

Worker processes (``--nproc``) each hold Python, torch and gmgraph, about what
this process holds (:func:`process_bytes`), on top of their share of training.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gmgraph.choice import Choice
from gmgraph.errors import ConfigError

Build = Callable[[int], nn.Module]
"""``build(width) -> nn.Module``: the untraced supernet at one width (the other sizes fixed)."""


@dataclass(frozen=True)
class TrainingMemory:
    """The floor of one process's training memory, in bytes.

    Attributes:
        params: parameters of the supernet (every candidate op).
        weight_bytes: the weights and, with momentum, SGD's momentum buffer of each.
        activation_bytes: what one training batch keeps for the backward pass.
        batch: images in that batch.
    """

    params: int
    weight_bytes: int
    activation_bytes: int
    batch: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    def describe(self) -> str:
        """What the floor is made of, for a message.

        >>> TrainingMemory(params=2_000_000, weight_bytes=16_000_000, activation_bytes=1_100_000_000, batch=64).describe()
        '1.1 GB (2.0 million parameters: 16 MB of weights and momentum; a batch of 64: 1.1 GB of activations)'
        """
        weights = "weights and momentum" if self.weight_bytes > 4 * self.params else "weights"
        return (f"{gb(self.total_bytes)} ({_many(self.params)} parameters: {gb(self.weight_bytes)} of {weights}; "
                f"a batch of {self.batch}: {gb(self.activation_bytes)} of activations)")


def _many(n: int) -> str:
    """``2.0 million``, ``15.4 trillion``: a count for people."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:,.1f} {word}"
    return f"{n:,}"


def estimate(build: Build, width: int, input_shape: Sequence[int], batch: int, *, every_op: bool = False,
             momentum: bool = True, element_bytes: int = 4) -> TrainingMemory:
    """The memory floor of training ``build(width)`` on batches of ``batch`` images of ``input_shape``.

    Args:
        every_op: the sampler runs every candidate op each step (darts); else one path.
        momentum: the optimiser keeps a momentum buffer per weight.
        element_bytes: bytes per activation (4 in fp32, 2 under bf16/fp16 autocast).
    """
    with torch.device("meta"):
        net = build(width)
    params = sum(p.numel() for p in net.parameters())
    per_image = _activations_per_image(_small_on_cpu(build, width, params) or net, input_shape, every_op)
    return TrainingMemory(params=params, weight_bytes=4 * params * (2 if momentum else 1),
                          activation_bytes=element_bytes * per_image * batch, batch=batch)


REAL_PASS_PARAMS = 20_000_000
"""Up to this many parameters the activations are counted on a real CPU copy: a meta forward runs every
op's shape rules in Python (0.6-1.8 s for a small MobileNet supernet), a real one image through a small
network takes milliseconds. The counts are the same: only shapes are read."""


def _small_on_cpu(build: Build, width: int, params: int) -> nn.Module | None:
    """``build(width)`` on the CPU when it is small (see :data:`REAL_PASS_PARAMS`), without touching the
    caller's random state; else None."""
    if params > REAL_PASS_PARAMS:
        return None
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        return build(width)


def _activations_per_image(net: nn.Module, input_shape: Sequence[int], every_op: bool) -> int:
    """Elements the leaf modules output for one image (inside the Choices only when every op runs)."""
    inside = {id(m) for c in net.modules() if isinstance(c, Choice) for m in c.ops.modules()}
    total = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and (every_op or id(module) not in inside):
            total[0] += output[0].numel()

    leaves = [m for m in net.modules() if next(m.children(), None) is None and not isinstance(m, Choice)]
    handles = [m.register_forward_hook(count) for m in leaves]
    device = next(net.parameters(), torch.empty(0, device="meta")).device
    for choice in (m for m in net.modules() if isinstance(m, Choice)):
        choice.set_weights(torch.ones(len(choice.ops), device=device))  # every op runs, so every op is seen
    try:
        with torch.no_grad():
            net.eval()(torch.zeros((1, *input_shape), device=device))
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: the weights alone are the floor
        return 0
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


# ------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class Budget:
    """What a device can hold: ``total`` bytes (None: unknown) and ``available`` now (None: unknown)."""

    where: str
    total: int | None
    available: int | None


def budget(device: torch.device) -> Budget:
    """The memory of ``device``: the GPU's, or this machine's (a container's limit when lower)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return Budget(f"the GPU ({torch.cuda.get_device_name(device)}) has", total, free)
    total = _physical_bytes()
    limit = _cgroup_limit()
    available = _meminfo("MemAvailable")
    if limit is not None:
        total = limit if total is None else min(total, limit)
        available = None if available is None else min(available, total)
    return Budget("this machine has", total, available)


def process_bytes() -> int:
    """Resident memory of this process (Python, torch and what it loaded)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cores() -> int:
    """CPU cores this process may run on."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _physical_bytes() -> int | None:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            value = int(Path(path).read_text().strip())
            if value < 2**60:  # cgroup v1 writes a huge number for "no limit"
                return value
    return None


def _meminfo(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def gb(n: float) -> str:
    """Bytes for people: ``gb(3.5e9) == '3.5 GB'``, ``gb(2e7) == '20 MB'``, ``gb(5e14) == '500.0 TB'``."""
    if n < 1e9:
        return f"{n / 1e6:,.0f} MB"
    if n >= 1e12:
        return f"{n / 1e12:,.1f} TB"
    return f"{n / 1e9:.1f} GB"


# ------------------------------------------------------------------ the checks


def check_training(build: Build, width: int, input_shape: Sequence[int], batch: int, device: torch.device, *,
                   every_op: bool = False, momentum: bool = True, element_bytes: int = 4,
                   workers: int = 1) -> str | None:
    """Refuse a training that cannot fit ``device``; a warning line when it may not fit what is free now.

    ``workers``: processes of this machine that each train such a supernet (``--nproc``).

    Raises:
        ConfigError: one line with the estimate, the memory there is, and the largest
            ``--width`` (when the weights alone do not fit) or ``--batch-size`` that fits.
    """
    need = estimate(build, width, input_shape, batch, every_op=every_op, momentum=momentum,
                    element_bytes=element_bytes)
    room = budget(device)
    workers = workers if device.type == "cpu" else 1  # the workers share this machine's memory, not one GPU's
    share = room.total // workers if room.total is not None else None
    whose = f" per worker ({workers} workers)" if workers > 1 else ""
    if share is not None and need.total_bytes > share:
        raise ConfigError(f"this run cannot fit in memory: training needs at least {need.describe()}{whose}, "
                          f"and {room.where} {gb(room.total)}; {_what_fits(build, width, need, share)}")
    if room.available is not None and workers * need.total_bytes > room.available:
        return (f"warning: training needs at least {need.describe()}{whose}, and only {gb(room.available)} "
                f"is free now: it may run out of memory")
    return None


def _what_fits(build: Build, width: int, need: TrainingMemory, room: int) -> str:
    """The suggestion: a smaller batch when the weights fit, else the widest supernet that fits at all."""
    if need.weight_bytes < room and need.activation_bytes > 0:
        per_image = need.activation_bytes / need.batch
        return f"--batch-size {max(1, int((room - need.weight_bytes) / per_image)):,} or less fits"
    fits = _widest(build, width, need, room)
    return (f"--width {fits:,} or less fits" if fits else
            "even --width 1 does not fit: choose fewer --cells or a machine with more memory")


def _widest(build: Build, width: int, need: TrainingMemory, room: int) -> int:
    """The largest width whose floor fits ``room`` (0: none), by bisection on meta builds."""
    per_param = need.weight_bytes / max(need.params, 1)

    def fits(w: int) -> bool:
        with torch.device("meta"):
            params = sum(p.numel() for p in build(w).parameters())
        return per_param * params + need.activation_bytes * w / width <= room  # activations grow with the channels

    low, high = 0, width  # fits(low) (0: nothing), not fits(high)
    while high - low > 1 and high - low > low // 50:  # to within 2%: the floor is an estimate anyway
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def check_workers(nproc: int) -> list[str]:
    """Refuse ``nproc`` worker processes that cannot fit this machine's memory; warnings with the numbers
    when they outnumber its cores or may not fit what is free now.

    Each worker is counted as this process's resident memory (Python, torch, gmgraph); each worker
    checks its share of training itself (:func:`check_training`).

    Raises:
        ConfigError: one line naming the memory needed and the most workers that fit.
    """
    each, room, n = process_bytes(), budget(torch.device("cpu")), cores()
    need = (nproc + 1) * each  # the launcher waits beside its workers
    notes = []
    if room.total is not None and need > room.total:
        most = max(room.total // each - 1, 0)
        raise ConfigError(f"--nproc {nproc} cannot fit in memory: {nproc} workers and their launcher need about "
                          f"{gb(need)} ({gb(each)} each for Python and torch, before any training), and this machine "
                          f"has {gb(room.total)}; " + (f"--nproc {most} or fewer fits" if most > 1 else
                                                       "run without --nproc"))
    if room.available is not None and need > room.available:
        notes.append(f"warning: --nproc {nproc} needs about {gb(need)} ({nproc + 1} processes x {gb(each)}) before "
                     f"any training, and only {gb(room.available)} is free now: workers may be killed")
    if nproc > n:
        notes.append(f"warning: --nproc {nproc} starts more workers than this machine's {n} cores: they take turns "
                     f"on the cores and wait for each other at every step, so this is slower than --nproc {n}")
    return notes


def element_bytes(precision: str) -> int:
    """Bytes per activation: 2 under bf16/fp16 autocast, 4 in fp32."""
    return 2 if precision in ("bf16", "fp16") else 4

