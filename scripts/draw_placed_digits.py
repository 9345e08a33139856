"""Draw sample images of the placed-digits datasets for the README.

Run: ``.venv/bin/python scripts/draw_placed_digits.py`` (writes ``docs/images/placed_digits.png``):
one row per dataset (``digits`` for comparison, ``digits16``, ``clutter16``), the first
ten training images of each, titled with their label.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gmgraph import data  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "placed_digits.png"
DRAWN = ("digits", "digits16", "clutter16")


def draw(out: Path = OUT, per_row: int = 10) -> Path:
    fig, axes = plt.subplots(len(DRAWN), per_row, figsize=(per_row * 0.9, len(DRAWN) * 1.1))
    for row, name in zip(axes, DRAWN):
        x, y = data.load(name, batch_size=per_row).train.dataset[:per_row]
        for i, ax in enumerate(row):
            ax.imshow(x[i, 0].numpy(), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(int(y[i])), fontsize=8)
        row[0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw())
