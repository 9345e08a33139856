import json
import subprocess
import sys

import pytest
import torch

from gmgraph.cli import main
from gmgraph.run_folder import REPORT_KEYS
from gmgraph.spaces import nb201

ONESHOT = ["--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "2", "--rounds", "1",
           "--evaluations", "6", "--final-epochs", "1", "--steps-per-epoch", "2", "--bn-batches", "1",
           "--batch-size", "16", "--sampler", "uniform", "--quiet", "--method", "oneshot"]
"""A tiny one-shot run (no split scoring)."""
TINY = [*ONESHOT, "--method", "gm", "--split-at", "1", "--labels", "1<-0,3<-2"]
"""A tiny GM run: 2 epochs split at 1, GM scoring 2 of NB201's 6 labels (enough to split)."""


def test_a_small_search_runs_end_to_end(finished_search):
    # The session's shared run (tests/conftest.py): synthetic data, 3 epochs split at 1 and 2, 1 final epoch.
    tmp_path = finished_search.out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(REPORT_KEYS) <= set(report)
    assert report["hardware"]["precision"] == "fp32"
    assert report["hardware"]["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto
    assert len(report["leaves"]) == 4 and len(report["split_tree"]) == 3
    assert report["budget"]["supernet_epochs"] == 7
    arch = nb201.parse((tmp_path / "arch.txt").read_text().strip())
    assert arch == report["arch"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["arch"] == arch and best["model"]
    from gmgraph.onnx_export import read_metadata

    assert read_metadata(tmp_path / "best.onnx")["arch"] == arch
    assert "<img" in (tmp_path / "report.html").read_text()
    out = finished_search.stdout
    assert "chosen architecture: |" in out and "split [root]" in out


def test_config_file_keys_mirror_the_flags(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('data = "synthetic"\nwidth = 4\ncells = 1\nepochs = 2\nsplit-at = [1]\nrounds = 1\n'
                      'evaluations = 3\nfinal_epochs = 0\nmethod = "random"\nsteps-per-epoch = 2\nbn_batches = 1\n'
                      'batch-size = 16\nexport = false\nhtml = false\n')
    assert main(["search", "--config", str(config), "--quiet", "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["fewshot"]["method"] == "random" and report["settings"]["fewshot"]["split_at"] == [1]
    assert report["settings"]["export"] is False and not (tmp_path / "run" / "best.onnx").exists()


def test_yaml_config_and_unknown_keys(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("search:\n  data: synthetic\n  width: 4\n  cells: 1\n  epochs: 2\n  split_at: [1]\n"
                      "  rounds: 1\n  evaluations: 3\n  final_epochs: 0\n  steps_per_epoch: 2\n  bn-batches: 1\n"
                      "  batch_size: 16\n  method: random\n  export: false\n  html: false\n")  # a split without gradient matching's cost
    assert main(["search", "--config", str(config), "--quiet", "--out", str(tmp_path / "run")]) == 0
    config.write_text("epoch: 3\n")
    assert main(["search", "--config", str(config), "--quiet", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown setting 'epoch'" in capsys.readouterr().err


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gmgraph", *args], capture_output=True, text=True, timeout=120)


def test_the_real_entry_point_prints_one_line_and_exits_2(tmp_path, capsys):
    # The one subprocess test (imports dominate its time): `python -m gmgraph` reaches main(), prints
    # exactly what main() prints in-process, and exits with its code. Every other error test calls main().
    args = ["search", "--epochs", "0", "--out", str(tmp_path / "out"), "--quiet"]
    done = run_cli(*args)
    assert done.returncode == main(args) == 2
    assert done.stderr == capsys.readouterr().err
    assert done.stderr.startswith("gmgraph: error: ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["--method", "magic"], "unknown method 'magic'; choose one of oneshot, exhaustive, gm"),
        (["--data", "cifar10"], "CIFAR-10 needs a data directory: pass root=DIR (--data-root DIR"),
        (["--method", "gm", "--split-at", "5", "--epochs", "3"], "split epochs must be between 1 and 2"),
        (["--search", "argmax"], "use --sampler darts or gdas"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["search", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert stderr.startswith("gmgraph: error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_unwritable_out_and_corrupt_checkpoint(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["search", *TINY, "--out", str(blocker / "run")]) == 2
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["search", *TINY, "--out", str(run_dir), "--resume"]) == 2
    stderr = capsys.readouterr().err
    assert "corrupt" in stderr and "Traceback" not in stderr
    assert main(["search", *TINY, "--out", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_of_a_missing_run(tmp_path, capsys):
    assert main(["search", *TINY, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_darts_sampler_with_argmax_search_takes_one_candidate_per_leaf(tmp_path):
    args = ["search", "--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "2", "--split-at", "1",
            "--rounds", "1", "--final-epochs", "0", "--sampler", "darts", "--search", "argmax",
            "--steps-per-epoch", "1", "--bn-batches", "1", "--batch-size", "16", "--method", "gm", "--labels", "1<-0,3<-2",
            "--export", "false", "--html", "false", "--quiet",
            "--out", str(tmp_path)]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["search"]["evaluations"] == len(report["leaves"]) == 2
    assert any(leaf["best_arch"] == report["arch"] for leaf in report["leaves"])


def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["search", "--device", "cuda", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert not (tmp_path / "out").exists()  # refused before any folder or data
    err = capsys.readouterr().err
    assert err == "gmgraph: error: --device cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto\n"
    assert main(["search", "--precision", "fp8", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "precision 'fp8' is not one of fp32, bf16, fp16" in capsys.readouterr().err


def test_sigterm_says_where_the_checkpoint_is_like_ctrl_c(tmp_path, monkeypatch, capsys):
    import os
    import signal

    import gmgraph.search_job as search_job

    monkeypatch.setattr(search_job, "_search_architectures", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    # after training (one-shot: no split scoring, which this claim does not need), with a checkpoint to name
    assert main(["search", *ONESHOT, "--out", str(tmp_path)]) == 143
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: terminated (SIGTERM); the last checkpoint (written after every epoch) is ")
    assert f"gmgraph search --out {tmp_path} --resume" in err and err.count("\n") == 1
    assert signal.getsignal(signal.SIGTERM) is handler  # main() puts the caller's handler back


def test_help_and_a_mistyped_command_answer_without_importing_torch():
    import subprocess
    import sys

    probe = ("import sys\nfrom gmgraph.cli import main\n"
             "for argv in (['--help'], ['serch']):\n"
             "    try:\n        main(argv)\n    except SystemExit as exc:\n        print('exit', exc.code)\n"
             "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-3:] == ["exit 0", "exit 2", "False"], done.stdout + done.stderr
    assert "search              few-shot NAS" in done.stdout
