"""BLEU and CIDEr-D against examples worked by hand (and the BLEU paper's own examples)."""

import math

import pytest

from vidcache.models.textmetrics import (
    caption_metrics,
    cider_d,
    corpus_bleu,
    modified_precision,
    ngrams,
    tokenize,
)


def test_tokenize_lowercases_and_drops_punctuation_like_textvectorization():
    assert tokenize("The cat, it's ON the mat!") == ["the", "cat", "its", "on", "the", "mat"]
    assert tokenize("  ") == []


def test_modified_precision_examples_of_the_bleu_paper():
    # Papineni et al. 2002, section 2.1: "the" x7 against two references is 2/7.
    candidate = tokenize("the the the the the the the")
    references = [tokenize("The cat is on the mat."), tokenize("There is a cat on the mat.")]
    assert modified_precision(candidate, references, 1) == (2, 7)
    # Example 1 of the paper: unigram 17/18, bigram 10/17 for Candidate 1.
    candidate = tokenize(
        "It is a guide to action which ensures that the military always obeys the commands "
        "of the party."
    )
    references = [
        tokenize(
            "It is a guide to action that ensures that the military will forever heed Party "
            "commands."
        ),
        tokenize(
            "It is the guiding principle which guarantees the military forces always being "
            "under the command of the Party."
        ),
        tokenize(
            "It is the practical guide for the army always to heed the directions of the party."
        ),
    ]
    assert modified_precision(candidate, references, 1) == (17, 18)
    assert modified_precision(candidate, references, 2) == (10, 17)


