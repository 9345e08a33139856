"""Small helpers exist once (issue 27): the onnxruntime session factory, first_line, the positive-int check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gmgraph.config import check_positive_int
from gmgraph.errors import ConfigError, DataError, first_line

PACKAGE = Path(__file__).resolve().parents[1] / "gmgraph"


def _files_matching(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if re.search(pattern, p.read_text()))


def test_onnxruntime_sessions_are_opened_in_one_place():
    assert _files_matching(r"InferenceSession\(|SessionOptions\(") == ["onnx_session.py"]


def test_one_first_line():
    assert _files_matching(r"def _?first_line\b") == ["errors.py"]
    assert _files_matching(r"splitlines\(\)\[0\]\[:") == ["errors.py"]


def test_one_positive_int_check_for_settings_data_and_flags():
    assert _files_matching(r"def _?(check_)?positive(_int)?\b") == ["config.py"]
    with pytest.raises(DataError, match="^batch_size must be a positive integer, got 0$"):
        check_positive_int("batch_size", 0, error=DataError)
    with pytest.raises(ConfigError, match="^--sample must be a positive integer, got False$"):
        check_positive_int("--sample", False)


def test_first_line_keeps_one_line_within_its_limit():
    assert first_line(RuntimeError("x" * 300 + "\nmore"), 200) == "x" * 200
    assert first_line(RuntimeError("  \n"), 200) == "RuntimeError"
