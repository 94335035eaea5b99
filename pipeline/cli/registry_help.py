"""Option help written from the backbone registry when ``--help`` is shown (not at import,
so the command line starts fast and a plug-in's backbones are listed too)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import click


class LazyHelpOption(click.Option):
    """A click option whose help (and shown default) are made by functions, on demand."""

    def __init__(self, *args, help_factory: Callable[[], str] | None = None,
                 default_factory: Callable[[], str] | None = None, **kwargs) -> None:  # fmt: skip
        self._help_factory, self._default_factory = help_factory, default_factory
        super().__init__(*args, **kwargs)

    # Read like click's own attributes (``--help``, docs/cli.md), made when read.
    @property
    def help(self):
        return self._help_factory() if self._help_factory else self._help

    @help.setter
    def help(self, value):
        self._help = value

    @property
    def show_default(self):
        return self._default_factory() if self._default_factory else self._show_default

    @show_default.setter
    def show_default(self, value):
        self._show_default = value


def _entries():
    from vidcache.features.backbones import backbone_names, get_backbone

    return [get_backbone(name) for name in backbone_names()]


def backbone_help() -> str:
    """``--backbone``: every registered network, its width and what it needs."""
    listed = []
    for entry in _entries():
        needs = f", needs .[{entry.extra}]" if entry.extra else ""
        hears = ", sound" if entry.hears else ""
        listed.append(f"{entry.name} ({entry.feature_dim}-d{hears}{needs})")
    aliases = [a for entry in _entries() for a in entry.aliases]
    also = f"; any case, or {', '.join(aliases)}" if aliases else "; any case"
    return (
        f"The network: {', '.join(listed)}{also}; plug-ins add more (docs/architecture.md); "
        "`vidcache weights --list` shows their weights."
    )


def _by(value) -> str:
    """``value`` of each backbone of pictures, grouped (the audio backbones take none)."""
    groups = defaultdict(list)
    for entry in _entries():
        if not entry.hears:
            groups[value(entry)].append(entry.name)
    return ", ".join(f"{size} for {' and '.join(names)}" for size, names in sorted(groups.items()))


def image_size_default() -> str:
    """``--image-size``'s default: each backbone's own size."""
    return f"the backbone's own: {_by(lambda e: e.default_image_size)}"


def image_size_help() -> str:
    return (
        f"Side of the square network input in pixels (at least {_by(lambda e: e.min_image_size)})."
    )


def weights_help() -> str:
    """``--weights``: where real weights come from, per kind of backbone."""
    folders = [e.name for e in _entries() if e.load_folder is not None]
    preset = f", or a keras-hub preset folder ({', '.join(folders)})" if folders else ""
    return (
        "Backbone weights: Keras' ImageNet file, a seeded random init (tests and demos only: "
        f"its features are NOT pretrained), a weights file{preset}."
    )
