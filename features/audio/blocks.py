"""An audio backbone's units, block by block: the one way both extraction and the stream
compute them, so a row heard as a file plays is the row extraction stored.

A hearing (``LogMel``, ``WhisperHearing``) has a ``block`` of samples (100 log-mel frames,
one 30-s Whisper chunk) whose units depend only on the samples ``[m * block, (m + 1) *
block + overhang)``: block ``m`` is computed alone from that slice of the waveform on the
frames' clock. A block cut short by the end of the waveform holds the units that fit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_units", "block_units", "blocks_of"]


def block_units(hearing, wave: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Block ``m``'s units of ``wave``: ``(times in seconds on the clock, vectors)``."""
    start = m * hearing.block
    times, vectors = hearing.units(wave[start : start + hearing.block + hearing.overhang], m == 0)
    return times + start / hearing.rate, vectors


def blocks_of(hearing, length: int) -> int:
    """How many blocks a waveform of ``length`` samples has (at least one)."""
    return max(1, -(-length // hearing.block))


def all_units(hearing, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every unit of ``wave``, block after block."""
    parts = [block_units(hearing, wave, m) for m in range(blocks_of(hearing, len(wave)))]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
