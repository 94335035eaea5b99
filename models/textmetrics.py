"""Caption metrics implemented from their definitions: corpus BLEU-1..4 and CIDEr-D.

Both compare each generated caption with *all* reference captions of its video, on
tokens made by :func:`tokenize` (lowercase, punctuation removed, split on whitespace: the
same standardisation as the run's ``TextVectorization``).

BLEU (Papineni et al., 2002) is corpus-level, as in the MS-COCO caption evaluation code:
clipped n-gram counts and candidate lengths are summed over the corpus, the brevity
penalty uses, per candidate, the reference length closest to it (the shorter on a tie),
and BLEU-N is the geometric mean of the modified precisions 1..N times that penalty, with
the MS-COCO code's epsilons (a zero precision gives a tiny score; no other smoothing).
On the same tokens both BLEU and CIDEr-D equal ``pycocoevalcap``'s (tested); the standard
tokenisation and METEOR / ROUGE-L come from :mod:`models.cocoscore`.

CIDEr-D (Vedantam et al., 2015) follows the MS-COCO ``CiderScorer``: per n (1..4) a TF-IDF
vector of n-gram counts, the IDF taken over the reference sets of the evaluated corpus;
candidate and reference are compared by the cosine of their vectors with the candidate's
weights clipped to the reference's, times a Gaussian length penalty (sigma 6); the mean over
n, averaged over references and multiplied by 10, scores a video; CIDEr-D is the mean over
videos.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# The characters Keras' ``lower_and_strip_punctuation`` removes.
PUNCTUATION = re.compile(r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']')


def tokenize(text: str) -> list[str]:
    """Lowercase, drop punctuation, split on whitespace."""
    return PUNCTUATION.sub("", text.lower()).split()


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples) of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(
    candidate: Sequence[str], references: Sequence[Sequence[str]], n: int
) -> tuple[int, int]:
    """Clipped n-gram matches and n-gram total of one candidate (BLEU's ``p_n`` parts).

    Each candidate n-gram counts at most as often as it occurs in the single reference
    that has it most often.
    """
    counts = ngrams(candidate, n)
    most: Counter = Counter()
    for reference in references:
        for gram, count in ngrams(reference, n).items():
            most[gram] = max(most[gram], count)
    clipped = sum(min(count, most[gram]) for gram, count in counts.items())
    return clipped, max(0, len(candidate) - n + 1)


def _check(candidates: Sequence, references: Sequence) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every candidate needs at least one reference")


def _closest_length(length: int, references: Sequence[Sequence[str]]) -> int:
    return min((abs(len(r) - length), len(r)) for r in references)[1]


def corpus_bleu(
    candidates: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_n: int = 4,
) -> list[float]:
    """BLEU-1..``max_n`` of tokenised candidates, each against its list of references.

    Returns:
        ``[BLEU-1, ..., BLEU-max_n]``.

    Raises:
        ValueError: lengths differ, or a candidate has no reference.
    """
    _check(candidates, references)
    matches, totals = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for candidate, refs in zip(candidates, references):
        hyp_length += len(candidate)
        ref_length += _closest_length(len(candidate), refs)
        for n in range(1, max_n + 1):
            hit, total = modified_precision(candidate, refs, n)
            matches[n - 1] += hit
            totals[n - 1] += total
    # The MS-COCO scorer's epsilons (bleu_scorer.py: tiny 1e-15, small 1e-9), so the
    # figures equal its own: a zero precision gives a tiny score, not exactly 0.
    tiny, small = 1e-15, 1e-9
    ratio = (hyp_length + tiny) / (ref_length + small)
    penalty = 1.0 if ratio >= 1 else math.exp(1 - 1 / ratio)
    scores, product = [], 1.0
    for n in range(max_n):
        product *= (matches[n] + tiny) / (totals[n] + small)
        scores.append(penalty * product ** (1 / (n + 1)))
    return scores


def _tfidf(tokens: Sequence[str], df: Counter, log_docs: float, max_n: int):
    vectors, norms = [], []
    for n in range(1, max_n + 1):
        vector = {
            gram: count * (log_docs - math.log(max(1.0, df[gram])))
            for gram, count in ngrams(tokens, n).items()
        }
        vectors.append(vector)
        norms.append(math.sqrt(sum(v * v for v in vector.values())))
    return vectors, norms


def cider_d(
    candidates: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, list[float]]:
    """CIDEr-D of tokenised candidates against their references.

    Returns:
        The corpus score (mean over videos) and each video's score.

    Raises:
        ValueError: lengths differ, or a candidate has no reference.
    """
    _check(candidates, references)
    if not candidates:
        return 0.0, []
    df: Counter = Counter()
    for refs in references:
        seen = set()
        for ref in refs:
            for n in range(1, max_n + 1):
                seen.update(ngrams(ref, n))
        df.update(seen)
    log_docs = math.log(float(len(references)))
    scores = []
    for candidate, refs in zip(candidates, references):
        hyp_vectors, hyp_norms = _tfidf(candidate, df, log_docs, max_n)
        total = [0.0] * max_n
        for ref in refs:
            ref_vectors, ref_norms = _tfidf(ref, df, log_docs, max_n)
            delta = len(candidate) - len(ref)
            penalty = math.exp(-(delta**2) / (2 * sigma**2))
            for n in range(max_n):
                if hyp_norms[n] == 0 or ref_norms[n] == 0:
                    continue
                dot = sum(
                    min(value, ref_vectors[n].get(gram, 0.0)) * ref_vectors[n].get(gram, 0.0)
                    for gram, value in hyp_vectors[n].items()
                )
                total[n] += penalty * dot / (hyp_norms[n] * ref_norms[n])
        scores.append(10.0 * sum(total) / max_n / len(refs))
    return sum(scores) / len(scores), scores


def caption_metrics(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """BLEU-1..4 and CIDEr-D of caption strings against their reference strings."""
    hyps = [tokenize(c) for c in candidates]
    refs = [[tokenize(r) for r in rs] for rs in references]
    bleu = corpus_bleu(hyps, refs)
    cider, _ = cider_d(hyps, refs)
    result = {f"bleu{n}": round(score, 6) for n, score in enumerate(bleu, start=1)}
    result["cider_d"] = round(cider, 6)
    result["videos"] = len(candidates)
    return result
