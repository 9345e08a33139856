"""``predict --images`` prepares pictures as the model's training data was prepared (issue 15, item 4).

The preprocessing (:func:`gmgraph.data.preprocessing`) rides in the ONNX metadata that
``export_run`` writes; ``predict --images`` applies it, ``--normalize`` overrides it, and a
file without it gets ImageNet's mean/std as before, with a note.

Digits are scikit-learn's ink levels 0..16. No integer picture holds them exactly (16 does
not divide 255 or 65535), so the pictures here are 16-bit grey PNGs of ``round(v * 65535 / 16)``:
each level is off by at most 0.5 / 65535 of full scale (1.2e-4 ink levels, 2e-5 after
normalising), far below what moves a prediction; the tests compare predictions one by one.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from gmgraph import data
from gmgraph.cli import main
from gmgraph.errors import DataError
from gmgraph.onnx_export import PREPROCESSING_KEY, read_metadata
from gmgraph.run_folder import export_run
from tests.conftest import tiny_search

ACCURACY = re.compile(r"^accuracy: (\d\.\d{4}) \((\d+)/(\d+) (.+)\)$", re.M)
ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+[01]\.\d{3}$", re.M)
DIGITS = load_digits()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A short but real `gmgraph search` on digits: a model that has learnt something (about 0.8)."""
    out = tmp_path_factory.mktemp("digits-run")
    # --steps-per-epoch caps the final training too: 10 x 3 steps, about two passes over the digits
    # (GM scores 2 of the 6 labels: on digits the same split as scoring all six)
    tiny_search(out, "digits", evaluations=2, final_epochs=10, steps_per_epoch=3, labels="1<-0,3<-2")
    return out


@pytest.fixture(scope="module")
def model(digits_run):
    return digits_run / "best.onnx"  # written by export_run at the end of the search


