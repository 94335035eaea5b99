"""Exceptions raised by the vidcache core; the CLI turns each into a one-line message."""


class VidcacheError(Exception):
    """Base class of every error vidcache reports to users as a single line."""


class DiscoveryError(VidcacheError):
    """The inputs cannot be turned into a list of videos (duplicate names, bad labels file...)."""


class VideoDecodeError(VidcacheError):
    """One video cannot be decoded; the batch goes on without it."""


class WeightsUnavailable(VidcacheError):
    """The requested backbone weights cannot be found or loaded."""


class CacheFormatError(VidcacheError):
    """A file is not a vidcache feature cache, or of an unsupported schema version."""


class SettingsMismatch(VidcacheError):
    """A run would mix features made with different settings into one cache."""


class SettingsDiffer(SettingsMismatch):
    """A cache to extend holds features made with other settings than the run's. The
    message names the differences; each command adds what its user can do about it."""


class CacheLocked(VidcacheError):
    """Another process is writing the cache."""


class CacheUnwritable(VidcacheError):
    """A cache (or its lock file) cannot be written: read-only place, no permission."""


class CacheDamaged(CacheFormatError):
    """Stored bytes fail their checksum, or the file's structure is broken."""


class DiskFull(VidcacheError):
    """No space left to commit the next video; everything committed before is kept."""


def unwritable(exc: OSError, name, what: str) -> VidcacheError:
    """A permission, read-only or disk-full error on the cache ``name`` as the one line it
    deserves (:class:`DiskFull` or :class:`CacheUnwritable`); ``what`` says what was being
    done ("opening it", "its lock file f.h5.lock")."""
    import errno

    if exc.errno == errno.ENOSPC:
        return DiskFull(
            f"{name}: disk full ({what}); every video committed before is kept: free some "
            "space and run the same command again"
        )
    if exc.errno == errno.EROFS:
        return CacheUnwritable(f"{name}: cannot write ({what}): the file system is read-only")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return CacheUnwritable(f"{name}: cannot write ({what}): permission denied ({exc.strerror})")
    return CacheUnwritable(f"{name}: cannot write ({what}): {exc.strerror or exc}")


def interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` comes of Ctrl-C or SIGTERM: a ``KeyboardInterrupt`` raised while a
    compiled module initialises (TensorFlow's, at start-up) reaches Python as
    ``ImportError: initialization failed`` caused by it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
