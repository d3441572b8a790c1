"""Downscaling images with a Lanczos filter: the preprocessing of the few-shot literature's
Omniglot (105 x 105 strokes to 28 x 28), computed in float64 as two small matrix products.

The filter is Pillow's ``Image.LANCZOS`` (a = 3, its support widened by the scale factor when
shrinking, the weights of each output pixel normalised to sum to 1), so the result equals
Pillow's resize of the same image as 32-bit floats to float32 rounding; computing it here
keeps the shipped data set free of any image library and of its version."""

from __future__ import annotations

import numpy as np

_LOBES = 3  # Lanczos-3


def _lanczos(x: np.ndarray) -> np.ndarray:
    """sinc(x) sinc(x / 3) inside (-3, 3), 0 outside."""
    return np.where(np.abs(x) < _LOBES, np.sinc(x) * np.sinc(x / _LOBES), 0.0)


def lanczos_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The (size_out, size_in) matrix that resamples one axis: ``out = M @ in``.

    Output pixel ``i`` is centred at ``(i + 0.5) * scale`` in input pixels (scale =
    size_in / size_out); it weighs the input pixels within ``3 * max(scale, 1)`` of that centre
    (Pillow's window: ``int(centre -+ support + 0.5)``, clipped to the image) by the Lanczos
    kernel at their distance divided by ``max(scale, 1)``."""
    scale = size_in / size_out
    stretch = max(scale, 1.0)
    support = _LOBES * stretch
    matrix = np.zeros((size_out, size_in))
    for i in range(size_out):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), size_in)
        pixels = np.arange(first, last)
        weights = _lanczos((pixels - centre + 0.5) / stretch)
        matrix[i, first:last] = weights / weights.sum()
    return matrix


def resize(images: np.ndarray, size: int, chunk: int = 256) -> np.ndarray:
    """Square images (n, H, H) of any real dtype, resized to (n, size, size) in float64 with the
    Lanczos filter: rows first, then columns (the order does not change the exact result)."""
    matrix = lanczos_matrix(images.shape[-1], size)
    if images.shape[-2] != images.shape[-1]:
        raise ValueError(f"images must be square, got {images.shape[-2]} x {images.shape[-1]}")
    out = np.empty((len(images), size, size))
    for start in range(0, len(images), chunk):  # bounded float64 copies of large sets
        block = images[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = matrix @ block @ matrix.T
    return out
