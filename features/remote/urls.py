"""Which inputs are URLs, the fsspec file system that reads one, and how a failure of a
store is told: one line naming the object, never a credential.

Credentials and endpoints come from where the store's own library looks (for S3:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``, ``~/.aws``, an instance or
pod role, ``AWS_ENDPOINT_URL`` for an S3-compatible server); vidcache never takes them as
options, prints them or records them. A URL's user part (``user:secret@``) and query
(a presigned URL's signature) are cut from everything shown or recorded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vidcache.features.errors import VidcacheError

__all__ = [
    "RemoteError",
    "describe",
    "filesystem",
    "install_hint",
    "is_url",
    "join",
    "scrub",
    "shown",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_ANY_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"]*)")
_HINTS = {
    "s3": "vidcache[cloud]",
    "s3a": "vidcache[cloud]",
    "gs": "vidcache[cloud-gcs]",
    "gcs": "vidcache[cloud-gcs]",
    "az": "vidcache[cloud-azure]",
    "abfs": "vidcache[cloud-azure]",
    "abfss": "vidcache[cloud-azure]",
}


class RemoteError(VidcacheError):
    """An object or prefix of a store cannot be listed or read (the message is one line,
    without credentials)."""


def is_url(text: str | Path) -> bool:
    """Whether ``text`` names an object in a store (``s3://``, ``gs://``, ``https://``...);
    ``file://`` and plain paths are local."""
    match = _SCHEME.match(str(text))
    return bool(match) and match.group(1).lower() != "file"


def scheme(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def shown(url: str) -> str:
    """``url`` as it may be shown and recorded: no ``user:secret@``, no query or fragment."""
    match = _SCHEME.match(url)
    if not match:
        return url
    rest = url[match.end() :]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{match.group(1)}://{host}{slash}{path}"


def scrub(text: str) -> str:
    """``text`` with every URL in it :func:`shown` (for messages from a store's library)."""
    return _ANY_URL.sub(lambda m: shown(m.group(1) + m.group(2)), text)


def join(url: str, name: str) -> str:
    """``name`` under the prefix ``url``."""
    return url.rstrip("/") + "/" + name.lstrip("/")


def install_hint(url: str) -> str:
    return f"pip install '{_HINTS.get(scheme(url), 'vidcache[cloud]')}'"


#: File systems by scheme and the environment they were made in: fsspec's own instance
#: cache keeps one made before the credentials were set (a long-lived process, a test).
_FILE_SYSTEMS: dict = {}
_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "GCS", "AZURE_", "FSSPEC_")


def _environment_key() -> str:
    """A digest of the environment variables a store's library reads (not the values)."""
    import hashlib

    chosen = sorted((k, v) for k, v in os.environ.items() if k.startswith(_CREDENTIAL_PREFIXES))
    return hashlib.sha256(repr(chosen).encode()).hexdigest()


def filesystem(url: str):
    """``(fs, path)``: the fsspec file system of ``url`` and the path in it.

    Raises:
        RemoteError: fsspec, or the store's file system, is not installed.
    """
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise RemoteError(
            f"{shown(url)}: reading a URL needs fsspec; install it with {install_hint(url)}"
        ) from None
    key = (scheme(url), _environment_key())
    try:
        fs = _FILE_SYSTEMS.get(key)
        if fs is None:
            fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
            _FILE_SYSTEMS[key] = fs
            return fs, path
        return fs, fs._strip_protocol(url)
    except ImportError:
        raise RemoteError(
            f"{shown(url)}: {scheme(url)}:// needs its file system; install it with "
            f"{install_hint(url)}"
        ) from None
    except ValueError as exc:
        raise RemoteError(f"{shown(url)}: {scrub(first_line(exc))}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def describe(exc: BaseException) -> str:
    """The cause of a store's failure in a few words (no URL query, no credential)."""
    name = type(exc).__name__
    text = scrub(first_line(exc))
    lower = text.lower()
    missing = "unable to locate" in lower and "credentials" in lower
    if name in ("NoCredentialsError", "PartialCredentialsError") or missing:
        return "no credentials found (set them in the environment, a profile or a role)"
    if isinstance(exc, PermissionError) or name in ("ClientAuthenticationError", "Forbidden"):
        return f"access denied: {text} (check the credentials and their rights)"
    if isinstance(exc, FileNotFoundError):
        return "no such object or prefix"
    if isinstance(exc, IsADirectoryError):
        return "a prefix, not an object"
    if isinstance(exc, (ConnectionError, TimeoutError)) or "connect" in lower:
        return f"the store cannot be reached ({text})"
    return text if isinstance(exc, OSError) else f"{name}: {text}"
