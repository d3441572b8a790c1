"""Omniglot (Lake, Salakhutdinov and Tenenbaum 2015): handwritten characters of the world's
alphabets, 20 drawers each. The package ships the repository's two "minimal" background sets
(8 alphabets, 242 characters, 4,840 images, MIT-licensed: ``data/OMNIGLOT-LICENSE``) as their
original 105 x 105 strokes, so loading needs no download and no image library;
:func:`load_omniglot_images` reads the full data set from a user's copy."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import packed_arrays
from .image_resize import resize
from .omniglot_layout import read_strokes

DATA = Path(__file__).parent / "data"
SUBSETS = ("small1", "small2", "both")
SIDE = 105         # pixels per side of an original image
IMAGE_SIDE = 28    # after preprocessing (MAML's)


class CharacterImages:
    """Images of handwritten characters with their labels, as :func:`load_omniglot` returns them.

    Attributes
    ----------
    images : numpy.ndarray, shape (n, 1, 28, 28), float32
        Ink high: 1 is ink, 0 is paper; in [0, 1].
    labels : numpy.ndarray, shape (n,), int64
        The character of each image: an index into ``characters``.
    alphabets : numpy.ndarray, shape (n,), str
        The alphabet of each image.
    drawers : numpy.ndarray, shape (n,), int64
        Who drew each image (1-20 in Omniglot).
    characters : tuple of str
        The characters' names, ``"ALPHABET/characterNN"``, sorted.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, alphabets: np.ndarray, drawers: np.ndarray,
                 characters: Sequence[str]) -> None:
        self.images, self.labels, self.alphabets, self.drawers = images, labels, alphabets, drawers
        self.characters = tuple(characters)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"CharacterImages({len(self):,} images, {len(self.characters)} characters, "
                f"{len(self.alphabet_names)} alphabets: {', '.join(self.alphabet_names)})")

    @property
    def alphabet_names(self) -> tuple[str, ...]:
        """The alphabets present, sorted."""
        return tuple(sorted({name.split("/")[0] for name in self.characters}))

    def classes(self, alphabets: Iterable[str] | str) -> np.ndarray:
        """The labels (sorted, int64) of the characters of ``alphabets`` (names, or one name):
        for a family's ``classes``."""
        names = [alphabets] if isinstance(alphabets, str) else list(alphabets)
        unknown = [name for name in names if name not in self.alphabet_names]
        if unknown or not names:
            raise ValueError(f"alphabets must name some of {', '.join(self.alphabet_names)}; got {names!r}")
        wanted = set(names)
        return np.array([c for c, name in enumerate(self.characters) if name.split("/")[0] in wanted], dtype=np.int64)

    def split_alphabets(self, *parts: Iterable[str] | str) -> tuple[np.ndarray, ...]:
        """The labels of each part's alphabets (as :meth:`classes`): disjoint class sets split by
        alphabet, such as meta-training and test alphabets. An alphabet in two parts is refused."""
        if not parts:
            raise ValueError("split_alphabets needs at least one part (a sequence of alphabet names)")
        named = [[part] if isinstance(part, str) else list(part) for part in parts]
        seen: dict[str, int] = {}
        for index, names in enumerate(named):
            for name in names:
                if name in seen and seen[name] != index:
                    raise ValueError(f"parts must be disjoint: {name!r} is in parts {seen[name]} and {index}")
                seen[name] = index
        return tuple(self.classes(names) for names in named)


def preprocess(strokes: np.ndarray) -> np.ndarray:
    """MAML's Omniglot preprocessing of (n, H, H) images (True or 1 for paper) into float32
    (n, 1, 28, 28).

    The images are resized to 28 x 28 with the Lanczos filter, then turned to ``1 - value``
    so that ink is high, and clipped to [0, 1] (the filter rings slightly past both).

    MAML's script asks Pillow for this filter on the 1-bit files, which Pillow resizes with
    nearest neighbour instead; applied to the strokes as grey levels, as here, the filter keeps
    their anti-aliased edges. The filter's weights sum to 1, so resizing ``1 - value`` gives
    one minus the resized value; resizing the ink keeps blank paper exactly 0."""
    ink = resize(1.0 - np.asarray(strokes, dtype=np.float64), IMAGE_SIDE)
    return np.clip(ink, 0.0, 1.0).astype(np.float32)[:, None]


