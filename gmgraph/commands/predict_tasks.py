"""What ``gmgraph predict`` prints and writes for each task: classes, values, or per-pixel class maps.

Each report takes the samples, the model's outputs and ``--show``/``--out``, prints
a table of the first predictions and one summary line (the task's metric where
the samples have targets), and writes every prediction where ``--out`` says:

* classification: ``item, label, predicted, confidence``; ``accuracy: ...``;
  ``--out FILE.csv`` gets ``item,predicted[,label]`` per image.
* regression: ``item, target, predicted``; ``R²: ..., MSE: ...``; ``--out FILE.csv``
  gets ``item,predicted[,target]`` (one column per output value).
* segmentation: the predicted classes' shares of each image; ``mean IoU: ...,
  pixel accuracy: ...``; ``--out DIR`` gets one mask per image, the class index of each
  pixel (a grey PNG, or ``.npy`` past 256 classes), named after the item.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from gmgraph.inference import Samples, regression_scores, segmentation_scores


def classification(samples: Samples, logits: np.ndarray, show: int, out: Path | None) -> list[str]:
    """The lines of a classifier's report (``out``: a CSV of every prediction)."""
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    confidence = (shifted / shifted.sum(1, keepdims=True)).max(1)
    predicted = logits.argmax(1)
    rows = [("item", "label", "predicted", "confidence")]
    for i in range(min(show, len(samples.y))):
        rows.append((samples.names[i], samples.classes[samples.y[i]], _name(samples.classes, predicted[i]),
                     f"{confidence[i]:.3f}"))
    hits = int((predicted == samples.y).sum())
    lines = [table(rows), f"accuracy: {hits / len(samples.y):.4f} ({hits}/{len(samples.y)} {samples.source})"]
    if out is not None:
        columns = [[_name(samples.classes, p) for p in predicted], [samples.classes[y] for y in samples.y]]
        written = write_csv(out, samples.names, ["predicted", "label"], columns)
        lines.append(f"predictions: wrote {len(predicted)} rows to {written}")
    return lines


def regression(samples: Samples, outputs: np.ndarray, show: int, out: Path | None) -> list[str]:
    """The lines of a regressor's report: its values, R² and MSE where the samples have targets."""
    values = outputs.reshape(len(outputs), -1)
    targets = None if samples.y is None else np.asarray(samples.y, np.float64).reshape(len(values), -1)
    rows = [("item", "target", "predicted") if targets is not None else ("item", "predicted")]
    for i in range(min(show, len(values))):
        known = () if targets is None else (_numbers(targets[i]),)
        rows.append((samples.names[i], *known, _numbers(values[i])))
    if targets is not None:
        scores = regression_scores(values, targets)
        summary = f"R²: {scores['r2']:.4f}, MSE: {scores['mse']:.4g} ({len(values)} {samples.source})"
    else:
        summary = (f"predicted {values.size} value(s) for {len(values)} {samples.source}: mean {values.mean():.4g}, "
                   f"min {values.min():.4g}, max {values.max():.4g}")
    lines = [table(rows), summary]
    if out is not None:
        names = [f"predicted_{j}" if values.shape[1] > 1 else "predicted" for j in range(values.shape[1])]
        columns = [[f"{v:.6g}" for v in values[:, j]] for j in range(values.shape[1])]
        if targets is not None:
            names += [n.replace("predicted", "target") for n in names]
            columns += [[f"{v:.6g}" for v in targets[:, j]] for j in range(targets.shape[1])]
        lines.append(f"values: wrote {len(values)} rows to {write_csv(out, samples.names, names, columns)}")
    return lines


def segmentation(samples: Samples, logits: np.ndarray, show: int, out: Path | None) -> list[str]:
    """The lines of a segmentation model's report: per image the predicted classes' shares, then mean IoU
    and pixel accuracy where the samples have masks; ``out``: a folder of one class map per image."""
    classes = logits.shape[1]
    masks = logits.argmax(1)
    rows = [("item", "predicted classes (share of pixels)", *(("pixel accuracy",) if samples.y is not None else ()))]
    for i in range(min(show, len(masks))):
        right = () if samples.y is None else (f"{float((masks[i] == samples.y[i]).mean()):.3f}",)
        rows.append((samples.names[i], _shares(masks[i], classes), *right))
    height, width = masks.shape[1:]
    if samples.y is not None:
        scores = segmentation_scores(masks, samples.y, classes)
        summary = (f"mean IoU: {scores['miou']:.4f}, pixel accuracy: {scores['pixel_accuracy']:.4f} "
                   f"({len(masks)} {samples.source}, {height}x{width} pixels, {classes} classes)")
    else:
        summary = f"predicted {len(masks)} masks for the {samples.source} ({height}x{width} pixels, {classes} classes)"
    lines = [table(rows), summary]
    if out is None:
        lines.append("masks: not written (--out DIR writes one per image)")
    else:
        kind = "grey PNG" if classes <= 256 else ".npy"
        written = write_masks(out, samples.names, masks, classes)
        lines.append(f"masks: wrote {len(masks)} ({kind}, the class index of each pixel) to {written}")
    return lines


REPORTS = {"classification": classification, "regression": regression, "segmentation": segmentation}
"""Task name -> its report."""


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def write_csv(path: Path, items: list[str], names: list[str], columns: list[list[str]]) -> Path:
    """A CSV of ``item`` then ``names`` (one column of strings each), written atomically."""
    from gmgraph.files import write_text

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["item", *names])
    writer.writerows(zip(items, *columns))
    return write_text(path, text.getvalue())


def write_masks(folder: Path, items: list[str], masks: np.ndarray, classes: int) -> Path:
    """One class map per item under ``folder`` (each written atomically): ``test[3]`` -> ``test-3.png``,
    ``a/b.jpg`` -> ``a/b.png``; ``.npy`` (int32) past 256 classes."""
    from PIL import Image

    from gmgraph.files import atomic_write

    suffix = ".png" if classes <= 256 else ".npy"
    for item, mask in zip(items, masks):
        path = folder / mask_name(item, suffix)
        if suffix == ".png":
            atomic_write(path, lambda tmp, m=mask: Image.fromarray(m.astype(np.uint8)).save(tmp, format="PNG"))
        else:
            atomic_write(path, lambda tmp, m=mask: _save_npy(tmp, m.astype(np.int32)))
    return folder


def mask_name(item: str, suffix: str) -> str:
    """The file name of an item's mask.

    >>> mask_name("test[3]", ".png"), mask_name("cats/a.jpg", ".png")
    ('test-3.png', 'cats/a.png')
    """
    if item.startswith("test[") and item.endswith("]"):
        return f"test-{item[5:-1]}{suffix}"
    return str(Path(item).with_suffix(suffix))


def _save_npy(tmp: str, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would add .npy to the temporary name
        np.save(f, array)


def _shares(mask: np.ndarray, classes: int) -> str:
    counts = np.bincount(mask.reshape(-1), minlength=classes)
    top = np.argsort(-counts, kind="stable")[:3]
    return ", ".join(f"{k} {counts[k] / mask.size:.0%}" for k in top if counts[k])


def _numbers(values: np.ndarray) -> str:
    return " ".join(f"{v:.4g}" for v in np.asarray(values).reshape(-1))


def _name(classes: list[str], index: int) -> str:
    # a model with more outputs than known classes may predict an index with no name
    return classes[index] if index < len(classes) else str(index)
