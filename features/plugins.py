"""Plug-ins: other packages add backbones, tasks and the like through entry points; one
that fails to load is a warning naming it, never a crash of vidcache's own."""

from __future__ import annotations

import warnings
from collections.abc import Callable

__all__ = ["load_plugins"]


def load_plugins(group: str, kind: str, use: Callable[[object], None]) -> None:
    """Load every entry point of ``group`` and hand its object to ``use``.

    Args:
        group: the entry-point group (``vidcache.backbones``, ``vidcache.tasks``).
        kind: what a plug-in adds, for the warning (``backbone``, ``task``).
        use: what to do with a loaded object (call it, register it).
    """
    from importlib.metadata import entry_points

    for point in entry_points(group=group):
        try:
            use(point.load())
        except Exception as exc:  # another package's bug must not stop vidcache's own
            warnings.warn(
                f"{kind} plugin {point.name} ({point.value}) did not load: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=3,
            )
