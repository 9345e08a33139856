"""Check and time the whole GPU path in one command: kernels, training steps, sync freedom, a search run.

Meant for a machine with one CUDA GPU and its own torch (no install needed;
run from the repository root)::

    PYTHONPATH=. python benchmarks/bench_gpu.py            # about 3-5 minutes on one H100
    PYTHONPATH=. python benchmarks/bench_gpu.py --quick    # a smoke run: fewer steps and cases

It prints a table and one JSON line per row, and writes the table to
``benchmarks/results/gpu.md`` (and to ``$OUT/gpu.md`` when ``OUT`` is set).
Sections, in this order (cheap correctness checks first), each timing against
a baseline measured in the same run:

1. kernel: the fused mixed op (Triton) against a float64 reference: fp32 shapes
   (1x1, odd sizes, K = 0..3, skip and pool each present or absent), channels_last
   inputs, bf16 and fp16.
2. sync: three steady-state steps of every sampler under
   ``torch.cuda.set_sync_debug_mode("error")``.
3. darts: one DARTS step (architecture step + weight step) of the NB201 supernet
   (C=16, N=5, 32x32), batch 64 and 256: unfused / fused, eager / CUDA graphs,
   fp32 and bf16, and once with ``cudnn.benchmark``; ratios against the unfused
   eager fp32 step of the same batch.
4. search: ``gmgraph search --device cuda`` on digits with short settings; its
   report.json must say where it ran.
5. single-path: a uniform (SPOS) supernet step against the step of derived
   networks of random architectures (median over them).
6. elastic: a step of one subnet of MobileNetV2 with elastic kernels (3, 5, 7),
   run through the shared 7x7 weights (the supernet restricted to that subnet),
   against the same subnet derived as a plain network (benchmarks/bench_elastic.py
   is the CPU version).

Timings are wall-clock milliseconds per step over ``--steps`` steps after
``--warmup`` untimed steps (default 3), the GPU synchronised only at the ends,
median of ``--repeats`` runs. The table is rewritten after every section, so a
run stopped from outside keeps what it measured; step cases that would start
after ``--budget`` seconds (default 270) are skipped and listed as skipped, and
a section that breaks is a failed row while the others still run. The exit
status is 1 when any row failed.

A GPU is lent for minutes, so the script is rehearsed on the CPU first: every
section runs through the same code at toy sizes, and writes only where
``--out`` says (never over the committed GPU table)::

    python benchmarks/bench_gpu.py --device cpu --smoke --out /tmp/gpu_smoke.md
    TRITON_INTERPRET=1 GMGRAPH_KERNELS=triton python benchmarks/bench_gpu.py --device cpu --smoke --out /tmp/g.md

The second runs the Triton kernels in Triton's interpreter (the test suite does
both). CPU figures say nothing about a GPU; the table's title names the device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _table  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import kernels  # noqa: E402
from gmgraph.device import no_host_sync  # noqa: E402
from gmgraph.files import write_text  # noqa: E402
from gmgraph.kernels import mixed_op  # noqa: E402
from gmgraph.kernels.reference import mixed_op as reference_mixed_op  # noqa: E402
from gmgraph.passes import derive, fuse  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig  # noqa: E402

ROWS: list[dict] = []
clock = time.perf_counter
"""Seconds for the budget and the timings; tests replace it, so that no test depends on how fast the machine is."""


@dataclass(frozen=True)
class Sizes:
    """What the sections build: the supernet, its images, the batches and the kernel shapes."""

    C: int = 16
    N: int = 5
    hw: int = 32
    batches: tuple[int, ...] = (64, 256)
    kernel_shapes: tuple[tuple[int, int, int, int], ...] = ((1, 1, 1, 1), (7, 3, 17, 19), (1, 1, 127, 129),
                                                           (64, 16, 32, 32))
    derived: int = 5


FULL = Sizes()
SMOKE = Sizes(C=4, N=1, hw=8, batches=(4, 8), kernel_shapes=((1, 1, 1, 1), (2, 3, 5, 4)), derived=2)
"""A rehearsal of every code path at toy sizes (``--smoke``), for the CPU or a first look at a GPU."""


def row(section: str, case: str, **values) -> dict:
    entry = {"section": section, "case": case, **values}
    ROWS.append(entry)
    print(json.dumps(entry), flush=True)
    return entry


# ------------------------------------------------------------------ 1. kernel


def kernel_cases(args):
    shapes = args.sizes.kernel_shapes
    largest = shapes[-1]
    for shape in shapes[:2] if args.quick else shapes:
        for k in (0, 1, 2, 3):
            for skip, pool in ((True, True), (False, True), (True, False), (False, False)):
                if k or skip or pool:  # K=0 with neither term is an empty sum
                    yield shape, k, skip, pool, torch.float32, "nchw"
    yield (2, 3, 5, 4), 1, True, True, torch.float32, "channels_last"  # the case once measured wrong on an H100
    yield largest, 2, True, True, torch.float32, "channels_last"
    yield largest, 2, True, True, torch.bfloat16, "nchw"
    if args.device.type == "cuda":  # fp16 arithmetic is a GPU feature; the CPU rehearsal leaves it out
        yield largest, 2, True, True, torch.float16, "nchw"


def check_kernels(args) -> None:
    device = args.device
    g = torch.Generator(device=device).manual_seed(0)
    for shape, k, skip, pool, dtype, layout in kernel_cases(args):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format

        def make(*size, dtype=dtype, fmt=fmt):
            return torch.randn(*size, generator=g, device=device).to(dtype).contiguous(memory_format=fmt)

        x = make(*shape).requires_grad_()
        ys = [make(*shape).requires_grad_() for _ in range(k)]
        n = k + int(skip) + int(pool)
        w = torch.randn(k, generator=g, device=device).to(dtype).requires_grad_()
        w_skip = torch.randn((), generator=g, device=device).to(dtype).requires_grad_() if skip else None
        w_pool = torch.randn((), generator=g, device=device).to(dtype).requires_grad_() if pool else None
        try:
            out = mixed_op(x, ys, w, w_skip, w_pool)
            upstream = torch.randn(out.shape, generator=g, device=device).to(dtype)
            grads = torch.autograd.grad(out, [x, *ys, w], upstream, allow_unused=True)
            ref_inputs = [t.detach().double().requires_grad_() for t in (x, *ys, w)]
            rx, rys, rw = ref_inputs[0], ref_inputs[1:1 + k], ref_inputs[-1]
            rskip = w_skip.detach().double() if skip else None
            rpool = w_pool.detach().double() if pool else None
            ref = reference_mixed_op(rx, rys, rw, rskip, rpool)
            ref_grads = torch.autograd.grad(ref, ref_inputs, upstream.double(), allow_unused=True)
            errors = [_rel(out, ref)] + [_rel(a, b) for a, b in zip(grads, ref_grads) if a is not None and b is not None]
            error = max(errors)
            limit = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
            row("kernel", f"{'x'.join(map(str, shape))} K={k} skip={int(skip)} pool={int(pool)} "
                f"{str(dtype).split('.')[-1]} {layout}", max_rel_error=error, limit=limit,
                ok=bool(error <= limit), terms=n, backend=kernels.backend(x))
        except Exception as exc:  # a case that cannot run is a failed check, not a crash of the script
            row("kernel", f"{'x'.join(map(str, shape))} K={k} {layout}", ok=False, error=f"{type(exc).__name__}: {exc}")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().clamp_min(1e-12)
    return float((a - b).abs().max() / scale)


# ------------------------------------------------------------------ 2-4. steps


def batches(args, batch: int, n: int, classes: int = 10):
    g = torch.Generator(device=args.device).manual_seed(batch)
    hw = args.sizes.hw
    return [(torch.randn(batch, 3, hw, hw, generator=g, device=args.device),
             torch.randint(classes, (batch,), generator=g, device=args.device)) for _ in range(n)]


class _Data:
    """What a trainer reads from loaders: a dataset and a batch size (the steps get their tensors directly)."""

    def __init__(self, batch: int, hw: int):
        self.dataset = torch.utils.data.TensorDataset(torch.zeros(batch, 3, hw, hw), torch.zeros(batch, dtype=torch.long))
        self.batch_size = batch


def trainer_for(args, gm, sampler: str, batch: int, **config) -> SupernetTrainer:
    hw = args.sizes.hw
    data = (_Data(batch, hw), [(torch.zeros(batch, 3, hw, hw), torch.zeros(batch, dtype=torch.long))])
    return SupernetTrainer(gm, data, TrainConfig(sampler=sampler, device=str(args.device), **config), seed=0)


def supernet(args, fused: bool = False) -> torch.fx.GraphModule:
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=args.sizes.C, N=args.sizes.N, num_classes=10))
    return fuse(gm) if fused else gm


def out_of_time(args, section: str, case: str) -> bool:
    """Past ``--budget``: record ``case`` as skipped (so the table says what was not measured) and say so."""
    if clock() < args.deadline:
        return False
    row(section, case, skipped=f"past the {args.budget:.0f} s budget")
    return True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: SupernetTrainer, data, steps: int, repeats: int, warmup: int = 3) -> float:
    """Median over ``repeats`` of the wall ms per step of ``steps`` steps (synchronised at both ends), after
    ``warmup`` untimed steps."""
    val = data[::-1]
    for i in range(warmup):  # first-batch checks, graph capture, kernel compilation
        trainer.train_step(*data[i % len(data)][:2], None, val[i % len(val)])
    runs = []
    for _ in range(repeats):
        synchronize(trainer.device)
        start = clock()
        for i in range(steps):
            trainer.train_step(*data[i % len(data)][:2], None, val[i % len(val)])
        synchronize(trainer.device)
        runs.append((clock() - start) * 1000 / steps)
    return statistics.median(runs)


DARTS_CASES = ((False, False, "fp32", False), (True, False, "fp32", False), (False, True, "fp32", False),
               (True, True, "fp32", False), (True, True, "fp32", True), (False, True, "bf16", False),
               (True, True, "bf16", False))
"""(fused, CUDA graphs, precision, cudnn.benchmark) of each DARTS row; the first is every batch's baseline.