@pytest.fixture(scope="module")
def old_model(model, tmp_path_factory):
    """The same network as a file from before preprocessing was recorded."""
    proto = onnx.load(str(model))
    kept = [p for p in proto.metadata_props if p.key != PREPROCESSING_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    path = tmp_path_factory.mktemp("old") / "old.onnx"
    onnx.save(proto, str(path))
    return path


def _save(folder, name, label, levels, bits=16):
    """Digits ink levels (0..16) as a grey PNG, full scale = 16."""
    (folder / str(label)).mkdir(parents=True, exist_ok=True)
    top = 65535 if bits == 16 else 255
    pixels = np.round(np.asarray(levels, np.float64) * top / 16).astype(np.uint16 if bits == 16 else np.uint8)
    Image.fromarray(pixels).save(folder / str(label) / name)


def _remove(folder) -> None:
    """Delete a module's picture folder when the module ends, while its files are still in the page cache:
    left to pytest's session end, each of these thousands of files costs a disk discard (pyproject.toml)."""
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def all_digits(tmp_path_factory):
    """All 1797 digits as DIR/<class>/NNNN.png (16-bit)."""
    folder = tmp_path_factory.mktemp("all")
    for i, (levels, label) in enumerate(zip(DIGITS.images, DIGITS.target)):
        _save(folder, f"{i:04d}.png", label, levels)
    yield folder
    _remove(folder)


@pytest.fixture(scope="module")
def split_digits(tmp_path_factory):
    """The 360 images of `--data digits` (its test split, in order) as DIR/<class>/NNNN.png (16-bit).

    The split's ink levels are read back from the normalised tensors without gmgraph's numbers: the
    smallest value is ink 0 and the largest ink 16; they must come out as scikit-learn's images.
    """
    folder = tmp_path_factory.mktemp("test-split")
    x, y = data.load("digits").test.dataset.tensors
    x = x[:, 0].numpy().astype(np.float64)
    known = {img.astype(np.int64).tobytes() for img in DIGITS.images}
    levels = (x - x.min()) * 16 / (x.max() - x.min())
    whole = np.round(levels)
    assert np.abs(levels - whole).max() < 1e-3 and whole.min() == 0 and whole.max() == 16
    assert all(img.astype(np.int64).tobytes() in known for img in whole)
    for i, (img, label) in enumerate(zip(whole, y.tolist())):
        _save(folder, f"{i:04d}.png", label, img)
    yield folder
    _remove(folder)


def _rows(out: str) -> dict[str, tuple[int, int]]:
    return {item: (int(label), int(predicted)) for item, label, predicted in ROW.findall(out)}


def _predict(capsys, *argv) -> str:
    assert main(["predict", *map(str, argv)]) == 0
    return capsys.readouterr().out


# ------------------------------------------------------------- the issue: --images as in training


def test_images_give_exactly_the_predictions_of_the_training_pipeline(model, split_digits, capsys):
    by_data = _predict(capsys, model, "--data", "digits", "--show", 360)
    by_images = _predict(capsys, model, "--images", split_digits, "--show", 360)
    expected = {int(item[5:-1]): row for item, row in _rows(by_data).items()}  # test[i]
    got = {int(item.split("/")[1][:4]): row for item, row in _rows(by_images).items()}  # <label>/NNNN.png
    assert len(expected) == 360 and got == expected
    (acc_d, hits_d, n_d, _), (acc_i, hits_i, n_i, _) = (ACCURACY.search(o).groups() for o in (by_data, by_images))
    assert (acc_i, hits_i, n_i) == (acc_d, hits_d, n_d)
    assert 0.5 < float(acc_d) < 1  # a model that learnt something, so the comparison means something
    assert by_images.splitlines()[1] == ("preprocessing: digits, from the model's metadata: grey, "
                                         "full scale -> [0, 16], mean 4.885 std 6.016")
    assert by_data.splitlines()[1] == "preprocessing: gmgraph.data.load('digits'), as in training"


def test_all_1797_digits_match_onnxruntime_on_the_loaders_tensors(model, all_digits, capsys):
    loaders = data.load("digits")
    x = np.concatenate([split.dataset.tensors[0].numpy() for split in loaders])
    y = np.concatenate([split.dataset.tensors[1].numpy() for split in loaders])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    right = int((session.run(None, {"input": x})[0].argmax(1) == y).sum())
    out = _predict(capsys, model, "--images", all_digits, "--show", 0)
    _, hits, total, _ = ACCURACY.search(out).groups()
    assert (int(hits), int(total)) == (right, 1797)


def test_eight_bit_and_rgb_pictures_of_grey_digits_read_alike(model, tmp_path, capsys):
    # an RGB picture of a grey digit averages back to the same grey; 8-bit loses < 0.5/255 of full scale
    for i, (levels, label) in enumerate(zip(DIGITS.images[:50], DIGITS.target[:50])):
        _save(tmp_path / "grey", f"{i:04d}.png", label, levels, bits=8)
        rgb = np.repeat(np.round(levels * 255 / 16).astype(np.uint8)[..., None], 3, axis=2)
        (tmp_path / "rgb" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "rgb" / str(label) / f"{i:04d}.png")
    for folder in ("grey", "rgb"):
        for k in range(10):
            (tmp_path / folder / str(k)).mkdir(exist_ok=True)
    grey = _rows(_predict(capsys, model, "--images", tmp_path / "grey", "--show", 50))
    rgb = _rows(_predict(capsys, model, "--images", tmp_path / "rgb", "--show", 50))
    assert len(grey) == 50 and grey == rgb


# ------------------------------------------------------------- older files and --normalize


def _imagenet_inputs(folder) -> tuple[np.ndarray, np.ndarray]:
    """What predict did before preprocessing was recorded: RGB in [0, 1], ImageNet mean/std, averaged."""
    files = sorted(folder.glob("*/*.png"), key=lambda f: (int(f.parent.name), f.name))
    xs = []
    for f in files:
        with Image.open(f) as img:
            rgb = np.asarray(img.convert("RGB"), np.float32) / 255
        x = (rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        xs.append(x.transpose(2, 0, 1).mean(0, keepdims=True).astype(np.float32))
    return np.stack(xs), np.array([int(f.parent.name) for f in files])


@pytest.fixture(scope="module")
def eight_bit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eight-bit")
    for i, (levels, label) in enumerate(zip(DIGITS.images[:200], DIGITS.target[:200])):
        _save(folder, f"{i:04d}.png", label, levels, bits=8)
    yield folder
    _remove(folder)


def test_a_file_without_preprocessing_keeps_imagenet_and_says_so(old_model, eight_bit, capsys):
    assert "preprocessing" not in read_metadata(old_model)
    out = _predict(capsys, old_model, "--images", eight_bit, "--show", 0)
    line = out.splitlines()[1]
    assert line.startswith("preprocessing: ImageNet mean/std, the default for a model without preprocessing "
                           "metadata") and "--normalize" in line
    x, y = _imagenet_inputs(eight_bit)
    session = ort.InferenceSession(str(old_model), providers=["CPUExecutionProvider"])
    right = int((session.run(None, {"input": x})[0].argmax(1) == y).sum())
    assert ACCURACY.search(out).group(2) == str(right)


def test_normalize_imagenet_overrides_the_metadata(model, old_model, eight_bit, capsys):
    forced = _predict(capsys, model, "--images", eight_bit, "--normalize", "imagenet", "--show", 200)
    assert forced.splitlines()[1].startswith("preprocessing: --normalize imagenet: rgb, full scale -> [0, 1]")
    old = _predict(capsys, old_model, "--images", eight_bit, "--show", 200)
    assert _rows(forced) == _rows(old)


@pytest.mark.parametrize("how", ["digits", "mean/std"])
def test_normalize_with_the_digits_numbers_matches_the_metadata(model, old_model, split_digits, capsys, how):
    p = data.preprocessing("digits")
    value = "digits" if how == "digits" else f"{p['mean'][0] / 16!r},{p['std'][0] / 16!r}"  # in [0, 1] units
    with_metadata = _rows(_predict(capsys, model, "--images", split_digits, "--show", 360))
    forced = _predict(capsys, old_model, "--images", split_digits, "--normalize", value, "--show", 360)
    assert forced.splitlines()[1].startswith(f"preprocessing: --normalize {value}: grey")
    assert _rows(forced) == with_metadata


def test_normalize_none_feeds_zero_to_one(model, tmp_path, capsys):
    for k in range(10):  # class 0: a white picture, the others black
        (tmp_path / str(k)).mkdir()
        Image.new("L", (8, 8), 255 if k == 0 else 0).save(tmp_path / str(k) / "a.png")
    out = _predict(capsys, model, "--images", tmp_path, "--normalize", "none", "--show", 10)
    assert out.splitlines()[1] == "preprocessing: --normalize none: grey, full scale -> [0, 1], mean 0 std 1"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.zeros((10, 1, 8, 8), np.float32)
    x[0] = 1
    expected = session.run(None, {"input": x})[0].argmax(1)
    assert [row[1] for _, row in sorted(_rows(out).items())] == expected.tolist()


@pytest.mark.parametrize("argv, message", [
    (["--images", "{dir}", "--normalize", "fancy"], "--normalize 'fancy' is not accepted; give imagenet, none, "),
    (["--images", "{dir}", "--normalize", "0.5,0"], "three positive stds"),
    (["--images", "{dir}", "--normalize", "1,2,3"], "is not accepted"),
    (["--data", "digits", "--normalize", "imagenet"], "--normalize applies to --images"),
])
def test_bad_normalize_is_one_line(model, eight_bit, capsys, argv, message):
    argv = [a.format(dir=eight_bit) for a in argv]
    assert main(["predict", str(model), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and message in err and err.count("\n") == 1


def test_unreadable_preprocessing_metadata_is_one_line(model, eight_bit, tmp_path, capsys):
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == PREPROCESSING_KEY:
            prop.value = json.dumps({"colour": "purple"})
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    assert main(["predict", str(tmp_path / "bad.onnx"), "--images", str(eight_bit)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: preprocessing of its data, from the model's metadata: colour must be")
    assert err.count("\n") == 1


# ------------------------------------------------------------- the metadata and where it comes from


def test_export_run_records_the_runs_preprocessing(digits_run, model, tmp_path):
    expected = data.preprocessing("digits")
    assert read_metadata(model)["preprocessing"] == expected
    # Called again on a copy of the run without its best.onnx, export_run writes it at its default place and
    # says so (tests/commands/test_export.py reads the session's search's best.onnx instead of exporting again).
    again = shutil.copytree(digits_run, tmp_path / "run", ignore=shutil.ignore_patterns("best.onnx"))
    assert export_run(again) == again / "best.onnx"
    assert read_metadata(again / "best.onnx")["preprocessing"] == expected
    assert expected["range"] == [0.0, 16.0] and expected["size"] == [8, 8] and expected["channels"] == 1


def test_digits_preprocessing_is_what_load_normalises_with():
    for kwargs in ({}, {"split_seed": 3}, {"image_size": 12, "channels": 3}):
        p = data.preprocessing("digits", **kwargs)
        loaders = data.load("digits", **kwargs)
        x = np.concatenate([split.dataset.tensors[0].numpy() for split in loaders])
        raw = x * p["std"][0] + p["mean"][0]
        assert raw.min() == pytest.approx(0, abs=1e-4) and raw.max() <= 16 + 1e-4
        train = loaders.train.dataset.tensors[0]
        assert float(train.mean()) == pytest.approx(0, abs=1e-5) and float(train.std()) == pytest.approx(1, abs=1e-5)
        assert p["size"] == list(x.shape[-2:]) and p["channels"] == x.shape[1]
    assert data.preprocessing("digits", split_seed=3)["mean"] != data.preprocessing("digits")["mean"]


def test_export_run_of_a_dataset_gmgraph_cannot_describe_records_none(monkeypatch):
    from gmgraph.run_folder import Shape, _preprocessing

    monkeypatch.setitem(data.DATASETS, "noise", data.DATASETS["synthetic"])  # added from outside, as README shows
    with pytest.raises(DataError, match="does not know how dataset 'noise' prepares its images"):
        data.preprocessing("noise")
    shape = Shape(space="nb201", width=4, cells=1, num_classes=10, in_channels=3, image_size=(32, 32))
    assert _preprocessing("noise", shape) is None
    assert _preprocessing("imagefolder", shape)["size"] == [32, 32]  # the network says what the files were


def test_the_other_datasets_preprocessing():
    cifar = data.preprocessing("cifar10")
    assert (cifar["colour"], cifar["range"], cifar["size"], cifar["channels"]) == ("rgb", [0.0, 1.0], [32, 32], 3)
    assert cifar["std"] == [0.247, 0.2435, 0.2616]
    mnist = data.preprocessing("MNIST", image_size=32, channels=3)
    assert (mnist["colour"], mnist["mean"], mnist["std"], mnist["size"], mnist["channels"]) == (
        "grey", [0.1307], [0.3081], [32, 32], 3)
    folder = data.preprocessing("imagefolder")
    assert (folder["mean"], folder["std"], folder["size"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], None)
    synthetic = data.preprocessing("synthetic", shape=(1, 4, 5))
    assert (synthetic["colour"], synthetic["mean"], synthetic["std"], synthetic["size"]) == ("grey", [0.0], [1.0], [4, 5])
    for name, kwargs, message in (("nope", {}, "unknown dataset"), ("synthetic", {"image_size": 8}, "not image_size"),
                                  ("digits", {"channels": 2}, "channels must be")):
        with pytest.raises(DataError, match=message):
            data.preprocessing(name, **kwargs)
