"""GPU-only tests: every test marked ``cuda`` is skipped ("needs CUDA") where torch sees no CUDA device.

CI machines have no GPU, so these run where one is lent: ``python -m pytest tests/gpu -q``.
"""

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped with 'needs CUDA' without one")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        # The closest marker, not item.keywords: a test *named* like "..._cuda" is no GPU test.
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