gmgraph leaves ``torch.backends.cudnn.benchmark`` off (run-to-run reproducible
algorithm choice); the row with it on measures what that costs."""


def darts_case_name(batch: int, fused: bool, graphs: bool, precision: str, tuned: bool) -> str:
    return (f"batch {batch} {'fused' if fused else 'unfused'} {'graphs' if graphs else 'eager'} {precision}"
            + (" cudnn.benchmark" if tuned else ""))


def darts_steps(args) -> None:
    for batch in args.sizes.batches:
        data = batches(args, batch, 4)
        baseline = None  # the first case's ms; a ratio only against it
        for fused, graphs, precision, tuned in DARTS_CASES:
            case = darts_case_name(batch, fused, graphs, precision, tuned)
            if out_of_time(args, "darts", case):
                continue
            was = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = tuned
            try:
                trainer = trainer_for(args, supernet(args, fused), "darts", batch, cuda_graphs=graphs,
                                      precision=precision)
                ms = time_steps(trainer, data, args.steps, args.repeats, args.warmup)
                captured = trainer._graphs.get("weights") is not None
                if (fused, graphs, precision, tuned) == DARTS_CASES[0]:
                    baseline = ms
                row("darts", case, ms=ms, vs_unfused_eager_fp32=ms / baseline if baseline else None,
                    graph_captured=captured)
            except Exception as exc:
                row("darts", case, ok=False, error=f"{type(exc).__name__}: {exc}")
            finally:
                torch.backends.cudnn.benchmark = was
            if args.device.type == "cuda":
                torch.cuda.empty_cache()


def single_path_steps(args) -> None:
    for batch in args.sizes.batches:
        data = batches(args, batch, 4)
        for precision in ("fp32", "bf16"):
            if out_of_time(args, "single-path", f"batch {batch} {precision}"):
                continue
            try:
                gm = supernet(args)
                g = torch.Generator().manual_seed(1)
                derived = []
                for _ in range(args.sizes.derived):
                    net = derive(gm, gmgraph.sample(gm, g), inherit=False)
                    derived.append(time_steps(trainer_for(args, net, "uniform", batch, precision=precision),
                                              data, args.steps, args.repeats, args.warmup))
                base = statistics.median(derived)
                ms = time_steps(trainer_for(args, supernet(args), "uniform", batch, precision=precision),
                                data, args.steps, args.repeats, args.warmup)
                row("single-path", f"batch {batch} {precision}", ms=ms, derived_ms=base, ratio=ms / base)
            except Exception as exc:
                row("single-path", f"batch {batch} {precision}", ok=False, error=f"{type(exc).__name__}: {exc}")


def elastic_steps(args) -> None:
    import torchvision

    from gmgraph.passes import restrict
    from gmgraph.spaces import from_model

    for batch in args.sizes.batches:
        case = f"batch {batch} mobilenet_v2 elastic kernels"
        if out_of_time(args, "elastic", case):
            continue
        try:
            torch.manual_seed(0)
            gm = gmgraph.trace(from_model.supernetify(torchvision.models.mobilenet_v2(num_classes=10),
                                                      from_model.elastic_kernels((3, 5, 7))))
            arch = gmgraph.sample(gm, torch.Generator().manual_seed(1))
            data = batches(args, batch, 4)
            one = restrict(gm, {label: [op] for label, op in arch.items()})  # its only arch: this subnet
            ms = time_steps(trainer_for(args, one, "uniform", batch), data, args.steps, args.repeats, args.warmup)
            plain = time_steps(trainer_for(args, derive(gm, arch), "uniform", batch), data, args.steps, args.repeats,
                               args.warmup)
            row("elastic", case, ms=ms, plain_ms=plain, ratio=ms / plain)
        except Exception as exc:
            row("elastic", case, ok=False, error=f"{type(exc).__name__}: {exc}")


def sync_check(args) -> None:
    data = batches(args, args.sizes.batches[0], 6)
    cases = [(name, name, {}) for name in ("uniform", "darts", "gdas", "pada", "snas", "proxyless")]
    for case, sampler, config in [*cases, ("darts-order-2", "darts", {"darts_order": 2})]:
        try:
            trainer = trainer_for(args, supernet(args), sampler, args.sizes.batches[0], **config)
            for x, y in data[:2]:
                trainer.train_step(x, y, None, data[-1])
            with no_host_sync(trainer.device):
                for x, y in data[2:5]:
                    trainer.train_step(x, y, None, data[-1])
            synchronize(trainer.device)
            # On the CPU no_host_sync checks nothing: the row says the steps ran, not that they are sync-free.
            row("sync", case, ok=True, checked=trainer.device.type == "cuda")
        except Exception as exc:
            row("sync", case, ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def search_flags(args) -> list[str]:
    """``gmgraph search`` flags of the search section (shorter with --quick or --smoke)."""
    if args.sizes == SMOKE:
        return ["--device", str(args.device), "--method", "gm", "--epochs", "2", "--split-at", "1", "--evaluations", "2",
                "--final-epochs", "1", "--width", "4", "--cells", "1", "--rounds", "1", "--steps-per-epoch", "2",
                "--batch-size", "16", "--bn-batches", "1",
                "--data", "synthetic", "--labels", "3<-1,3<-2",  # no digits to load, 2 labels to score: same code
                "--export", "false"]  # the export reads best.pt's CPU copy: no GPU path in it, seconds on a CPU
    return ["--device", str(args.device), "--method", "gm", "--epochs", "4" if args.quick else "6",
            "--split-at", "2,3" if args.quick else "2,4", "--evaluations", "20",
            "--final-epochs", "1" if args.quick else "2"]


def search_run(args) -> None:
    out = Path(tempfile.mkdtemp()) / "run"
    flags = search_flags(args)
    start = clock()
    limit = max(30.0, min(240.0, args.deadline - start))
    try:
        done = subprocess.run([sys.executable, "-m", "gmgraph", "search", *flags, "--quiet", "--out", str(out)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              timeout=limit)
    except subprocess.TimeoutExpired:
        row("search", "gmgraph search " + " ".join(flags), ok=False, error=f"stopped after {limit:.0f} s")
        return
    seconds = clock() - start
    try:
        hardware = json.loads((out / "report.json").read_text())["hardware"]
    except (OSError, KeyError, json.JSONDecodeError):
        hardware = {}
    row("search", "gmgraph search " + " ".join(flags), seconds=seconds,
        ok=done.returncode == 0 and str(hardware.get("device", "")).startswith(args.device.type),
        hardware=hardware, stderr=done.stderr.strip().splitlines()[-1:] if done.returncode else [])


# ------------------------------------------------------------------ report


def table() -> str:
    lines = []
    for section, _ in SECTIONS:
        rows = [r for r in ROWS if r["section"] == section]
        if not rows:
            continue
        keys = [k for k in rows[0] if k not in ("section",)]
        keys += [k for r in rows for k in r if k not in keys and k != "section"]
        lines.append(f"\n### {section}\n")
        lines.append(_table.markdown(keys, [[_fmt(r.get(k, "")) for k in keys] for r in rows]))
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


SECTIONS = (("kernel", check_kernels), ("sync", sync_check), ("darts", darts_steps), ("search", search_run),
            ("single-path", single_path_steps), ("elastic", elastic_steps))
"""Cheap correctness checks first, so that a run cut short still returns them."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and kernel cases (a smoke run)")
    p.add_argument("--smoke", action="store_true", help="toy sizes (C=4, N=1, 8x8, batches 4 and 8): a rehearsal")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a rehearsal (needs --out)")
    p.add_argument("--out", type=Path, help="write the table here (default benchmarks/results/gpu.md on CUDA)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed steps before each timing: first-batch checks, graph capture, kernel compilation "
                        "(default 3; at least 1)")
    p.add_argument("--budget", type=float, default=270.0,
                   help="seconds: step cases that would start later are skipped and listed as such (default 270; inf: none)")
    p.add_argument("--skip", default="",
                   help="sections to skip, comma separated (kernel,darts,single-path,sync,search,elastic)")
    args = p.parse_args(argv)
    args.sizes = SMOKE if args.smoke else FULL
    if args.quick or args.smoke:
        args.steps, args.repeats = min(args.steps, 5), 1
    if args.warmup < 1:
        p.error("--warmup: at least 1 (the first step checks the batch; CUDA graphs are captured in the warm-up)")
    unknown = set(filter(None, args.skip.split(","))) - {name for name, _ in SECTIONS}
    if unknown:
        p.error(f"--skip: no section {', '.join(sorted(unknown))}")
    args.skip = set(filter(None, args.skip.split(",")))
    return args


