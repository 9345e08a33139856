"""Placed digits: scikit-learn's 8x8 digits put at random places on a larger, noisy canvas.

On the plain 8x8 digits nearly every NAS-Bench-201 cell reaches about 97 %,
so a search there cannot show what search is for. Moving the digit around a
16x16 canvas, adding noise and (for ``clutter16``) fragments of other digits
makes the architecture matter: the network must find the digit wherever it is,
which takes receptive field and the right mix of convolutions and pooling.

Everything is drawn from one seeded generator, so a dataset is a pure function
of its :class:`Placement` and the split seed; train, val and test are placed
from disjoint source images (those of the ``digits`` split)::

    >>> import torch
    >>> images = torch.zeros(4, 8, 8)
    >>> images[:, 2:6, 3:5] = 1.0                      # four identical "ones"
    >>> x, y = place(images, torch.arange(4), PLACEMENTS["digits16"], torch.Generator().manual_seed(0),
    ...              copies=2)
    >>> tuple(x.shape), y.tolist()
    ((8, 1, 16, 16), [0, 1, 2, 3, 0, 1, 2, 3])
    >>> clean = place(images, torch.arange(4), Placement(noise=0.0), torch.Generator().manual_seed(0), copies=1)[0]
    >>> [float(img.sum()) for img in clean]            # each digit lands whole on the canvas
    [8.0, 8.0, 8.0, 8.0]
    >>> masks = place(images, torch.arange(4), Placement(), torch.Generator().manual_seed(0), copies=1, masks=True)[2]
    >>> [sorted(m.unique().tolist()) for m in masks], int((masks[0] > 0).sum())   # each digit's 8 ink pixels
    ([[0, 1], [0, 2], [0, 3], [0, 4]], 8)

``digits16-seg`` is digits16 with those masks as targets (11 classes: background
and the ten digits), a segmentation task of the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gmgraph.errors import DataError


@dataclass(frozen=True)
class Placement:
    """How a placed-digits dataset is drawn.

    Attributes:
        canvas: side of the square canvas in pixels (at least the digit's 8).
        noise: standard deviation of the Gaussian noise added to every pixel;
            ink runs from 0 (background) to 1 (full ink).
        fragments: pieces of other digits pasted as clutter on every canvas.
        fragment_size: side of one clutter piece in pixels.
        copies: placements of each source image in (train, val, test); the
            evaluation splits get more so their accuracy is less noisy.
    """

    canvas: int = 16
    noise: float = 0.4
    fragments: int = 0
    fragment_size: int = 4
    copies: tuple[int, int, int] = (2, 4, 4)

    def __post_init__(self) -> None:
        if not isinstance(self.canvas, int) or self.canvas < 8:
            raise DataError(f"canvas must be an integer >= 8 (the digit's size), got {self.canvas!r}")
        if not self.noise >= 0:
            raise DataError(f"noise must be >= 0, got {self.noise!r}")
        if not isinstance(self.fragments, int) or self.fragments < 0:
            raise DataError(f"fragments must be an integer >= 0, got {self.fragments!r}")
        if not isinstance(self.fragment_size, int) or not 1 <= self.fragment_size <= 8:
            raise DataError(f"fragment_size must be an integer in 1..8, got {self.fragment_size!r}")
        if len(self.copies) != 3 or not all(isinstance(c, int) and c >= 1 for c in self.copies):
            raise DataError(f"copies must be three integers >= 1 (train, val, test), got {self.copies!r}")


PLACEMENTS: dict[str, Placement] = {
    "digits16": Placement(canvas=16, noise=0.4),
    "clutter16": Placement(canvas=16, noise=0.3, fragments=3),
}
"""The placed-digits datasets ``gmgraph.data.load`` and ``--data`` know, by name."""

SEGMENTED: dict[str, str] = {"digits16-seg": "digits16"}
"""Segmentation datasets: name -> the placed-digits dataset whose images they share (targets: the digits' masks)."""

SEGMENT_CLASSES = 11
"""Classes of a segmented placed-digits pixel: 0 background, ``d + 1`` digit ``d``."""


def place(images: torch.Tensor, labels: torch.Tensor, spec: Placement, generator: torch.Generator,
          *, copies: int, masks: bool = False) -> tuple[torch.Tensor, ...]:
    """Put each of ``images`` (``(n, 8, 8)``, ink in [0, 1]) ``copies`` times on a canvas.

    Each copy gets its own position, clutter and noise; clutter pieces are cut
    from other images of the same batch (never the digit itself when there is
    another image) and composed with the canvas by taking the brighter pixel.

    Returns:
        ``(x, y)``: images ``(n * copies, 1, canvas, canvas)`` and their labels,
        copy-major (all images once, then all again, ...). With ``masks=True`` also
        the segmentation targets ``(n * copies, canvas, canvas)``: ``label + 1`` on
        the digit's pixels (ink at least half), 0 elsewhere (clutter and noise
        included). The images are the same draws either way.
    """
    n, side = images.shape[0], images.shape[-1]
    total = n * copies
    source = torch.arange(total) % n
    canvas = torch.zeros(total, spec.canvas, spec.canvas)
    corners = _positions(total, spec.canvas - side, generator)
    _paste(canvas, images[source], corners)
    target = _masks(images[source], labels[source], corners, spec.canvas) if masks else None
    for _ in range(spec.fragments):
        _paste_fragments(canvas, images, source, spec, generator)
    if spec.noise > 0:
        canvas += spec.noise * torch.randn(canvas.shape, generator=generator)
    out = (canvas.unsqueeze(1), labels[source])
    return out if target is None else (*out, target)


def _masks(pieces: torch.Tensor, labels: torch.Tensor, corners: torch.Tensor, canvas: int) -> torch.Tensor:
    """Per-pixel classes of pasted digits: ``label + 1`` where a digit's ink is at least 0.5, else 0."""
    size = pieces.shape[-1]
    out = torch.zeros(len(pieces), canvas, canvas, dtype=torch.long)
    for i, (r, c) in enumerate(corners.tolist()):
        out[i, r:r + size, c:c + size] = torch.where(pieces[i] >= 0.5, labels[i] + 1, 0)
    return out


def _positions(count: int, free: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 2)`` top-left corners in ``0..free``."""
    return torch.randint(0, free + 1, (count, 2), generator=generator)


def _paste(canvas: torch.Tensor, pieces: torch.Tensor, corners: torch.Tensor) -> None:
    size = pieces.shape[-1]
    for i, (r, c) in enumerate(corners.tolist()):
        window = canvas[i, r:r + size, c:c + size]
        torch.maximum(window, pieces[i], out=window)


def _paste_fragments(canvas: torch.Tensor, images: torch.Tensor, source: torch.Tensor, spec: Placement,
                     generator: torch.Generator) -> None:
    n, side, k = images.shape[0], images.shape[-1], spec.fragment_size
    total = canvas.shape[0]
    # another image: shift the own index by 1..n-1 (with one image there is no other)
    shift = torch.randint(1, n, (total,), generator=generator) if n > 1 else torch.zeros(total, dtype=torch.long)
    donors = images[(source + shift) % n]
    cuts = _positions(total, side - k, generator)
    pieces = torch.stack([donors[i, r:r + k, c:c + k] for i, (r, c) in enumerate(cuts.tolist())])
    _paste(canvas, pieces, _positions(total, spec.canvas - k, generator))
