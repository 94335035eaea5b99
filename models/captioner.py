"""Video captioning over cached frame features: an encoder (LSTM, GRU or causal
transformer), a decoder, search.

Training model (teacher forcing), inputs ``frames (B, T, D)`` zero-padded and ``tokens
(B, L)`` = ``<start> w1..wn`` zero-padded, output word logits ``(B, L, V)``::

    frames -> Masking -> Normalization -> LSTM "encoder" -> (sequence, h, c)
    tokens -> Embedding(mask_zero) -> LSTM "decoder" (initial state h, c)
           [-> dot-product "attention" over the encoder sequence -> Dense "attention_out"]
           -> Dense "words"

With ``encoder="gru"`` both recurrent layers are GRUs (state h alone); with
``encoder="transformer"`` the frames go through ``models.attention``'s causal blocks and the
decoder LSTM starts from ``init_h``/``init_c`` of their last-and-mean readout.

Padded frames are masked in the encoder (its final state is that of the last real frame)
and in attention; padded tokens are masked in the decoder and given zero weight in the
loss. :class:`CaptionDecoder` runs the same layers one word at a time for greedy and beam
search.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from vidcache.models.heads import standardized
from vidcache.models.text import END, PAD, START


def build_captioner(
    vocab_size: int,
    mean: np.ndarray,
    variance: np.ndarray,
    units: int = 256,
    embedding_dim: int = 128,
    attention: bool = False,
    dropout: float = 0.2,
    encoder: str = "lstm",
    attention_heads: int = 4,
    layers: int = 1,
):
    """Build the uncompiled teacher-forcing model (outputs logits).

    Args:
        vocab_size: ids in the vocabulary (padding and reserved tokens included).
        mean: per-dimension mean of the training frames.
        variance: per-dimension variance of the training frames.
        units: LSTM units of encoder and decoder. Defaults to 256.
        embedding_dim: word embedding size. Defaults to 128.
        attention: attend over the encoder's frame outputs at each word. Defaults to False.
        dropout: input dropout of both LSTMs. Defaults to 0.2.
        encoder: ``"lstm"`` (LSTM encoder and decoder), ``"gru"`` (GRU encoder and
            decoder) or ``"transformer"`` (a causal self-attention encoder of ``layers``
            blocks whose last-and-mean readout gives the LSTM decoder its initial state
            through ``init_h``/``init_c``). Defaults to ``"lstm"``.
        attention_heads: heads of the transformer encoder. Defaults to 4.
        layers: blocks of the transformer encoder. Defaults to 1.
    """
    import keras

    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}. Received: encoder={encoder}")
    dim = int(np.asarray(mean).shape[-1])
    frames = keras.Input((None, dim), name="frames")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = standardized(frames, mean, variance)
    if encoder == "transformer":
        from vidcache.models.attention import LastAndMean, transformer_body

        encoded = transformer_body(x, units, layers, attention_heads, dropout, True, True)
        readout = LastAndMean(pooled=True, name="readout")(encoded)
        state = [
            keras.layers.Dense(units, activation="tanh", name=name)(readout)
            for name in ("init_h", "init_c")
        ]
    else:
        recurrent = keras.layers.GRU if encoder == "gru" else keras.layers.LSTM
        encoded, *state = recurrent(
            units, return_sequences=True, return_state=True, dropout=dropout, name="encoder"
        )(x)
    words = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(
        tokens
    )
    decoder = keras.layers.GRU if encoder == "gru" else keras.layers.LSTM
    y = decoder(units, return_sequences=True, dropout=dropout, name="decoder")(
        words, initial_state=state
    )
    if attention:
        context = keras.layers.Attention(name="attention")([y, encoded])
        y = keras.layers.Concatenate(name="attend")([y, context])
        y = keras.layers.Dense(units, activation="tanh", name="attention_out")(y)
    logits = keras.layers.Dense(vocab_size, name="words")(y)
    name = "vidcache_captioner_attention" if attention else "vidcache_captioner"
    return keras.Model([frames, tokens], logits, name=name)


#: The captioner's encoders (``train-rnn --task caption``: ``--cell`` or ``--head``).
ENCODERS = ("lstm", "gru", "transformer")


def encoder_kind(model) -> str:
    """Which encoder a trained captioner has: ``lstm``, ``gru`` or ``transformer``."""
    import keras

    names = {layer.name for layer in model.layers}
    if "init_h" in names:
        return "transformer"
    return "gru" if isinstance(model.get_layer("encoder"), keras.layers.GRU) else "lstm"


def frame_mask(frames: np.ndarray) -> np.ndarray:
    """``(B, T)`` True where a frame is real (not all-zero padding), as ``Masking`` sees it."""
    return np.any(np.asarray(frames) != 0.0, axis=-1)


class CaptionDecoder:
    """Generate captions with the layers of a trained :func:`build_captioner` model.

    Args:
        model: the trained model.
    """

    def __init__(self, model) -> None:
        from vidcache.features.backbone import import_tensorflow

        tf = import_tensorflow()
        import keras

        names = {layer.name for layer in model.layers}
        self.attention = "attention" in names
        self.kind = encoder_kind(model)
        if self.kind == "transformer":
            outputs = [model.get_layer(n).output for n in ("encoder_norm", "init_h", "init_c")]
        else:
            outputs = model.get_layer("encoder").output
        self._encoder = keras.Model(model.inputs[0], outputs)
        embedding = model.get_layer("embedding")
        cell = model.get_layer("decoder").cell
        gru = self.kind == "gru"  # a GRU carries h alone: c rides along unchanged
        words = model.get_layer("words")
        attend = model.get_layer("attention") if self.attention else None
        attend_out = model.get_layer("attention_out") if self.attention else None
        self.vocab_size = int(words.units)
        blocked = np.zeros(self.vocab_size, np.float32)
        blocked[[PAD, START]] = -np.inf  # never generated
        blocked = tf.constant(blocked)

        @tf.function(reduce_retracing=True)
        def step(token, h, c, encoded, mask):
            # A plain lookup: calling the layer would attach a mask the cell cannot take.
            vectors = tf.gather(embedding.embeddings, token)
            if gru:
                out, (h,) = cell(vectors, [h], training=False)
            else:
                out, (h, c) = cell(vectors, [h, c], training=False)
            if attend is not None:
                with warnings.catch_warnings():  # one frame: Keras warns of a size-1 softmax
                    warnings.filterwarnings("ignore", "You are using a softmax over axis -1")
                    context = attend([out[:, None], encoded], mask=[None, mask], training=False)
                out = attend_out(tf.concat([out, context[:, 0]], axis=-1))
            return tf.nn.log_softmax(words(out) + blocked), h, c

        self._step = step

    def encode(self, frames: np.ndarray):
        """Encoder outputs, final states and frame mask for ``frames (B, T, D)``."""
        frames = np.asarray(frames, np.float32)
        encoded, h, *c = self._encoder(frames, training=False)
        c = c[0] if c else np.zeros_like(h)  # a GRU has no cell state
        return encoded, h, c, frame_mask(frames)

    def greedy(self, frames: np.ndarray, max_words: int) -> list[list[int]]:
        """The most likely word at each step, for a batch of videos (zero-padded).

        Returns:
            Each video's word ids, without ``<end>``.
        """
        return self.greedy_encoded(self.encode(frames), max_words)

    def greedy_encoded(self, encoding, max_words: int) -> list[list[int]]:
        """:meth:`greedy` from the output of :meth:`encode`."""
        encoded, h, c, mask = encoding
        batch = len(mask)
        token = np.full(batch, START, np.int32)
        out = [[] for _ in range(batch)]
        done = np.zeros(batch, bool)
        for _ in range(max_words + 1):
            logp, h, c = self._step(token, h, c, encoded, mask)
            token = np.argmax(np.asarray(logp), axis=-1).astype(np.int32)
            for i in np.flatnonzero(~done):
                if token[i] == END:
                    done[i] = True
                else:
                    out[i].append(int(token[i]))
            done |= np.array([len(o) >= max_words for o in out])
            if done.all():
                break
        return out

    def beam(
        self, frames: np.ndarray, beam_size: int, max_words: int, length_penalty: float = 0.0
    ) -> list[int]:
        """Beam search for one video ``frames (T, D)``; see :meth:`beam_batch`."""
        return self.beam_batch(np.asarray(frames)[None], beam_size, max_words, length_penalty)[0]

    def beam_batch(
        self, frames: np.ndarray, beam_size: int, max_words: int, length_penalty: float = 0.0
    ) -> list[list[int]]:
        """Beam search for a batch of videos ``frames (B, T, D)`` (zero-padded).

        Each video keeps its ``beam_size`` best partial captions (sum of log-probabilities);
        a caption ends at ``<end>`` or at ``max_words`` words. The result maximises
        ``score / (words + 1) ** length_penalty`` (0: the plain sum). With ``beam_size`` 1
        this is exactly greedy decoding. The partial captions of every video go through
        one compiled step together.

        Returns:
            Each video's best caption as word ids, without ``<end>``.
        """
        return self.beam_encoded(self.encode(frames), beam_size, max_words, length_penalty)

    def beam_encoded(
        self, encoding, beam_size: int, max_words: int, length_penalty: float = 0.0
    ) -> list[list[int]]:
        """:meth:`beam_batch` from the output of :meth:`encode`."""
        encoded, h, c, mask = encoding
        encoded, h, c = np.asarray(encoded), np.asarray(h), np.asarray(c)
        batch = len(mask)
        # Per video: (log-probability, words, row of h and c holding its state).
        alive = [[(0.0, [], video)] for video in range(batch)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        for _ in range(max_words + 1):
            rows = [(video, item) for video in range(batch) for item in alive[video]]
            if not rows:
                break
            videos = np.array([video for video, _ in rows])
            states = np.array([item[2] for _, item in rows])
            tokens = np.array([item[1][-1] if item[1] else START for _, item in rows], np.int32)
            logp, h, c = self._step(tokens, h[states], c[states], encoded[videos], mask[videos])
            logp, h, c = np.asarray(logp), np.asarray(h), np.asarray(c)
            start = 0
            for video in range(batch):
                count = len(alive[video])
                if not count:
                    continue
                scores = np.array([score for score, _, _ in alive[video]])
                totals = (scores[:, None] + logp[start : start + count]).ravel()
                best = np.argsort(-totals, kind="stable")[:beam_size]
                next_alive = []
                for index in best:
                    row, word = divmod(int(index), self.vocab_size)
                    score, words = float(totals[index]), alive[video][row][1]
                    if word == END:
                        finished[video].append((score, words))
                    elif len(words) + 1 >= max_words:
                        finished[video].append((score, [*words, word]))
                    else:
                        next_alive.append((score, [*words, word], start + row))
                # Sums of log-probabilities only fall: stop once nothing alive can win.
                done = finished[video]
                if (
                    next_alive
                    and len(done) >= beam_size
                    and length_penalty == 0.0
                    and max(s for s, _ in done) >= max(s for s, _, _ in next_alive)
                ):
                    next_alive = []
                alive[video] = next_alive
                start += count

        def rank(item):
            score, words = item
            return score / max(1, len(words) + 1) ** length_penalty

        return [
            max(finished[video] or [(s, w) for s, w, _ in alive[video]], key=rank)[1]
            for video in range(batch)
        ]

    def captions(
        self, sequences: Sequence[np.ndarray], beam_size: int, max_words: int, batch_size=32
    ) -> list[list[int]]:
        """Word ids for each sequence ``(T, D)``: greedy, or beam search, in batches."""
        out = []
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            padded = np.zeros((len(chunk), max(len(s) for s in chunk), chunk[0].shape[1]))
            for i, s in enumerate(chunk):
                padded[i, : len(s)] = s
            if beam_size > 1:
                out.extend(self.beam_batch(padded, beam_size, max_words))
            else:
                out.extend(self.greedy(padded, max_words))
        return out


class StreamingCaptioner:
    """Caption a video while its frames arrive: each frame's features go through one step of
    the encoder (its state carried on), and :meth:`caption` decodes from the frames so far.
    After the last frame the caption equals the offline one.

    Args:
        model: the trained :func:`build_captioner` model.
        beam_size: 1 for greedy decoding, or the beam width. Defaults to 1.
        max_words: the length limit. Defaults to 20.
    """

    def __init__(self, model, beam_size: int = 1, max_words: int = 20) -> None:
        from vidcache.features.backbone import import_tensorflow

        tf = import_tensorflow()
        self.decoder = CaptionDecoder(model)
        self.beam_size, self.max_words = beam_size, max_words
        standardize = model.get_layer("standardize")
        self._kind = self.decoder.kind
        if self._kind == "transformer":
            self._start_transformer(tf, model, standardize)
            self.reset()
            return
        cell = model.get_layer("encoder").cell
        self._units = int(cell.units)
        gru = self._kind == "gru"

        @tf.function(reduce_retracing=True)
        def encode_step(x, h, c):
            # The layer's statistics are shaped for (batch, time, dim): one frame is (1, dim).
            x = tf.reshape(standardize(x[None, :]), (1, -1))
            if gru:
                out, (h,) = cell(x, [h], training=False)
            else:
                out, (h, c) = cell(x, [h, c], training=False)
            return out, h, c

        self._encode_step = encode_step
        self.reset()

    def _start_transformer(self, tf, model, standardize) -> None:
        """The transformer encoder one frame at a time: each block's keys and values of the
        frames so far are kept (as for a classifier, :mod:`models.stream`); the decoder's
        initial state comes from the readout of the frames so far."""
        from vidcache.models.attention import attention_blocks, empty_cache, encoder_step

        blocks = attention_blocks(model)
        encode = encoder_step(model)
        init_h, init_c = model.get_layer("init_h"), model.get_layer("init_c")
        self._blocks, self._empty_cache = blocks, empty_cache
        self._units = int(blocks[-1].units)

        @tf.function(reduce_retracing=True)
        def encode_step(x, position, caches):
            return encode(tf.reshape(standardize(x[None, :]), (1, -1)), position, caches)

        @tf.function(reduce_retracing=True)
        def initial_state(last, mean):
            readout = tf.concat([last, mean], axis=-1)
            return init_h(readout), init_c(readout)

        self._encode_step, self._initial_state = encode_step, initial_state

    def reset(self) -> None:
        """Forget every frame seen so far."""
        self._h = np.zeros((1, self._units), np.float32)
        self._c = np.zeros((1, self._units), np.float32)
        self._outputs: list[np.ndarray] = []
        if self._kind == "transformer":
            self._caches = [self._empty_cache(block) for block in self._blocks]
        self.frames = 0

    def step(self, features: np.ndarray) -> None:
        """Take one frame's feature vector ``(D,)``."""
        x = np.asarray(features, np.float32)
        if self._kind == "transformer":
            out, self._caches = self._encode_step(x, np.int32(self.frames), self._caches)
        else:
            out, self._h, self._c = self._encode_step(x, self._h, self._c)
        self._outputs.append(np.asarray(out))
        self.frames += 1

    def encoding(self):
        """What :meth:`CaptionDecoder.encode` gives for the frames so far: the encoder's
        outputs ``(1, T, units)``, the decoder's initial ``h`` and ``c``, the frame mask."""
        encoded = np.stack(self._outputs, axis=1)
        h, c = self._h, self._c
        if self._kind == "transformer":
            h, c = self._initial_state(self._outputs[-1], encoded.mean(axis=1))
            h, c = np.asarray(h), np.asarray(c)
        return encoded, h, c, np.ones(encoded.shape[:2], bool)

    def caption(self) -> list[int]:
        """Word ids of the caption of the frames so far (none before the first frame)."""
        if not self._outputs:
            return []
        encoding = self.encoding()
        if self.beam_size > 1:
            return self.decoder.beam_encoded(encoding, self.beam_size, self.max_words)[0]
        return self.decoder.greedy_encoded(encoding, self.max_words)[0]
