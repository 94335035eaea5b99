"""Log-mel band energies: the front end of VGGish and YAMNet, exact and without weights.

16 kHz mono; frames of 25 ms (400 samples) every 10 ms (160), no padding, a periodic Hann
window, the magnitude of a 512-point FFT, 64 triangular mel bands from 125 to 7500 Hz on
the HTK mel scale (``1127 ln(1 + f/700)``, VGGish's ``mel_features.py``), and
``log(mel + 0.001)`` (YAMNet's offset). Frame ``i`` covers samples ``[160 i, 160 i + 400)``;
its time is its centre, ``(160 i + 200) / 16000`` s after the waveform's first sample.

A row is the log of each band's *mean* energy over the row's span (the frames' mel
energies are averaged, then the log is taken: :meth:`LogMel.finish`), so a band holds the
energy that sounded in it during the span; a mean of logs would let the near-silence of
a band weigh as much as its sound (on a log scale, a sidelobe at -60 dB differs from one
at -80 dB as much as a tone from half of it).

Everything is float64 NumPy, so the same waveform gives the same bands on every machine.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["LogMel", "band_centre_hz", "mel_matrix"]

RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512
BANDS = 64
LOW_HZ, HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.001
#: frames computed at once (bounds the memory of a long track: 4096 x 512 float64)
_BLOCK = 4096


def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hertz, np.float64) / 700.0)


def mel_matrix(
    bands: int = BANDS, bins: int = FFT // 2 + 1, rate: int = RATE, low=LOW_HZ, high=HIGH_HZ
) -> np.ndarray:
    """``(bins, bands)`` weights from FFT magnitudes to mel bands (VGGish's
    ``spectrogram_to_mel_matrix``: triangles on the mel scale, the DC bin left out)."""
    bin_mels = _hertz_to_mel(np.linspace(0.0, rate / 2.0, bins))
    edges = np.linspace(_hertz_to_mel(low), _hertz_to_mel(high), bands + 2)
    weights = np.empty((bins, bands))
    for band in range(bands):
        lower, centre, upper = edges[band : band + 3]
        rising = (bin_mels - lower) / (centre - lower)
        falling = (upper - bin_mels) / (upper - centre)
        weights[:, band] = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def band_centre_hz(band: int) -> float:
    """The frequency at the peak of mel band ``band`` (0-based): a tone there lands in
    that band alone, for tests and demos that need to know which band should light up."""
    edges = np.linspace(_hertz_to_mel(LOW_HZ), _hertz_to_mel(HIGH_HZ), BANDS + 2)
    return float(700.0 * np.expm1(edges[band + 1] / 1127.0))


class LogMel:
    """The ``logmel`` backbone's computation: units of 10 ms, 64 log-mel bands each."""

    rate = RATE
    feature_dim = BANDS
    #: samples of one block of units (100 frames) and the samples past it they need
    #: (:mod:`features.audio.blocks`)
    block = 100 * HOP
    overhang = WINDOW - HOP

    def __init__(self) -> None:
        self._mel = mel_matrix()
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic
        recipe = f"logmel:{RATE}:{WINDOW}:{HOP}:{FFT}:{LOW_HZ}:{HIGH_HZ}:{LOG_OFFSET}".encode()
        #: what the cache records as the weights' checksum: the filterbank and the recipe,
        #: so a change in either is a change of features
        self.weights_sha256 = hashlib.sha256(recipe + self._mel.tobytes()).hexdigest()

    def units(self, samples: np.ndarray, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(times, bands)``: each frame's centre (seconds from the first sample) and its
        ``(64,)`` mel band energies (linear: :meth:`finish` takes the log after pooling),
        float32. A waveform shorter than one frame is padded with silence to one frame
        (``pad``), or gives no frame."""
        samples = np.asarray(samples, np.float64)
        if len(samples) < WINDOW and not pad:
            return np.zeros(0), np.zeros((0, BANDS), np.float32)
        if len(samples) < WINDOW:
            samples = np.pad(samples, (0, WINDOW - len(samples)))
        count = 1 + (len(samples) - WINDOW) // HOP
        out = np.empty((count, BANDS), np.float32)
        for start in range(0, count, _BLOCK):
            stop = min(count, start + _BLOCK)
            frames = np.lib.stride_tricks.sliding_window_view(
                samples[start * HOP : (stop - 1) * HOP + WINDOW], WINDOW
            )[::HOP]
            magnitude = np.abs(np.fft.rfft(frames * self._window, n=FFT))
            out[start:stop] = magnitude @ self._mel
        times = (np.arange(count) * HOP + WINDOW / 2) / RATE
        return times, out

    @staticmethod
    def finish(pooled: np.ndarray) -> np.ndarray:
        """Rows from pooled band energies: ``log(mean energy + 0.001)``."""
        return np.log(np.asarray(pooled, np.float64) + LOG_OFFSET).astype(np.float32)
