"""The learner classes by the name a saved file records as its ``kind``.

Every concrete learner enters itself here when its class is defined (see
``Learner.__init_subclass__``), so that loading a file finds the class without the archive
format importing the learners. ``import metafast`` defines them all.
"""

from __future__ import annotations

from typing import Any

LEARNERS: dict[str, Any] = {}


def register(learner_class: type) -> None:
    """Makes files of kind ``learner_class.__name__`` load as ``learner_class``."""
    LEARNERS[learner_class.__name__] = learner_class
