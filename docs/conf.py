"""Sphinx configuration of metafast's documentation: python -m sphinx -W docs docs/_build.

Built offline: no intersphinx (its inventories would be fetched at build time); references
to NumPy's and Python's own names are left as plain text (nitpick_ignore_regex below).

The gallery (sphinx-gallery) runs every example of docs/examples/ at build time; with
METAFAST_DOCS_QUICK=1 each training stops after a few meta-iterations (the test suite's
build), so that the site builds in about a minute instead of the many minutes that the
full trainings take (the two 2D-navigation examples alone about 7 on 2 cores)."""

from __future__ import annotations

import os
import sys

import metafast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _gallery_quick

project = "metafast"
author = "the metafast developers"
copyright = "2026, the metafast developers"
version = release = metafast.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store", "_gallery_quick.py"]
myst_heading_anchors = 3

autosummary_generate = True
templates_path = ["_templates"]
autodoc_typehints = "none"  # the numpydoc sections state the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|collections|typing|os|pathlib|sklearn|onnx)\..*"),  # other projects': no inventories offline
    (r"py:class", r"(int|float|str|bool|bytes|object|tuple|list|dict|None|callable|optional|array_like|Any)"),
]

# Shown but not run: an MPI script (run it under mpiexec) and a process pool (its workers
# import the script they run, which a page is not).
NOT_RUN = ("many_machines", "pipelines")
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "gallery",
    "filename_pattern": r"/(?!(" + "|".join(NOT_RUN) + r")\.py)[^/]+\.py$",
    "reset_modules": ("_gallery_quick.gallery_training", "matplotlib"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "plot_gallery": "True",
}

html_theme = "pydata_sphinx_theme"
html_title = f"metafast {release}"
html_theme_options = {"navigation_with_keys": False}


def skip_other_projects_members(app, what, name, obj, skip, options):
    """Members a class inherits from scikit-learn (set_output, score, ...) are documented there."""
    module = getattr(obj, "__module__", None) or ""
    return True if module.startswith("sklearn") else None


def setup(app):
    app.connect("autodoc-skip-member", skip_other_projects_members)
