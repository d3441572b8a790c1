"""Few-shot episodes from the Omniglot characters shipped with metafast: a Classification
family whose saved record names the alphabets instead of fingerprinting data, so that a
learner trained on it is saved without data and loaded with its tasks rebuilt."""

from __future__ import annotations

from typing import Any, Iterable

from .data import Classification


class Omniglot(Classification):
    """N-way K-shot episodes of the Omniglot characters shipped with metafast
    (:func:`metafast.datasets.load_omniglot`): images (1, 28, 28), ink high.

    Parameters
    ----------
    alphabets : str or sequence of str, optional
        The alphabets whose characters are drawn (default: every alphabet of ``subset``), e.g.
        ``"Tagalog"`` or the meta-training alphabets.
    subset : {"small1", "small2", "both"}
        The shipped set the alphabets come from.
    ways, shots, query : int
        As :class:`Classification`: classes per task, support and query images per class (a
        character has 20 images: shots + query at most 20).
    rotations : int
        Quarter turns per character, each a class of its own: 4 for meta-training as MAML,
        Meta-SGD and Reptile do; 1 (the default) at test.
    shift : int
        Random shifts of up to this many pixels (0: none).
    within_alphabet : bool
        Draw every class of a task from one alphabet (among those with ``ways`` characters,
        times ``rotations``): Lake et al.'s one-shot classification within an alphabet.

    Examples
    --------
    >>> import metafast as mf
    >>> train = mf.tasks.Omniglot(subset="small1", ways=5, shots=1, query=5, rotations=4)
    >>> test = mf.tasks.Omniglot(["Japanese_(katakana)", "Sanskrit", "Tagalog"], subset="small2", ways=5)
    >>> train.sample(2).x_support.shape, len(test.classes)
    ((2, 5, 784), 106)
    """

    _holds_user_data = False

    def __init__(self, alphabets: Iterable[str] | str | None = None, subset: str = "both", ways: int = 5,
                 shots: int = 1, query: int = 15, rotations: int = 1, shift: int = 0,
                 within_alphabet: bool = False) -> None:
        from ..datasets import load_omniglot

        data = load_omniglot(subset)
        chosen = data.alphabet_names if alphabets is None else ((alphabets,) if isinstance(alphabets, str)
                                                                 else tuple(alphabets))
        self.alphabets, self.subset, self.within_alphabet = tuple(chosen), subset, bool(within_alphabet)
        classes = data.classes(self.alphabets)
        super().__init__(data.images, data.labels, ways=ways, shots=shots, query=query, classes=classes,
                         rotations=rotations, shift=shift, within=data.alphabets if within_alphabet else None)

    def _fields(self) -> dict[str, Any]:
        return dict(alphabets=self.alphabets, subset=self.subset, ways=self.ways, shots=self.shots, query=self.query,
                    rotations=self.rotations, shift=self.shift, within_alphabet=self.within_alphabet)

    def _arguments(self) -> dict[str, Any]:
        return self._fields()

    def _config(self) -> dict[str, Any]:
        return dict(family=type(self).__name__, **{k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in self._fields().items()})
