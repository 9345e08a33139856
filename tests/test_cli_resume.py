"""``gmgraph search --out DIR --resume`` (issue 32, item 6): the run's settings come from its folder, a flag
that contradicts them is one line before any data, a finished run says so and is left alone, and the outputs
of one invocation replace the folder's as a set."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

import gmgraph.search_job as search_job
from gmgraph import run_folder
from gmgraph.cli import main

TINY = ["--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "2", "--split-at", "1", "--rounds", "1",
        "--evaluations", "4", "--final-epochs", "0", "--steps-per-epoch", "2", "--bn-batches", "1", "--batch-size", "16",
        "--method", "gm", "--sampler", "uniform", "--labels", "1<-0,3<-2", "--quiet"]  # GM scores 2 of 6 labels


def _interrupt_after_training(monkeypatch) -> None:
    """The next run stops with Ctrl-C once its supernets are trained (its checkpoint is at the last epoch)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(search_job, "_search_architectures", interrupted)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed after training: checkpoint.pt and settings.json, no outputs; what the kill printed on stderr
    is in ``interrupted.txt`` beside the run's folder."""
    out = tmp_path_factory.mktemp("killed") / "run"
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stderr(stderr):
        _interrupt_after_training(monkeypatch)
        assert main(["search", *TINY, "--out", str(out)]) == 130
    assert sorted(p.name for p in out.iterdir()) == [run_folder.CHECKPOINT, run_folder.SETTINGS]
    (out.parent / "interrupted.txt").write_text(stderr.getvalue())
    return out


