"""The HDF5 feature cache: the writer a run holds under a lock, and the reader.

Schema 3 (``store``) is written; schema 2 files are read and extended as they are, schema 1
files (``legacy``) read as they are and upgraded by :func:`.maintenance.migrate`. Both are
documented in ``docs/cache-format.md``.

Opening is where crashes are healed: a file whose writer was killed still carries HDF5's
"open for write" flag. A writer (which holds :class:`CacheLock`) clears it before opening;
a reader clears it when the lock shows no writer is alive and the file is writable, and
otherwise opens the file in SWMR-read mode, which sees every committed video (also while a
run is writing the file). "Both" above: every format is documented there.

One module per job: ``store`` (the schema-2/3 format: attributes, index, rows, the low-level
writer), ``layouts`` (which reader a file's encoding needs), ``reader``, ``writer``,
``lock``, ``files`` (opening), ``h5recover`` (crashed writers), ``integrity`` (record
checks), ``maintenance`` (verify, compact, migrate, merge), ``legacy`` (schema 1),
``entry`` and ``buffer`` (a video's record and rows on their way in). This package's own
names are the ones callers use.
"""

from vidcache.features.cache import store
from vidcache.features.cache.entry import CacheEntry, decode_key, encode_key
from vidcache.features.cache.lock import (
    CacheLock,
    hold_file,
    recover_if_crashed,
    release_file,
    remove_leftovers,
    rewrite_path,
)
from vidcache.features.cache.reader import CacheReader, cache_schema, common_settings, read_settings
from vidcache.features.cache.writer import FeatureCache

FORMAT = store.FORMAT
SCHEMA_VERSION = store.SCHEMA_VERSION

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CacheEntry",
    "CacheLock",
    "CacheReader",
    "FeatureCache",
    "cache_schema",
    "common_settings",
    "decode_key",
    "encode_key",
    "hold_file",
    "read_settings",
    "recover_if_crashed",
    "release_file",
    "remove_leftovers",
    "rewrite_path",
]