def test_bleu_worked_example():
    # Candidate "the cat the cat on the mat" (7 words) against
    #   "the cat is on the mat" (6) and "there is a cat on the mat" (7):
    # p1 = 5/7 (the: 3 clipped to 2, cat: 2 clipped to 1, on, mat)
    # p2 = 4/6 (the cat: 2 clipped to 1, cat on, on the, the mat; "cat the" misses)
    # p3 = 2/5 (cat on the, on the mat)
    # p4 = 1/4 (cat on the mat)
    # closest reference length 7 = candidate length: no brevity penalty.
    candidate = tokenize("the cat the cat on the mat")
    references = [tokenize("the cat is on the mat"), tokenize("there is a cat on the mat")]
    bleu = corpus_bleu([candidate], [references])
    expected = [
        5 / 7,
        (5 / 7 * 4 / 6) ** (1 / 2),
        (5 / 7 * 4 / 6 * 2 / 5) ** (1 / 3),
        (5 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** (1 / 4),
    ]
    assert bleu == pytest.approx(expected)
    assert bleu[3] == pytest.approx((1 / 21) ** 0.25)  # 0.4671


def test_bleu_brevity_penalty_perfect_match_and_zero_precision():
    reference = tokenize("the cat is on the mat")
    # Two words, both n-gram precisions 1; BP = exp(1 - 6/2) = e^-2.
    assert corpus_bleu([["the", "cat"]], [[reference]], max_n=2) == pytest.approx(
        [math.exp(-2), math.exp(-2)]
    )
    assert corpus_bleu([reference], [[reference]]) == pytest.approx([1.0] * 4)
    # No 4-gram matches: BLEU-4 is only the MS-COCO epsilon's (1e-15 / 2)^(1/4), no smoothing.
    scores = corpus_bleu([tokenize("the cat on the mat")], [[reference]])
    assert scores[0] == pytest.approx(1.0 * math.exp(1 - 6 / 5)) and scores[3] < 1e-3
    # The closest reference length wins, the shorter one on a tie (lengths 4 and 6 for 5).
    short, long_ = ["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]
    assert corpus_bleu([["a", "b", "c", "d", "x"]], [[long_, short]], max_n=1) == pytest.approx(
        [4 / 5]
    )


def test_bleu_is_corpus_level_not_a_mean_of_sentences():
    refs = [[tokenize("a b c d")], [tokenize("e f g h")]]
    hyps = [tokenize("a b c d"), tokenize("e f x y")]
    # Corpus: p1 = 6/8, p2 = 4/6 (ab bc cd ef of ab bc cd ef fx xy), no brevity penalty.
    assert corpus_bleu(hyps, refs, max_n=2) == pytest.approx([6 / 8, (6 / 8 * 4 / 6) ** 0.5])


def test_cider_d_worked_example():
    # Two videos, one reference each: A "a cat sits", B "a dog runs".
    # IDF = log(2) - log(df): "a" is in both (idf 0), every other n-gram in one (idf log 2).
    # A's candidate equals its reference: cosine 1 for n = 1, 2, 3; no 4-grams (0);
    #   score = 10 * (1 + 1 + 1 + 0) / 4 = 7.5.
    # B's candidate "a dog": n=1 {a: 0, dog: l} vs {a: 0, dog: l, runs: l} -> 1/sqrt(2);
    #   n=2 {a dog: l} vs {a dog: l, dog runs: l} -> 1/sqrt(2); n=3, 4: 0;
    #   length penalty exp(-(2 - 3)^2 / (2 * 6^2)) = exp(-1/72);
    #   score = 10 * (2 / sqrt(2)) / 4 * exp(-1/72) = 3.4868.
    candidates = [tokenize("a cat sits"), tokenize("a dog")]
    references = [[tokenize("a cat sits")], [tokenize("a dog runs")]]
    corpus, per_video = cider_d(candidates, references)
    b = 10 * (2 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert per_video == pytest.approx([7.5, b])
    assert b == pytest.approx(3.4868, abs=1e-4)
    assert corpus == pytest.approx((7.5 + b) / 2)


def test_cider_d_clips_repeated_words_and_averages_over_references():
    # Two videos so that "cat"/"dog" have idf log 2; "the" is everywhere (idf 0).
    references = [[tokenize("the cat"), tokenize("a cat")], [tokenize("the dog")]]
    repeated = cider_d([tokenize("cat cat"), tokenize("the dog")], references)[1][0]
    single = cider_d([tokenize("cat"), tokenize("the dog")], references)[1][0]
    # Without clipping, "cat cat" would reach the same cosine as "cat"; with CIDEr-D's
    # min(candidate, reference) weight it scores half of the single word's cosine.
    assert repeated < single
    # Against each reference alone: "cat" vs "the cat" (n=1 cosine 1, n=2 0) and vs "a cat"
    # ("a" has idf log 2 here: cosine 1/sqrt 2); length penalty exp(-1/72) both times.
    penalty = math.exp(-1 / 72)
    assert single == pytest.approx(10 * ((1 + 1 / math.sqrt(2)) / 4 * penalty) / 2)


def test_caption_metrics_and_input_checks():
    metrics = caption_metrics(["A cat sits."], [["a cat sits", "the cat is sitting"]])
    assert metrics["bleu1"] == 1.0 and metrics["videos"] == 1
    assert set(metrics) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider_d", "videos"}
    with pytest.raises(ValueError, match="reference"):
        corpus_bleu([["a"]], [[]])
    with pytest.raises(ValueError, match="2 candidates"):
        cider_d([["a"], ["b"]], [[["a"]]])
    assert ngrams(["a", "b", "a", "b"], 2) == {("a", "b"): 2, ("b", "a"): 1}


# Worked examples scored by both implementations on the same tokens.
CASES = [
    (["a man is playing a guitar", "a dog sleeps on a sofa", "a woman is cooking"],
     [["a man is playing a guitar", "a man plays the guitar", "someone plays guitar"],
      ["a cat sleeps on the sofa", "the cat is sleeping"],
      ["a woman is cooking in a kitchen", "a lady cooks food", "someone is cooking"]]),
    (["the cat", "a red square grows", "x"],
     [["the cat sat on the mat"], ["a red square grows", "a red square gets bigger"],
      ["y z", "x y z w"]]),
]  # fmt: skip


@pytest.mark.parametrize("candidates, references", CASES)
def test_bleu_and_cider_d_equal_the_coco_caption_code_on_the_same_tokens(
    candidates, references, capsys
):
    bleu_module = pytest.importorskip("pycocoevalcap.bleu.bleu")
    from pycocoevalcap.cider.cider import Cider

    gts = {str(i): refs for i, refs in enumerate(references)}
    res = {str(i): [c] for i, c in enumerate(candidates)}
    theirs_bleu, _ = bleu_module.Bleu(4).compute_score(gts, res)
    theirs_cider, theirs_each = Cider().compute_score(gts, res)
    hyps = [c.split() for c in candidates]
    refs = [[r.split() for r in rs] for rs in references]
    assert corpus_bleu(hyps, refs) == pytest.approx(theirs_bleu, rel=1e-12, abs=1e-15)
    ours, each = cider_d(hyps, refs)
    assert ours == pytest.approx(theirs_cider, rel=1e-12)
    assert each == pytest.approx(list(theirs_each), rel=1e-12)


@pytest.mark.slow
def test_the_standard_scorer_tokenises_with_ptb_and_adds_meteor_and_rouge():
    pytest.importorskip("pycocoevalcap")
    from vidcache.models.cocoscore import coco_scores

    candidates, references = CASES[0]
    scores = coco_scores(
        [c.capitalize() + "." for c in candidates],  # PTB lowercases and drops punctuation
        [[r.upper() + "!" for r in refs] for refs in references],
    )
    plain = coco_scores(candidates, references)
    assert scores == plain
    assert set(scores) >= {"bleu4", "meteor", "rouge_l", "cider_d"}
    assert 0 < scores["meteor"] < 1 and 0 < scores["rouge_l"] < 1
    hyps = [c.split() for c in candidates]
    refs = [[r.split() for r in rs] for rs in references]
    assert scores["cider_d"] == pytest.approx(cider_d(hyps, refs)[0], abs=1e-6)