def _staged_onnx(staging) -> None:
    """Stands for the export of a run's best.onnx (about a second) where a test reads only which files a run wrote:
    it stages the file as ``run_folder.export_run`` does. The real export after a resume runs in
    test_a_kill_while_writing_outputs_leaves_the_earlier_ones_whole."""
    (staging / run_folder.ONNX).write_bytes(b"new")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, killed_run):
    """The killed run resumed to its end: its outputs as a set (best.onnx staged by _staged_onnx)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    shutil.copytree(killed_run, out)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(search_job, "export_run", _staged_onnx)
        assert main(["search", "--out", str(out), "--resume", "--quiet"]) == 0
    return out


@pytest.fixture
def killed(tmp_path, killed_run):
    """A fresh copy of the killed run for one test."""
    shutil.copytree(killed_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def no_data(monkeypatch):
    """Loading data fails the test: what is checked must be checked before."""
    monkeypatch.setattr(search_job.datasets, "load", lambda *a, **k: pytest.fail("data were loaded"))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and err.count("\n") == 1, err
    return err


def test_resume_finishes_an_interrupted_run(killed_run, killed, capsys):
    """Ctrl-C says where the checkpoint is and how to continue; a flag that shaped training is refused on resume,
    one that acts after it (or says where it runs) is not, and the resumed run trains nothing again.

    (Moved from tests/test_cli.py, which ran its own interrupted run: it shares this file's.)"""
    assert (killed_run.parent / "interrupted.txt").read_text() == (
        f"gmgraph: interrupted; the last checkpoint (written after every epoch) is {killed_run / 'checkpoint.pt'}; "
        f"continue with: gmgraph search --out {killed_run} --resume (it takes the run's settings)\n")
    for changed, difference in ((["--width", "8"], "--width 8 given, the run has 4"),
                                (["--sampler", "pada"], "--sampler pada given, the run has uniform"),
                                (["--lr", "0.1"], "--lr 0.1 given, the run has 0.05"),
                                (["--seed", "3"], "--seed 3 given, the run has 0")):
        assert main(["search", *TINY, *changed, "--out", str(killed), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gmgraph: error: ") and difference in err and err.count("\n") == 1
    # settings that act after training (or say where it runs) may change on resume
    assert main(["search", *TINY, "--evaluations", "5", "--device", "cpu", "--export", "false", "--html", "false",
                 "--out", str(killed),
                 "--resume"]) == 0
    report = json.loads((killed / run_folder.REPORT).read_text())
    assert report["budget"]["supernet_epochs"] == 1 + 2 and report["search"]["evaluations"] <= 5  # all trained


def test_resume_takes_every_setting_from_the_run(finished_run):
    report = json.loads((finished_run / run_folder.REPORT).read_text())
    started = json.loads((finished_run / run_folder.SETTINGS).read_text())
    assert report["settings"] == started  # nothing but --out and --resume was given
    assert (report["settings"]["width"], report["settings"]["train"]["epochs"]) == (4, 2)
    assert report["settings"]["search"]["evaluations"] == 4 and report["settings"]["final_epochs"] == 0
    assert report["budget"]["supernet_epochs"] == 3  # trained before the kill, not again


def test_a_flag_that_contradicts_the_run_names_it_with_both_values_before_the_data(killed, capsys, no_data):
    assert main(["search", "--out", str(killed), "--resume", "--width", "8", "--lr", "0.1", "--quiet"]) == 2
    err = _one_error_line(capsys)
    assert f"--resume: {killed} was trained with other settings" in err
    assert "--width 8 given, the run has 4; --lr 0.1 given, the run has 0.05" in err
    assert "leave those flags out" in err
    # the run's own values are no contradiction: a retyped command line resumes as before
    settings, changed = run_folder.resumed_settings(killed, {"width": 4, "lr": 0.05, "split-at": [1], "device": "auto"})
    assert changed == [] and settings.width == 4 and settings.fewshot.split_at == (1,)


def test_a_config_file_value_that_contradicts_the_run_is_refused_too(killed, tmp_path, capsys, no_data):
    config = tmp_path / "run.toml"
    config.write_text("[train]\nsampler = \"pada\"\n")
    assert main(["search", "--config", str(config), "--out", str(killed), "--resume", "--quiet"]) == 2
    assert "--sampler pada given, the run has uniform" in _one_error_line(capsys)


def test_settings_that_act_after_training_may_change_on_resume(killed, capsys):
    assert main(["search", "--out", str(killed), "--resume", "--evaluations", "2", "--export", "false",
                 "--html", "false"]) == 0
    report = json.loads((killed / run_folder.REPORT).read_text())
    assert report["settings"]["search"]["evaluations"] == 2 and report["search"]["evaluations"] <= 2
    assert report["settings"]["width"] == 4  # the rest from the run
    # --export false, --html false: every output but best.onnx and report.html, and the commands that write them
    assert report["settings"]["export"] is False and not (killed / run_folder.ONNX).exists()
    assert report["settings"]["html"] is False and not any(p.suffix in (".html", ".png") for p in killed.iterdir())
    out, err = capsys.readouterr()
    assert f"`gmgraph export --run {killed}` writes it" in err and "best.onnx" not in out.splitlines()[-1]
    assert f"`gmgraph report {killed}` draws it" in err and "report.html" not in out.splitlines()[-1]
    assert main(["export", "--run", str(killed)]) == 0 and (killed / run_folder.ONNX).is_file()
    assert main(["report", str(killed)]) == 0 and (killed / run_folder.HTML).is_file()


def test_resume_of_a_finished_run_says_so_and_changes_nothing(finished_run, capsys, monkeypatch):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    monkeypatch.setattr(search_job, "run_search", lambda *a, **k: pytest.fail("a finished run ran again"))
    assert main(["search", "--out", str(finished_run), "--resume"]) == 0
    assert f"{finished_run} is a finished run; nothing to resume" in capsys.readouterr().out
    assert main(["search", "--out", str(finished_run), "--resume", "--evaluations", "9"]) == 2
    err = _one_error_line(capsys)
    assert "is a finished run" in err and "--evaluations 9 given, the run has 4" in err
    assert {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()} == before


def test_a_damaged_checkpoint_is_refused_before_the_data(killed, capsys, no_data):
    (killed / run_folder.CHECKPOINT).write_bytes(b"not a checkpoint")
    assert main(["search", "--out", str(killed), "--resume", "--quiet"]) == 2
    assert str(killed / run_folder.CHECKPOINT) in _one_error_line(capsys)
    (killed / run_folder.SETTINGS).unlink()  # an older run: its settings come from the damaged checkpoint
    assert main(["search", "--out", str(killed), "--resume", "--quiet"]) == 2
    assert str(killed / run_folder.CHECKPOINT) in _one_error_line(capsys)


def test_a_run_older_than_settings_json_resumes_from_its_checkpoints_record(killed, capsys):
    (killed / run_folder.SETTINGS).unlink()
    # the checkpoint records what shaped training; what acts after it comes from the flags (or defaults)
    assert main(["search", "--out", str(killed), "--resume", "--lr", "0.1", "--quiet"]) == 2
    assert "--lr 0.1 given, the run has 0.05" in _one_error_line(capsys)
    assert main(["search", "--out", str(killed), "--resume", "--evaluations", "2", "--final-epochs", "0",
                 "--export", "false", "--html", "false", "--quiet"]) == 0
    settings = json.loads((killed / run_folder.REPORT).read_text())["settings"]
    assert (settings["width"], settings["train"]["steps_per_epoch"], settings["search"]["evaluations"]) == (4, 2, 2)


def test_a_kill_while_writing_outputs_leaves_the_earlier_ones_whole(killed, finished_run, monkeypatch):
    for path in finished_run.iterdir():  # the earlier outputs, marked, in a folder that is unfinished again
        if path.is_file() and path.name not in (run_folder.REPORT, run_folder.CHECKPOINT, run_folder.SETTINGS):
            (killed / path.name).write_bytes(b"old")
    earlier = sorted(p.name for p in killed.iterdir())

    def killed_while_drawing(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(search_job, "export_run", _staged_onnx)
    monkeypatch.setattr(search_job, "_render", killed_while_drawing)  # after report.json, best.pt and best.onnx
    assert main(["search", "--out", str(killed), "--resume", "--quiet"]) == 130
    assert sorted(p.name for p in killed.iterdir()) == earlier  # no new report.json or best.pt beside old ones
    assert all(p.read_bytes() == b"old" for p in killed.iterdir() if p.name not in (run_folder.CHECKPOINT, run_folder.SETTINGS))

    monkeypatch.undo()  # the real export from here on
    assert main(["search", "--out", str(killed), "--resume", "--quiet"]) == 0
    names = sorted(p.name for p in killed.iterdir())
    assert names == sorted(p.name for p in finished_run.iterdir())  # the whole set, no staging folder left
    assert not any(p.read_bytes() == b"old" for p in killed.iterdir())


def test_outputs_are_replaced_as_a_set_even_when_the_move_is_cut(tmp_path, monkeypatch):
    for name in (run_folder.REPORT, run_folder.BEST, run_folder.ONNX, run_folder.HTML):
        (tmp_path / name).write_text("old")
    moves = []
    real = run_folder.os.replace

    def cut_after_one(src, dst):
        if moves:
            raise KeyboardInterrupt
        moves.append(dst)
        real(src, dst)

    monkeypatch.setattr(run_folder.os, "replace", cut_after_one)
    with pytest.raises(KeyboardInterrupt), run_folder.replacing_outputs(tmp_path) as staging:
        for name in (run_folder.REPORT, run_folder.BEST, run_folder.ONNX, run_folder.HTML):
            (staging / name).write_text("new")
    left = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    assert run_folder.REPORT not in left  # unfinished: --resume completes it
    assert set(left.values()) == {"new"}  # the one file moved in; none of the earlier ones beside it
