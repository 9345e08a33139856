"""The run folder: one report reader for every command, and one run per folder at a time."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from gmgraph.cli import main
from gmgraph.errors import RunError
from gmgraph.run_folder import BEST, LOCK, REPORT_KEYS, Shape, locked, read_best, read_report


def test_a_lock_is_held_for_the_run_and_released_on_any_exit(tmp_path):
    with locked(tmp_path) as path:
        assert path.read_text().strip() == f"{os.getpid()}@{socket.gethostname()}"
        with pytest.raises(RunError, match="is in use by another gmgraph run"), locked(tmp_path):
            pass
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(KeyError), locked(tmp_path):
        raise KeyError("boom")
    assert not (tmp_path / LOCK).exists()


def test_a_lock_of_a_dead_process_is_taken_over_but_not_one_of_another_host(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(f"{dead.pid}@{socket.gethostname()}\n")
    with locked(tmp_path) as path:
        assert path.read_text().startswith(str(os.getpid()))
    (tmp_path / LOCK).write_text("1@some-other-machine\n")
    with pytest.raises(RunError, match=r"process 1@some-other-machine"), locked(tmp_path):
        pass


def test_a_second_search_into_a_busy_folder_is_refused_without_touching_it(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with locked(out):
        before = sorted(p.name for p in out.iterdir())
        assert main(["search", "--data", "synthetic", "--width", "4", "--cells", "1", "--quiet",
                     "--out", str(out)]) == 2
        assert sorted(p.name for p in out.iterdir()) == before
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and "is in use by another gmgraph run" in err and err.count("\n") == 1


@pytest.mark.parametrize("content, message", [
    ("{}", "not a complete gmgraph report (missing gmgraph_version"),
    ("[1, 2]", "it holds a list, not a table"),
    ("{not json", "is not readable JSON"),
])
def test_a_damaged_report_is_one_clear_error_for_every_command(tmp_path, capsys, content, message):
    (tmp_path / "report.json").write_text(content)
    with pytest.raises(RunError, match=re.escape(message)):
        read_report(tmp_path)
    for argv in (["show", "--run", str(tmp_path)], ["report", str(tmp_path)],
                 ["export", "--run", str(tmp_path), "--out", str(tmp_path / "x.onnx")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gmgraph: error: ") and message.split(" (")[0] in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_report_missing_one_key_names_it(tmp_path):
    report = {key: None for key in REPORT_KEYS if key != "hardware"}
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(RunError, match="missing hardware"):
        read_report(tmp_path)


def test_a_reports_network_is_read_from_its_settings_record_and_input(finished_search):
    report = read_report(finished_search.out)
    shape = Shape.of_report(report)
    assert shape == Shape(space="nb201", width=4, cells=1, num_classes=10, in_channels=3, image_size=(32, 32))
    assert read_best(finished_search.out / BEST)["network"] == shape.as_record()  # what the run itself recorded
    refused = {**report, "settings": {**report["settings"], "space": "nope"}}
    with pytest.raises(RunError, match=r"report.json does not describe a network .*unknown space 'nope'"):
        Shape.of_report(refused)
    flat = {**report, "input_shape": [3, 32]}
    with pytest.raises(RunError, match="not a network record"):
        Shape.of_report(flat)
