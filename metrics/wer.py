"""Word error rate as MLPerf's RNN-T benchmark scores it.

The reference sums word-level edit distances over the whole corpus and divides by the summed
number of reference words (a corpus rate, not a mean of per-utterance rates). Words are the
whitespace-separated pieces of each transcript. The edit distance is rapidfuzz's Levenshtein,
which accepts sequences of hashables, so word lists go in directly: the same maintained C++
implementation that jiwer (the cross-check in the tests) uses underneath.
"""

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from common.errors import UserError


def word_errors(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[int, int]:
    """(summed word edit distance, summed reference words): the sums an eval adds up over
    batches and hosts before dividing once."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    errors = 0
    words = 0
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        reference_words = reference.split()
        errors += Levenshtein.distance(hypothesis.split(), reference_words)
        words += len(reference_words)
    return errors, words


def wer_from_sums(errors: int, words: int) -> float:
    """The corpus WER from word_errors' sums; a reference corpus without words has none."""
    if words <= 0:
        raise UserError("WER is undefined: the reference transcripts contain no words; "
                        "check that the eval split's transcripts are not empty")
    return errors / words


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus WER: summed word edit distance / summed reference words (can exceed 1)."""
    return wer_from_sums(*word_errors(hypotheses, references))
