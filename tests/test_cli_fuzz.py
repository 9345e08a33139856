"""Bad input to any command: exit 2, one line `gmgraph: error: ...`, no traceback, and no file created or changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gmgraph.cli import main

TINY = ["--data", "synthetic", "--width", "4", "--cells", "1", "--quiet"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes."""
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace of damaged inputs: files a user might point a command at by mistake."""
    (tmp_path / "text.pt").write_text("this is not a checkpoint\n")
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 7)
    (tmp_path / "model.onnx").write_text("not onnx")
    for name, content in (("empty", "{}"), ("list", "[1, 2]"), ("broken", "{not json")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(content)
    configs = {"split.toml": "split_at = 1\n", "lr.toml": 'lr = "fast"\n', "unknown.toml": "learning_rate = 1\n",
               "table.toml": "[train]\nepochs = 0\n", "bad.toml": "epochs = = 3\n", "list.yaml": "- 1\n- 2\n"}
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "a-file").write_text("x")
    return tmp_path


CASES = [
    # search: flags, config files, folders
    (["search", "--epochs", "0"], "epochs must be a positive integer"),
    (["search", "--epochs", "many"], "epochs must be an integer"),
    (["search", "--seed", "-5"], "seed must be an integer of 0 or more"),
    (["search", "--steps-per-epoch", "0"], "steps-per-epoch must be a positive integer"),
    (["search", "--split-at", "a,b"], "split-at must be an integer"),
    (["search", "--method", "gm", "--split-at", "10", "--epochs", "10"], "split epochs must be between 1 and 9"),
    (["search", "--split-at", "3"], "--method oneshot never splits: add --method gm"),
    (["search", "--method", "magic"], "unknown method 'magic'"),
    (["search", "--sampler", "magic"], "unknown sampler 'magic'"),
    (["search", "--search", "argmax"], "use --sampler darts or gdas"),
    (["search", "--balanced", "maybe"], "balanced must be true or false"),
    (["search", "--precision", "fp8"], "precision 'fp8' is not one of"),
    (["search", "--device", "tpu"], "device 'tpu' is not one of"),
    (["search", "--config", "{ws}/split.toml"], "split-at must be a list"),
    (["search", "--config", "{ws}/lr.toml"], "lr must be a number, got 'fast'"),
    (["search", "--config", "{ws}/unknown.toml"], "unknown setting 'learning_rate'"),
    (["search", "--config", "{ws}/table.toml"], "epochs must be a positive integer"),
    (["search", "--config", "{ws}/bad.toml"], "cannot parse"),
    (["search", "--config", "{ws}/list.yaml"], "must hold a table of settings"),
    (["search", "--config", "{ws}/none.toml"], "does not exist"),
    (["search", "--resume"], "no checkpoint in"),
    (["search", "--out", "{ws}/a-file/run"], "cannot write to --out"),
    (["search", "--nproc", "0"], "--nproc must be a positive integer, got 0"),
    # export, show, report, predict, rank: damaged files and bad flags
    (["export", "--checkpoint", "{ws}/text.pt", "--out", "{ws}/x.onnx"], "is corrupt or not a torch file"),
    (["export", "--checkpoint", "{ws}/random.pt", "--out", "{ws}/x.onnx"], "is corrupt or not a torch file"),
    (["export", "--arch", "|nor_conv_3x3~0|", "--out", "{ws}/x.onnx"], "node part"),
    (["export", "--arch", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--opset", "3", "--out", "{ws}/x.onnx"],
     "opset must be an integer from 18"),
    (["export", "--run", "{ws}/empty"], "not a complete gmgraph report"),
    (["export", "--run", "{ws}/broken"], "is not readable JSON"),
    (["show", "--run", "{ws}/list"], "not a table"),
    (["show", "--space", "nope"], "unknown space 'nope'"),
    (["report", "{ws}/empty"], "not a complete gmgraph report"),
    (["report", "{ws}"], "holds no report.json"),
    (["predict", "{ws}/model.onnx"], "model.onnx"),
    (["predict", "{ws}/missing.onnx"], "missing.onnx"),
    (["rank", "--metric", "magic"], "magic"),
    (["bogus"], "invalid choice: 'bogus'"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(ws, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(ws)  # a run without --out would go to ./runs: it must not appear either
    argv = [a.format(ws=ws) for a in argv]
    if argv[0] == "search" and "--out" not in argv:
        argv += ["--out", str(ws / "out")]
    argv += TINY if argv[0] == "search" else []
    before = snapshot(ws)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's exit
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, err
    assert err.startswith("gmgraph: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err and "\x1b[" not in err
    assert snapshot(ws) == before


def test_the_workspace_really_is_damaged(ws):
    assert json.loads((ws / "empty" / "report.json").read_text()) == {}
