"""``gmgraph predict``: run an exported ONNX model in onnxruntime and report what it predicts.

The command parses flags and prints; the work is the library's :mod:`gmgraph.inference`
(loading, providers, preprocessing, reading pictures and datasets), which Python code calls directly.
Inference runs in onnxruntime on numpy arrays; torch is never on that path
(``--data`` borrows gmgraph's dataset loader only to read the test split)::

    $ gmgraph predict model.onnx --data digits
    $ gmgraph predict model.onnx --images photos/     # photos/<class>/*.png, classes sorted
    $ gmgraph predict model.onnx --images photos/ --normalize imagenet
    $ gmgraph predict model.onnx --device cuda        # onnxruntime's CUDA provider (onnxruntime-gpu)
    $ gmgraph predict runs/seg/best.onnx --data digits16-seg --out masks/   # a mask per image, mean IoU
    $ gmgraph predict runs/reg/best.onnx --images photos/ --out values.csv  # a regressor's values

The model predicts for its run's task (:func:`gmgraph.inference.model_task`: ``--task``, else
the model's metadata, the ``report.json`` of the run folder it lies in, or its data's own task):
a classifier's classes and accuracy, a regressor's values and R², a segmentation
model's per-pixel class maps and mean IoU (:mod:`gmgraph.commands.predict_tasks`).
For regression and segmentation ``--images DIR`` reads every picture under DIR, without targets.

``--images`` prepares pictures as the model's training data was prepared,
read from the file's metadata (:mod:`gmgraph.preprocessing`, written by
``gmgraph export --run`` and a search's best.onnx): a picture is made grey or
RGB like the dataset's images (RGB to grey: mean of R, G, B), its black ..
full scale (255, or 65535 in a 16-bit PNG) mapped onto the dataset's value
range (digits: 0..16, others: 0..1), resized (bilinear) to the model's input,
normalised with the dataset's mean and std, then repeated or averaged to the
model's channels. A file without that metadata (older, or from ``gmgraph
export --space``, which does not know the data) gets ImageNet's mean and std
on RGB in [0, 1], averaged to grey for one-channel models, as before; the
output says so. ``--normalize`` overrides either (:func:`gmgraph.inference.choose_preprocessing`).
The line after the model's names the preprocessing used.

``--device`` picks onnxruntime's execution provider (:func:`gmgraph.inference.choose_providers`):
``cpu`` (the default), ``cuda`` (needs the ``onnxruntime-gpu`` package), or
``auto`` (CUDA when onnxruntime offers it). The first output line names the
provider that ran.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gmgraph.commands import HELP
from gmgraph.commands.predict_tasks import REPORTS
from gmgraph.errors import ConfigError
from gmgraph.inference import (
    TASKS,
    Model,
    Samples,
    check_fit,
    choose_preprocessing,
    load_model,
    model_task,
    predict,
    read_dataset,
    read_images,
    read_pictures,
    trained_image_size,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help=HELP["predict"],
        description="Predict a dataset's test split or a folder of images with an exported model in onnxruntime: "
                    "classes, values or per-pixel class maps, as the model's task says.")
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a model written by `gmgraph export`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="a gmgraph dataset (or module:function) whose test split to predict "
                                       "(default digits)")
    source.add_argument("--images", type=Path, metavar="DIR",
                        help="images laid out as DIR/<class>/*.png (classification; classes are the sorted folder "
                             "names), or any pictures under DIR (regression, segmentation); prepared as the "
                             "model's training data (its metadata), resized to the model's input")
    p.add_argument("--normalize", metavar="HOW",
                   help="--images only: override the model's preprocessing with imagenet, none ([0, 1] only), "
                        "a dataset name (digits, cifar10, ...) or MEAN,STD in [0, 1] units (one pair, or three "
                        "means then three stds)")
    p.add_argument("--data-root", help="folder holding the dataset files (not needed for digits/synthetic)")
    p.add_argument("--batch-size", type=int, default=64, help="images per onnxruntime call (default 64)")
    p.add_argument("--show", type=int, default=10, help="predictions to list (default 10)")
    p.add_argument("--task", help=f"what the model predicts: {', '.join(TASKS)} (default: the model's run's "
                                  "task, else its data's)")
    p.add_argument("--out", type=Path, metavar="PATH",
                   help="write every prediction: a CSV file (classification, regression) or a folder of one "
                        "class-map PNG per image (segmentation)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda (onnxruntime's CUDA provider; needs onnxruntime-gpu) or auto "
                        "(cuda when onnxruntime offers it) (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gmgraph.config import check_positive_int

    check_positive_int("--batch-size", args.batch_size)
    if args.show < 0:
        raise ConfigError(f"--show must be 0 or more, got {args.show}")
    if args.normalize is not None and args.images is None:
        raise ConfigError("--normalize applies to --images; --data uses the dataset's own preprocessing")
    # The library names a setting by its parameter; ``option`` makes its errors name this command's flags.
    model = load_model(args.model, args.device, option="--device")
    task, told = model_task(model, args.model, args.task, args.data, option="--task")
    samples, how = _samples(args, model, task)
    check_fit(model, samples, args.model, task)
    outputs = predict(model, samples.x, args.batch_size)
    print(_describe(args.model, model))
    print(how)
    if task != "classification":  # a classifier's lines stay as they were
        print(f"task: {task} (from {told})")
    for line in REPORTS[task](samples, outputs, args.show, args.out):
        print(line)
    return 0


def _samples(args: argparse.Namespace, model: Model, task: str) -> tuple[Samples, str]:
    """What to predict for, and the line saying how it was prepared."""
    if args.images is not None:
        prepared = choose_preprocessing(model, args.normalize, option="--normalize")
        read = read_images if task == "classification" else read_pictures
        return read(args.images, model, prepared, option="--images"), prepared.describe()
    name = args.data or "digits"
    size = trained_image_size(model, name)
    how = f"preprocessing: gmgraph.data.load({name!r}{'' if size is None else f', image_size={size}'}), as in training"
    return read_dataset(name, args.data_root, size), how


def _describe(path: Path, model: Model) -> str:
    line = f"model {path}: input {tuple('batch' if d is None else d for d in (model.batch, *model.shape))}"
    if "gmgraph.arch" in model.metadata:
        from gmgraph.spaces import arch_to_str

        line += "; arch " + arch_to_str(model.metadata.get("gmgraph.space"), json.loads(model.metadata["gmgraph.arch"]))
    return line + f"; provider: {model.provider}"

