"""Checksums over the cache's index: one per record, and one over the commit count.

Schema 3 stores, beside the rows' CRC-32, a 64-bit check per index record over every field
of the record (the numeric columns, then the text columns, each text field with its
length), and a check of the commit count bound to the last committed record. Both are
computed here, vectorised over all records at once (an index of 100,000 records is checked
in a few tens of milliseconds), and by the writer for the records it appends, with the same
function.

The check of a record (``uint64``)::

    h = SEED
    for each numeric field v, in column order:  h = mix(h ^ bits(v) ^ field_key)
    for each text field (bytes b[0..L), in column order):
        h = mix(h ^ sum_p b[p] * (2p + 1) ^ field_key)    # the sum is modulo 2**32
        h = mix(h ^ L)

``mix`` is splitmix64's finaliser, a bijection of 64-bit words, so a record that differs
from the stored one in exactly one field always fails its check: one numeric field
differing, one text field of other length, or one text field whose bytes differ in one
position (its weight ``2p + 1`` is odd, so the sum changes). Damage spread over several
bytes of one text field is missed only by a chance of about 2**-32, over several fields
of about 2**-64. This is not a cryptographic hash: it finds damage, not tampering.

The commit check is ``mix(count ^ COMMIT_KEY)``, stored beside the count in one 16-byte
write: a count that changed no longer matches it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEED = np.uint64(0x76696463616368E3)  # "vidcach" and a tag byte
COMMIT_KEY = 0x636F6D6D69742121  # "commit!!"
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_TWO32 = np.uint32(2)


def mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a ``uint64`` array (a bijection; wraps modulo 2**64)."""
    h = h ^ (h >> _S30)
    h = h * _M1
    h = h ^ (h >> _S27)
    h = h * _M2
    return h ^ (h >> _S31)


def _key(field: int) -> np.uint64:
    return np.uint64((_GOLDEN * (field + 1)) & 0xFFFFFFFFFFFFFFFF)


def _bits(column: np.ndarray) -> np.ndarray:
    """The value of each element as a 64-bit word: floats by their IEEE bits, integers
    sign-extended."""
    column = np.asarray(column)
    if column.dtype.kind == "f":
        return np.ascontiguousarray(column, "<f8").view(np.uint64)
    return np.asarray(column, np.int64).view(np.uint64)


def text_sums(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record of a text column: ``sum_p b[p] * (2p + 1)`` over its bytes (``p``
    counted from the record's first byte, modulo 2**32: half the memory traffic of 64-bit
    sums, and an odd weight is still invertible, so one changed byte always shows) and
    its length.

    Offsets outside the bytes are clipped, so damaged offsets give wrong sums (and failed
    checks) rather than an error.
    """
    data = np.asarray(data, np.uint8)
    offsets = np.clip(np.asarray(offsets, np.int64), 0, len(data))
    starts, ends = offsets[:-1], offsets[1:]
    plain = np.zeros(len(data) + 1, np.uint32)
    weighted = np.zeros(len(data) + 1, np.uint32)
    np.cumsum(data, dtype=np.uint32, out=plain[1:])
    np.cumsum(np.multiply(data, np.arange(len(data), dtype=np.uint32)), out=weighted[1:])
    total = plain[ends] - plain[starts]
    moment = weighted[ends] - weighted[starts]
    first = starts.astype(np.uint32)
    # sum b[j] * (2 (j - start) + 1) = 2 * sum b[j] j - 2 start * sum b[j] + sum b[j]
    sums = _TWO32 * moment - _TWO32 * first * total + total
    return sums.astype(np.uint64), (ends - starts).astype(np.int64).view(np.uint64)


def record_checks(
    numbers: Sequence[np.ndarray], texts: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The check of every record.

    Args:
        numbers: the numeric columns in schema order, each ``(N,)``.
        texts: ``(bytes, offsets)`` of each text column in schema order; ``offsets`` is
            ``(N + 1,)`` into ``bytes``.

    Returns:
        ``(N,)`` ``uint64``.
    """
    count = len(texts[0][1]) - 1 if texts else len(numbers[0])
    h = np.full(count, SEED, np.uint64)
    field = 0
    for column in numbers:
        h = mix(h ^ _bits(column) ^ _key(field))
        field += 1
    for data, offsets in texts:
        sums, lengths = text_sums(data, offsets)
        h = mix(h ^ sums ^ _key(field))
        h = mix(h ^ lengths)
        field += 1
    return h


def commit_check(count: int) -> int:
    """The check stored beside a commit count (as a signed 64-bit value, like the count)."""
    word = np.array([(count ^ COMMIT_KEY) & 0xFFFFFFFFFFFFFFFF], np.uint64)
    return int(mix(word).view(np.int64)[0])


def failing(stored: np.ndarray, computed: np.ndarray) -> np.ndarray:
    """Positions whose stored check differs from the computed one."""
    return np.flatnonzero(np.asarray(stored, np.uint64) != computed)