def targets(args) -> list[Path]:
    """Where the table goes: --out, else the committed GPU table (CUDA only); and $OUT/gpu.md when OUT is set."""
    paths = [args.out] if args.out else []
    if not paths and args.device.type == "cuda":
        paths.append(ROOT / "benchmarks" / "results" / "gpu.md")
    if os.environ.get("OUT"):
        paths.append(Path(os.environ["OUT"]) / "gpu.md")
    return paths


def report(device_name: str, command: str, seconds: float) -> str:
    return (f"# GPU path: {device_name}\n\ntorch {torch.__version__}, `python benchmarks/bench_gpu.py {command}`, "
            f"{seconds:.0f} s. Step timings are wall ms per step (median of runs); ratios against the baseline of "
            "the same section and batch in this run.\n" + table() + "\n")


def save(args, text: str) -> None:
    for path in targets(args):
        write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device; nothing to measure here "
              "(rehearse with --device cpu --smoke --out FILE)", file=sys.stderr)
        return 2
    if not targets(args):
        print("bench_gpu: a CPU run needs --out: benchmarks/results/gpu.md holds GPU figures only", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU (a rehearsal, no GPU)"
    print(f"device: {name}; torch {torch.__version__}; gmgraph {gmgraph.__version__}", flush=True)
    started = clock()
    args.deadline = started + args.budget
    command = " ".join(argv if argv is not None else sys.argv[1:])
    for section_name, section in SECTIONS:
        if section_name in args.skip:
            continue
        t = clock()
        try:
            section(args)
        except Exception as exc:  # a broken section is a failed row; the others still run
            row(section_name, "the section itself", ok=False, error=f"{type(exc).__name__}: {exc}")
        print(f"[{section_name}: {clock() - t:.0f} s]", flush=True)
        save(args, report(name, command, clock() - started))  # a run cut short keeps what it measured
    text = report(name, command, clock() - started)
    print(text)
    save(args, text)
    failed = [r for r in ROWS if r.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
