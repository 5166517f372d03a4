"""A file's verdict from its heads' labels (``--combine``).

Several heads each label a file ``ai`` or ``natural`` at their own threshold (or nothing, without
one); the verdict combines those labels by one written rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError

COMBINE = ("any", "all")


def combine(labels: Sequence[str | None], how: str = "any") -> str | None:
    """The combined verdict of the heads' labels.

    ``any`` (default): ``ai`` if any head says ``ai``; ``natural`` if every head says ``natural``;
    else null (a head without a threshold, and no head said ``ai``).
    ``all``: ``ai`` only if every head says ``ai``; ``natural`` if any head says ``natural``; else null.
    """
    if how == "any":
        if "ai" in labels:
            return "ai"
        return "natural" if labels and all(x == "natural" for x in labels) else None
    if how == "all":
        if "natural" in labels:
            return "natural"
        return "ai" if labels and all(x == "ai" for x in labels) else None
    raise UsageError(f"unknown --combine {how!r}: choose one of {', '.join(COMBINE)}")