def _provenance() -> dict[str, Any]:
    return json.loads((DATA / "provenance.json").read_text())


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """The shipped file's metadata, arrays and preprocessed images, read once per process."""
    provenance = _provenance()
    (name, digest), = provenance["file"].items()
    metadata, arrays = packed_arrays.unpack(DATA / name, digest)
    ink = np.unpackbits(arrays["ink"], axis=1, count=SIDE * SIDE).reshape(-1, SIDE, SIDE)
    images = preprocess(ink == 0)
    for array in (*arrays.values(), images):
        array.flags.writeable = False
    return metadata, arrays, images


def omniglot_subsets() -> dict[str, tuple[str, ...]]:
    """The alphabets of each shipped subset: ``{"small1": (...), "small2": (...)}``."""
    return {name: tuple(alphabets) for name, alphabets in _shipped()[0]["subsets"].items()}


def load_omniglot(subset: str = "both") -> CharacterImages:
    """Omniglot's minimal background sets, shipped inside the package (no download).

    Parameters
    ----------
    subset : {"small1", "small2", "both"}
        ``"small1"``: Balinese, Early Aramaic, Greek, Korean, Latin (136 characters, 2,720
        images); ``"small2"``: Greek, Japanese (katakana), Latin, Sanskrit, Tagalog (156, 3,120);
        ``"both"``: the 8 alphabets, Greek and Latin (identical in both sets) once (242, 4,840).

    Returns
    -------
    CharacterImages
        Images 28 x 28 float32, ink high, preprocessed as MAML's code (see :func:`preprocess`);
        characters sorted by alphabet and name, images by character and drawer. The arrays are
        the caller's own copies.

    Examples
    --------
    >>> import metafast as mf
    >>> data = mf.datasets.load_omniglot("small1")
    >>> data.images.shape, len(data.characters), data.alphabet_names[:2]
    ((2720, 1, 28, 28), 136, ('Balinese', 'Early_Aramaic'))
    """
    if not isinstance(subset, str) or subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(map(repr, SUBSETS))}, got {subset!r}")
    metadata, arrays, images = _shipped()
    alphabets = set(metadata["alphabets"]) if subset == "both" else set(metadata["subsets"][subset])
    characters = [name for name in metadata["characters"] if name.split("/")[0] in alphabets]
    index = {name: c for c, name in enumerate(metadata["characters"])}
    kept = np.array([index[name] for name in characters])
    relabel = np.full(len(metadata["characters"]), -1)
    relabel[kept] = np.arange(len(kept))
    rows = np.flatnonzero(relabel[arrays["character"]] >= 0)
    labels = relabel[arrays["character"][rows]].astype(np.int64)
    return CharacterImages(images[rows].copy(), labels, np.array([characters[c].split("/")[0] for c in labels]),
                           arrays["drawer"][rows].astype(np.int64), characters)


def load_omniglot_images(path: str | os.PathLike) -> CharacterImages:
    """Any images laid out like the Omniglot repository, e.g. its full ``images_background`` and
    ``images_evaluation`` sets: a folder (``.../ALPHABET/characterNN/CCCC_DD.png``), a zip file
    of one, or a folder of such zips. Preprocessed as :func:`load_omniglot`'s; an image found
    twice (the same alphabet, character and drawer in two zips) is kept once if the two are
    identical. Needs Pillow to decode PNG (``pip install pillow``); images must be square.
    """
    records = read_strokes(path)
    characters = sorted({f"{r.alphabet}/{r.character}" for r in records})
    index = {name: c for c, name in enumerate(characters)}
    sides = {r.pixels.shape for r in records}
    if len(sides) != 1 or len(set(next(iter(sides)))) != 1:
        raise ValueError(f"the images under {os.fspath(path)!r} must all be square and of one size, got sizes "
                         f"{sorted(sides)[:4]}")
    images = preprocess(np.stack([r.pixels for r in records]))
    labels = np.array([index[f"{r.alphabet}/{r.character}"] for r in records], dtype=np.int64)
    return CharacterImages(images, labels, np.array([r.alphabet for r in records]),
                           np.array([r.drawer for r in records], dtype=np.int64), characters)
