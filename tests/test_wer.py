"""Corpus word error rate, cross-checked against jiwer on the same strings."""

import jiwer
import numpy as np
import pytest

from common.errors import UserError
from metrics.wer import word_error_rate, word_errors


@pytest.mark.parametrize(
    "hypotheses, references, errors, words",
    [
        (["the cat sat"], ["the cat sat"], 0, 3),
        (["the cat sat on"], ["the cat sat"], 1, 3),  # one insertion
        (["the sat"], ["the cat sat"], 1, 3),  # one deletion
        (["the dog sat"], ["the cat sat"], 1, 3),  # one substitution
        (["a b x d e f"], ["a b c d"], 3, 4),  # substitution + two insertions
        (["", "one two"], ["three four five", "one two"], 3, 5),  # empty hypothesis
        (["extra words", "seven"], ["", "seven"], 2, 1),  # empty reference: WER above 1
        (["  nine   ten "], ["nine ten"], 0, 2),  # whitespace is not a word
    ],
)
def test_wer_counts_and_equals_jiwer(hypotheses, references, errors, words):
    assert word_errors(hypotheses, references) == (errors, words)
    assert word_error_rate(hypotheses, references) == pytest.approx(errors / words)
    assert word_error_rate(hypotheses, references) == pytest.approx(
        jiwer.wer(references, hypotheses), abs=1e-12)


def test_wer_is_a_corpus_rate_not_a_mean_of_utterance_rates():
    hypotheses = ["a", "b c d e f g h i j k"]
    references = ["x", "b c d e f g h i j k"]
    # Utterance rates 1.0 and 0.0 average to 0.5; the corpus rate is 1 error in 11 words.
    assert word_error_rate(hypotheses, references) == pytest.approx(1 / 11)
    assert word_error_rate(hypotheses, references) == pytest.approx(
        jiwer.wer(references, hypotheses))


def test_wer_on_a_random_corpus_equals_jiwer():
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(12)]

    def sentence(low):
        return " ".join(rng.choice(vocabulary, size=rng.integers(low, 15)))

    references = [sentence(1) for _ in range(200)]
    hypotheses = [sentence(0) for _ in range(200)]
    ours = word_error_rate(hypotheses, references)
    assert 0.3 < ours < 1.5  # random text: far from 0, so the comparison has teeth
    assert ours == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-12)


def test_wer_of_an_empty_reference_corpus_is_a_one_line_error():
    for references in ([], ["", "  "]):
        with pytest.raises(UserError, match="no words") as raised:
            word_error_rate([""] * len(references), references)
        assert "\n" not in str(raised.value)


def test_wer_needs_one_hypothesis_per_reference():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        word_error_rate(["a", "b"], ["a"])
