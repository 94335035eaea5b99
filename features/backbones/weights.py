"""Where a backbone's weights come from, and the identity a cache records for them.

``--weights`` takes one of three values, and the cache's settings record one identity per
value; :class:`WeightsSpec` writes that identity and parses it back (``--like``, ``predict``
and ``evaluate`` rebuild the network a cache was made with from it):

==================  ======================  ==============================================
``--weights``       identity                the weights
==================  ======================  ==============================================
``imagenet``        ``imagenet``            the backbone's pretrained file, in the Keras
                                            cache (:func:`pretrained_weights`)
``PATH``            ``file:NAME``           a weights file (or, for backbones that load
                                            them, a keras-hub preset folder) the user
                                            gives, by path
``random``          ``random:seed=S``       seeded random initialisation (tests, offline
                                            demos: the features mean nothing)
==================  ======================  ==============================================

The SHA-256 of the loaded tensors is recorded beside the identity, so two files of the same
name but other contents never pass as the same weights.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.backbones.registry import DEFAULT_BACKBONE, get_backbone
from vidcache.features.errors import WeightsUnavailable

DOWNLOAD_TIMEOUT_S = 20
_RANDOM = re.compile(r"random:seed=(-?\d+)")
_FILE_PREFIX = "file:"


@dataclass(frozen=True)
class WeightsSpec:
    """Where the backbone weights come from.

    Attributes:
        kind: ``"imagenet"``, ``"file"``, ``"random"``, or ``"none"`` for a backbone
            without weights (``logmel``).
        path: the file or preset folder, for ``"file"`` (only its name when parsed from an
            identity).
        seed: the initialisation seed, for ``"random"``.
    """

    kind: str
    path: Path | None = None
    seed: int = 0

    @classmethod
    def parse(cls, value: str, seed: int = 0) -> WeightsSpec:
        """Parse ``--weights``: ``imagenet``, ``random``, a file or a preset folder.

        Raises:
            WeightsUnavailable: a path that does not exist.
        """
        if value in ("imagenet", "random"):
            return cls(value, seed=seed)
        path = Path(value)
        if not (path.is_file() or path.is_dir()):
            raise WeightsUnavailable(
                f"weights file {value} does not exist (use --weights imagenet, random or a PATH)"
            )
        return cls("file", path=path.resolve())

    @property
    def identity(self) -> str:
        """What the cache records as ``weights``."""
        if self.kind == "random":
            return f"random:seed={self.seed}"
        if self.kind == "file":
            return f"{_FILE_PREFIX}{self.path.name}"
        if self.kind == "none":
            return "none"
        return "imagenet"

    @classmethod
    def from_identity(cls, identity: str) -> WeightsSpec:
        """Parse back what :attr:`identity` wrote.

        A ``file:NAME`` identity gives ``kind="file"`` with ``path=Path(NAME)``: the name
        only, the file itself has to be given again (:attr:`file_name`).

        Raises:
            ValueError: not an identity :attr:`identity` writes (for example the
                ``import:`` of features another tool made).
        """
        if identity in ("imagenet", "none"):
            return cls(identity)
        match = _RANDOM.fullmatch(identity)
        if match:
            return cls("random", seed=int(match.group(1)))
        if identity.startswith(_FILE_PREFIX) and len(identity) > len(_FILE_PREFIX):
            return cls("file", path=Path(identity[len(_FILE_PREFIX) :]))
        raise ValueError(f"not a vidcache weights identity: {identity!r}")

    @property
    def file_name(self) -> str | None:
        """The weights file's name, for ``"file"``."""
        return self.path.name if self.kind == "file" else None


def keras_cache_dir() -> Path:
    """The folder where Keras keeps downloaded weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


#: The way out when pretrained weights cannot be had, for the command line and Python alike.
RANDOM_HINT = (
    "--weights random (WeightsSpec('random') in Python), whose features are NOT pretrained"
)


def pretrained_weights(backbone: str = DEFAULT_BACKBONE, download: bool = True) -> Path:
    """A backbone's pretrained notop weights file, downloading it into the Keras cache if
    missing.

    Args:
        backbone: the registered backbone's name. Defaults to InceptionV3.
        download: try to download when the file is missing. Defaults to ``True``.

    Raises:
        WeightsUnavailable: the backbone has no pretrained file, or the file is missing and
            cannot be downloaded, or is damaged.
    """
    entry = get_backbone(backbone)
    source = entry.pretrained
    if source is None:
        if entry.real_weights:
            raise WeightsUnavailable(
                f"{entry.name} has no pretrained weights file in the Keras cache: its real "
                f"weights are {entry.real_weights}; or try vidcache without them: {RANDOM_HINT}"
            )
        raise WeightsUnavailable(
            f"{entry.name} has no pretrained weights file; give one (--weights PATH), or "
            f"{RANDOM_HINT}"
        )
    path = keras_cache_dir() / source.name
    hint = (
        f"fetch {source.url} on a machine with network access and copy it to {path}, "
        f"or give the file (--weights PATH), or try vidcache without it: {RANDOM_HINT}"
    )
    if path.is_file():
        if _md5(path) != source.md5:
            raise WeightsUnavailable(
                f"{path} is damaged (MD5 differs from Keras'); delete it and {hint}"
            )
        return path
    if not download:
        raise WeightsUnavailable(
            f"{source.label} weights for {entry.name} are not in {path}; {hint}"
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        import keras

        fetched = keras.utils.get_file(
            source.name,
            source.url,
            cache_subdir="models",
            file_hash=source.md5,
            cache_dir=str(path.parent.parent),
        )
    except Exception as exc:  # any network or file-system failure of the download
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise WeightsUnavailable(
            f"{source.label} weights for {entry.name} are not in the Keras cache and could "
            f"not be downloaded ({reason}); {hint}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(fetched)
