"""Recovery of an HDF5 file whose writer died: what ``h5clear -s --increment`` does.

A file opened for writing with ``libver="latest"`` (superblock version 2 or 3) carries
"file consistency flags" in its superblock: bit 0 while a writer has it open, bit 2 while
that writer is in SWMR mode. A writer that exits cleanly clears them; one that is killed
leaves them set, and from then on HDF5 refuses a plain open ("file is already open for
write (may use <h5clear file> to clear file consistency flags)"), although SWMR readers
still see everything up to the writer's last flush. ``h5clear`` is not in the h5py wheel,
so this module clears the flags itself, per the HDF5 File Format Specification (section
II.A, superblock versions 2 and 3)::

    offset  size  field
    0       8     signature  \\x89HDF\\r\\n\\x1a\\n
    8       1     superblock version (2 or 3)
    9       1     size of offsets O
    10      1     size of lengths
    11      1     file consistency flags
    12      O     base address
    12+O    O     superblock extension address
    12+2O   O     end-of-file address (EOA)
    12+3O   O     root group object header address
    12+4O   4     checksum: Jenkins' lookup3 ``hashlittle`` of the bytes before it

Like ``h5clear --increment`` it also raises the EOA to the file's real size, in case the
writer had allocated space past the EOA it last wrote. Only call this while no process has
the file open for writing (vidcache holds its :class:`~vidcache.features.cache.CacheLock`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.errors import CacheDamaged

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_M = 0xFFFFFFFF
# HDF5 looks for the superblock at 0 and at powers of two from 512 (after a user block).
_SEARCH = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, byte-wise, as HDF5's ``H5_checksum_lookup3``."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & _M
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & _M
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & _M
        a = (a - c) & _M ^ _rot(c, 4)
        c = (c + b) & _M
        b = (b - a) & _M ^ _rot(a, 6)
        a = (a + c) & _M
        c = (c - b) & _M ^ _rot(b, 8)
        b = (b + a) & _M
        a = (a - c) & _M ^ _rot(c, 16)
        c = (c + b) & _M
        b = (b - a) & _M ^ _rot(a, 19)
        a = (a + c) & _M
        c = (c - b) & _M ^ _rot(b, 4)
        b = (b + a) & _M
        i += 12
        length -= 12
    if length == 0:
        return c
    tail = data[i:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c = (c ^ b) - _rot(b, 14) & _M
    a = (a ^ c) - _rot(c, 11) & _M
    b = (b ^ a) - _rot(a, 25) & _M
    c = (c ^ b) - _rot(b, 16) & _M
    a = (a ^ c) - _rot(c, 4) & _M
    b = (b ^ a) - _rot(a, 14) & _M
    c = (c ^ b) - _rot(b, 24) & _M
    return c


@dataclass(frozen=True)
class Superblock:
    """The fields of a version 2/3 superblock that recovery reads and writes."""

    offset: int  # where the superblock starts in the file
    version: int
    offset_size: int
    flags: int
    eoa: int
    checksum_ok: bool

    @property
    def open_for_write(self) -> bool:
        """A writer had the file open and did not close it (or still has it open)."""
        return bool(self.flags & 0b101)


def read_superblock(path: Path) -> Superblock | None:
    """The superblock of ``path``, or ``None`` when it is not HDF5 (no signature).

    A version 0/1 superblock has no consistency flags: it is returned with ``flags=0``
    (nothing to recover).

    Raises:
        CacheDamaged: the signature is there, but the superblock is cut short or its
            field sizes are impossible.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        for offset in _SEARCH:
            handle.seek(offset)
            raw = handle.read(12 + 4 * 8 + 4)
            if raw[:8] != SIGNATURE:
                continue
            if len(raw) < 12:
                raise CacheDamaged(f"{path}: damaged cache (the file is truncated)")
            version = raw[8]
            if version < 2:
                return Superblock(offset, version, 0, 0, 0, True)
            size = raw[9]
            end = 12 + 4 * size
            if size not in (2, 4, 8):
                raise CacheDamaged(f"{path}: damaged cache (the HDF5 superblock is damaged)")
            if len(raw) < end + 4:
                raise CacheDamaged(f"{path}: damaged cache (the file is truncated)")
            return Superblock(
                offset=offset,
                version=version,
                offset_size=size,
                flags=raw[11],
                eoa=int.from_bytes(raw[12 + 2 * size : 12 + 3 * size], "little"),
                checksum_ok=lookup3(raw[:end]) == int.from_bytes(raw[end : end + 4], "little"),
            )
    return None


def clear_write_flags(path: Path, fsync: bool = True) -> bool:
    """Clear the consistency flags a dead writer left, as ``h5clear -s --increment``.

    Returns:
        True when the flags were set and are now cleared; False when there was nothing to
        do (clean file, version 0/1 superblock, or a superblock that fails its checksum,
        which is left alone for the caller to report as damage).
    """
    block = read_superblock(path)
    if block is None or block.version < 2 or not block.open_for_write or not block.checksum_ok:
        return False
    size = block.offset_size
    end = 12 + 4 * size
    with open(path, "r+b") as handle:
        handle.seek(block.offset)
        raw = bytearray(handle.read(end + 4))
        real_size = os.fstat(handle.fileno()).st_size - block.offset
        raw[11] = 0
        raw[12 + 2 * size : 12 + 3 * size] = max(block.eoa, real_size).to_bytes(size, "little")
        raw[end : end + 4] = lookup3(bytes(raw[:end])).to_bytes(4, "little")
        handle.seek(block.offset)
        handle.write(raw)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    return True
