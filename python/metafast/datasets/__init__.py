"""Data sets shipped inside the package (no download, ever): Omniglot's minimal background
sets (:func:`load_omniglot`), and a reader of the full Omniglot layout for users who have it
(:func:`load_omniglot_images`)."""

from .omniglot import CharacterImages, load_omniglot, load_omniglot_images, omniglot_subsets, preprocess

__all__ = ["CharacterImages", "load_omniglot", "load_omniglot_images", "omniglot_subsets", "preprocess"]
