"""Stage one of vidcache: decode video, sample frames, run the CNN once, cache the features.

Modules, one job each:

- ``video``: find videos, decode them, choose and fit their frames (``discover``,
  ``videoinfo``, ``decode``, ``framefolder``, ``decodeplan``, ``sampling``, ``transform``,
  ``frames``).
- ``audio``: sound on the frames' clock: decode any track to mono (``decode``), the
  log-mel and Whisper backbones' units (``logmel``, ``whisper``), which sound each row
  hears (``rows``, ``extractor``), block by block (``blocks``), and as a file plays
  (``stream``).
- ``backbone``: build InceptionV3 with the requested weights and run it as a compiled call.
- ``settings``: the frozen record of everything that determines the features.
- ``cache``: the HDF5 feature cache (writer with lock, reader), see ``docs/cache-format.md``.
- ``buffer``: per-video feature rows that spill to disk, so memory does not grow with length.
- ``fingerprint``: content fingerprints of sources.
- ``synthetic``: small synthetic videos for the demo and the tests.

Nothing here imports click or prints: problems are raised as ``features.errors`` exceptions.
"""
