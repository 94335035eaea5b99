"""Caption text <-> token ids, with Keras' ``TextVectorization`` (saved in the run folder).

Captions are lowercased and stripped of punctuation by the layer's own
``lower_and_strip_punctuation``, split on whitespace, and mapped to ids::

    0 padding   1 [UNK]   2 <start>   3 <end>   4... words, most frequent first

``<start>`` and ``<end>`` contain ``<`` and ``>``, which the standardisation removes, so no
caption text can ever produce them. The decoder reads ``<start> w1 .. wn`` and learns to
emit ``w1 .. wn <end>`` (teacher forcing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcache.features.errors import VidcacheError

PAD, UNK, START, END = 0, 1, 2, 3
START_TOKEN, END_TOKEN = "<start>", "<end>"
VECTORIZER_FILE = "vectorizer.keras"


class VocabularyError(VidcacheError):
    """Captions cannot give a vocabulary, or the saved vectorizer is unusable."""


class CaptionVocabulary:
    """Encode captions to id sequences and decode ids back to text.

    Args:
        layer: a ``TextVectorization`` in ``int`` mode whose vocabulary starts with
            ``["", "[UNK]", "<start>", "<end>"]``.
    """

    def __init__(self, layer) -> None:
        words = [str(w) for w in layer.get_vocabulary()]
        if words[:4] != ["", "[UNK]", START_TOKEN, END_TOKEN]:
            raise VocabularyError(
                f"the vectorizer's vocabulary does not start with the reserved tokens: {words[:4]}"
            )
        self.layer = layer
        self.words = words

    @classmethod
    def build(cls, captions: Sequence[str], max_tokens: int = 5000) -> CaptionVocabulary:
        """Adapt a vocabulary of at most ``max_tokens`` ids (reserved ones included) to
        ``captions``; rarer words map to ``[UNK]``.

        Raises:
            VocabularyError: no captions, or ``max_tokens`` leaves no room for words.
        """
        from vidcache.features.backbone import import_tensorflow

        import_tensorflow()
        import keras

        if max_tokens < 5:
            raise VocabularyError(f"the vocabulary needs at least 5 ids. Received: {max_tokens}")
        if not captions:
            raise VocabularyError("no captions to build a vocabulary from")
        counter = keras.layers.TextVectorization(
            max_tokens=max_tokens - 2, standardize="lower_and_strip_punctuation"
        )
        counter.adapt(np.asarray(list(captions), dtype=object))
        words = [w for w in map(str, counter.get_vocabulary()[2:]) if w.strip()]
        if not words:
            raise VocabularyError("the captions contain no words")
        layer = keras.layers.TextVectorization(
            vocabulary=[START_TOKEN, END_TOKEN, *words],
            standardize="lower_and_strip_punctuation",
            output_mode="int",
            name="vectorizer",
        )
        return cls(layer)

    @property
    def size(self) -> int:
        """Ids in use, padding and reserved tokens included."""
        return len(self.words)

    def words_of(self, caption: str) -> list[int]:
        """The word ids of one caption (no start/end)."""
        ids = np.asarray(self.layer([caption]))[0]
        return [int(i) for i in ids if i != PAD]

    def encode(self, captions: Sequence[str], max_words: int) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forcing pairs for captions cut to ``max_words`` words.

        Returns:
            ``inputs (N, L)`` = ``<start> w1..wn`` and ``targets (N, L)`` = ``w1..wn <end>``,
            zero-padded to ``L`` = the longest caption + 1.
        """
        rows = []
        for start in range(0, len(captions), 4096):  # one layer call per chunk, not per caption
            chunk = np.asarray(list(captions[start : start + 4096]), dtype=object)
            for ids in np.asarray(self.layer(chunk)):
                rows.append([int(i) for i in ids if i != PAD][:max_words])
        length = max((len(r) for r in rows), default=0) + 1
        inputs = np.zeros((len(rows), length), np.int32)
        targets = np.zeros((len(rows), length), np.int32)
        for i, row in enumerate(rows):
            inputs[i, : len(row) + 1] = [START, *row]
            targets[i, : len(row) + 1] = [*row, END]
        return inputs, targets

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids: stops at ``<end>``, skips padding and ``<start>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i in (PAD, START):
                continue
            words.append(self.words[i] if 0 <= i < len(self.words) else "[UNK]")
        return " ".join(words)

    def save(self, run_dir: Path) -> Path:
        """Write the layer (as a one-layer Keras model) to ``run_dir/vectorizer.keras``."""
        import keras

        model = keras.Sequential([keras.Input((), dtype="string"), self.layer], name="vectorizer")
        path = Path(run_dir) / VECTORIZER_FILE
        model.save(path)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> CaptionVocabulary:
        """Read ``run_dir/vectorizer.keras`` (safe mode).

        Raises:
            VocabularyError: missing or unreadable.
        """
        from vidcache.features.backbone import import_tensorflow

        import_tensorflow()
        import keras

        path = Path(run_dir) / VECTORIZER_FILE
        if not path.is_file():
            raise VocabularyError(f"{run_dir} is a caption run without {VECTORIZER_FILE}")
        try:
            model = keras.models.load_model(path, safe_mode=True)
        except (OSError, ValueError, TypeError) as exc:
            raise VocabularyError(f"{path}: cannot load ({str(exc).splitlines()[0]})") from None
        return cls(model.layers[-1])
