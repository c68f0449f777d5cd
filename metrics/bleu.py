"""Corpus BLEU as MLPerf's translation benchmarks score it, computed by sacrebleu.

MLPerf's reference scores uncased BLEU with the mteval-v14 "international" tokenisation;
sacrebleu's `intl` tokeniser implements exactly that, so the score is sacrebleu's and the
settings are pinned here, in one place.
"""

from collections.abc import Sequence

import numpy as np
import sacrebleu

EOS_ID = 1


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Uncased corpus BLEU in [0, 1] (sacrebleu reports 0..100) of detokenised text."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return 0.0
    score = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], lowercase=True,
                                  tokenize="intl")
    return score.score / 100.0


def ids_as_words(rows: np.ndarray) -> list[str]:
    """Token-id rows as space-separated "words", cut at EOS: BLEU for data without text
    (synthetic batches), where only the ids exist."""
    texts = []
    for row in np.asarray(rows):
        ids = []
        for token in row.tolist():
            if token == EOS_ID:
                break
            if token:
                ids.append(str(token))
        texts.append(" ".join(ids))
    return texts
