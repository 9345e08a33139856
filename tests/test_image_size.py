"""Image sizes (issue 32, item 8): an imagefolder of mixed sizes is one clear error naming two files;
`gmgraph search --image-size N` resizes every image, and what the run writes says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gmgraph import data
from gmgraph.cli import main
from gmgraph.config import SearchSettings
from gmgraph.errors import ConfigError, DataError
from gmgraph.onnx_export import read_metadata
from gmgraph.settings import from_mapping
from tests.conftest import tiny_search


def _folder(root, sizes: dict[str, list[tuple[int, int]]]):
    """An imagefolder: ``sizes`` maps ``split/class`` to the (width, height) of each of its seeded RGB images."""
    rng = np.random.default_rng(0)
    for where, shapes in sizes.items():
        (root / where).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / where / f"{i}.png")
    return root


@pytest.fixture
def mixed(tmp_path):
    """Training images of 10x10, one of them 12x9 (width x height)."""
    return _folder(tmp_path / "mixed", {"train/a": [(10, 10), (10, 10)], "train/b": [(10, 10), (12, 9)],
                                        "val/a": [(10, 10)], "val/b": [(10, 10)]})


def test_images_of_another_size_are_one_clear_error(mixed):
    with pytest.raises(DataError) as caught:
        data.load("imagefolder", root=mixed)
    message = str(caught.value)
    assert "imagefolder images differ in size" in message
    assert f"{mixed / 'train/a/0.png'} is 10x10 but {mixed / 'train/b/1.png'} is 12x9 (width x height)" in message
    assert "image_size=N" in message and "--image-size N" in message


def test_image_size_resizes_every_image(mixed):
    loaders = data.load("imagefolder", root=mixed, image_size=8, batch_size=4)
    x, _ = next(iter(loaders.train))
    assert tuple(x.shape) == (4, 3, 8, 8)
    assert data.info(loaders).shape == (3, 8, 8)


def test_search_refuses_mixed_sizes_in_one_line(mixed, tmp_path, capsys):
    argv = ["search", "--data", "imagefolder", "--data-root", str(mixed), "--width", "4", "--cells", "1",
            "--epochs", "2", "--method", "gm", "--split-at", "1", "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: imagefolder images differ in size") and err.count("\n") == 1
    assert "--image-size N" in err and "Traceback" not in err


def test_image_size_is_a_checked_setting():
    assert from_mapping(SearchSettings, {"image-size": 12}).image_size == 12
    assert SearchSettings().image_size is None  # the data's own size, as before
    with pytest.raises(ConfigError, match="image-size must be a positive integer, got 0"):
        SearchSettings(image_size=0)
    with pytest.raises(ConfigError, match="synthetic images are generated at their size"):
        SearchSettings(data="synthetic", image_size=16)
    assert SearchSettings(image_size=12).shaping()["image_size"] == 12  # a resume must keep it


def test_search_with_image_size_trains_exports_and_predicts_at_that_size(tmp_path, capsys):
    out = tmp_path / "run"
    tiny_search(out, "digits", image_size=12, labels="1<-0,3<-2")  # GM scores 2 of the 6 labels: enough to split
    report = json.loads((out / "report.json").read_text())
    assert report["input_shape"] == [1, 12, 12] and report["settings"]["image_size"] == 12
    meta = read_metadata(out / "best.onnx")
    # digits are normalised with the stats of the resized images: the export must record those
    assert meta["preprocessing"] == data.preprocessing("digits", image_size=12)
    capsys.readouterr()
    assert main(["predict", str(out / "best.onnx"), "--data", "digits", "--show", "0"]) == 0
    assert "preprocessing: gmgraph.data.load('digits', image_size=12), as in training" in capsys.readouterr().out
