"""The inference library (issue 27: library code out of the CLI): a user loads an exported run and predicts
from Python with :mod:`gmgraph.inference`, and gets what ``gmgraph predict`` prints; the preprocessing record is
written and read by one module, :mod:`gmgraph.preprocessing`."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from gmgraph import data
from gmgraph.cli import main
from gmgraph.errors import ConfigError, DataError
from gmgraph.inference import (
    Model,
    check_fit,
    choose_preprocessing,
    load_model,
    predict,
    read_dataset,
    read_images,
    trained_image_size,
)
from gmgraph.preprocessing import IMAGENET_MEAN, IMAGENET_STD, PREPROCESSING_KEY, preprocessing_from


@pytest.fixture(scope="module")
def exported(finished_search):
    return finished_search.out / "best.onnx"  # what a search exports at its end


def _reference_logits(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on its own, the whole batch in one call: what predict must reproduce."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_a_user_loads_an_exported_run_and_predicts_what_the_cli_prints(exported, capsys):
    model = load_model(exported)
    assert (model.shape, model.classes, model.provider) == ((3, 32, 32), 10, "CPUExecutionProvider")
    assert PREPROCESSING_KEY in model.metadata and "gmgraph.arch" in model.metadata

    samples = read_dataset("synthetic", image_size=trained_image_size(model, "synthetic"))
    check_fit(model, samples, exported)
    logits = predict(model, samples.x, batch_size=7)  # batches of 7: the last one short
    np.testing.assert_allclose(logits, _reference_logits(exported, samples.x), rtol=0, atol=1e-5)

    hits = int((logits.argmax(1) == samples.y).sum())
    assert main(["predict", str(exported), "--data", "synthetic", "--show", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed == f"accuracy: {hits / len(samples.y):.4f} ({hits}/{len(samples.y)} test images of synthetic)"


def test_a_user_predicts_a_folder_of_pictures_prepared_as_the_model_records(exported, tmp_path):
    rng = np.random.default_rng(0)
    pixels = {name: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for name in ("cat", "dog")}
    for name, rgb in pixels.items():
        (tmp_path / name).mkdir()
        Image.fromarray(rgb).save(tmp_path / name / "0.png")
    model = load_model(exported)
    prepared = choose_preprocessing(model)  # synthetic data: RGB in [0, 1], no mean/std
    assert prepared.source == "synthetic, from the model's metadata"

    samples = read_images(tmp_path, model, prepared)
    expected = np.stack([pixels[n].transpose(2, 0, 1) / 255.0 for n in ("cat", "dog")]).astype(np.float32)
    np.testing.assert_allclose(samples.x, expected, rtol=0, atol=1e-6)
    assert (samples.classes, samples.names, samples.y.tolist()) == (["cat", "dog"], ["cat/0.png", "dog/0.png"], [0, 1])
    np.testing.assert_allclose(predict(model, samples.x), _reference_logits(exported, samples.x), rtol=0, atol=1e-5)
    with pytest.raises(DataError, match=r"predicts 10 classes but the images in .* have 2 \(cat, dog\)"):
        check_fit(model, samples, exported)


def test_library_errors_name_the_python_parameter_and_the_cli_names_its_flag(exported, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^device 'tpu' is not accepted; choose one of cpu, cuda, auto$"):
        load_model(exported, "tpu")
    model = load_model(exported)
    with pytest.raises(ConfigError, match=r"^normalize 'bogus' is not accepted; give imagenet, none"):
        choose_preprocessing(model, "bogus")
    with pytest.raises(DataError, match=r"^\S+missing is not a folder; expected DIR/<class>/\*\.png$"):
        read_images(tmp_path / "missing", model, choose_preprocessing(model))

    assert main(["predict", str(exported), "--images", str(tmp_path / "missing"), "--normalize", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: --normalize 'bogus' is not accepted; give imagenet, none")


def test_a_model_with_a_fixed_batch_gets_exactly_that_many_images_per_call():
    calls = []

    class Session:  # stands in for onnxruntime: doubles its input, records each batch's size
        def run(self, _, feed):
            calls.append(len(feed["input"]))
            return [feed["input"].reshape(len(feed["input"]), -1) * 2]

    model = Model(Session(), "input", 4, (1, 1, 1), 1, {})
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    np.testing.assert_array_equal(predict(model, x), x.reshape(10, 1) * 2)
    assert calls == [4, 4, 4]  # the last two images padded to the fixed batch, their outputs dropped


def test_the_preprocessing_record_data_writes_is_the_one_the_reader_accepts():
    for name in ("digits", "cifar10", "imagefolder", "synthetic"):
        spec = data.preprocessing(name)
        prepared = preprocessing_from(spec, name)
        assert (prepared.colour, list(prepared.range)) == (spec["colour"], spec["range"])
    imagefolder = preprocessing_from(data.preprocessing("imagefolder"), "imagefolder")
    assert (imagefolder.mean, imagefolder.std) == (IMAGENET_MEAN, IMAGENET_STD)  # one copy of ImageNet's numbers
    assert re.fullmatch(r"preprocessing: cifar10: rgb, full scale -> \[0, 1\], mean [\d.,]+ std [\d.,]+",
                        preprocessing_from(data.preprocessing("cifar10"), "cifar10").describe())
