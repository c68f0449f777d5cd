"""The speech benchmark's output classes: sentencepiece pieces, then the transducer's blank.

MLPerf's RNN-T reference (recalled, not readable here) tokenises the normalised LibriSpeech
transcripts with a sentencepiece unigram model of 1,023 pieces trained on the training
transcripts, and adds the transducer's blank as the last class: 1,024 classes, blank 1,023.
Here every piece id 0..N-1 is a real output (unk 0; no bos, eos or pad, which a transducer
never emits), blank is N, and the network has N + 1 classes (RNNTConfig.vocab_size).

The vocabulary is trained with sentencepiece's hard size limit: the network's output layer is
sized from the config, so a vocabulary must have exactly the pieces asked for. A corpus too
small for that many pieces, or a size below the corpus's distinct characters + unk (the
number words of the tiny corpus need 21 pieces at least), is a one-line error naming the
bound sentencepiece reports.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import string
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from common.errors import UserError
from input_pipelines.subwords import sample_texts, write_atomically
from input_pipelines.tfds_common import one_line

UNK = 0
REFERENCE_PIECES = 1023  # + blank = the reference's 1,024 classes
# sentencepiece's trained model depends on its thread count: fixed, so every machine builds
# the same vocabulary from the same transcripts (as input_pipelines/subwords.py does).
# The only sampling is sample_texts' (fixed seed): input_sentence_size=0 makes sentencepiece
# read every sentence given, so its own random generator plays no part.
_TRAINER_THREADS = 16

# Punctuation separates words ("well-known" -> "well known"); what is then neither a-z, an
# apostrophe nor a space (digits, accented letters) is dropped. LibriSpeech's transcripts hold
# only A-Z, apostrophes and spaces, so for them this is lower-casing.
_PUNCTUATION_TO_SPACE = str.maketrans(
    {c: " " for c in string.punctuation.replace("'", "") + string.whitespace})
_NOT_KEPT = re.compile(r"[^a-z' ]")


def normalize(text: str) -> str:
    """The transcript as the model learns it and as WER compares it: lower case, a-z,
    apostrophes, single spaces between words."""
    text = _NOT_KEPT.sub("", text.lower().translate(_PUNCTUATION_TO_SPACE))
    return " ".join(text.split())


class SpeechVocab:
    """Sentencepiece pieces 0..size-1 (unk 0) and the transducer's blank = size."""

    def __init__(self, model: bytes, path: str):
        self.path = path
        self.fingerprint = hashlib.sha256(model).hexdigest()[:16]  # cache key, not the path
        self._sp = spm.SentencePieceProcessor(model_proto=model)
        ids = (self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id())
        if ids != (UNK, -1, -1, -1):
            raise UserError(
                f"speech vocabulary {path} has unk/bos/eos/pad ids {ids}, not ({UNK}, -1, -1, "
                "-1); leave --config.vocab_path empty to build a matching one")

    @property
    def size(self) -> int:
        """Sentencepiece pieces: the network's classes less blank."""
        return self._sp.get_piece_size()

    @property
    def blank(self) -> int:
        return self.size

    @property
    def num_classes(self) -> int:
        return self.size + 1

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Piece ids of each text, normalised first (no blank, no end marker)."""
        return self._sp.encode([normalize(t) for t in texts], out_type=int)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of a row of ids; blank and negative ids (padding) are skipped, so a padded
        row of decoded tokens decodes. An unk piece reads as sentencepiece's ' ⁇ '."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        return self._sp.decode(ids[(ids >= 0) & (ids < self.size)].tolist())

    def decode_batch(self, rows: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(row) for row in rows]


def build(texts: Iterable[str], vocab_size: int, path: str,
          max_sentences: int = 1_000_000) -> SpeechVocab:
    """Trains a unigram model of vocab_size pieces (blank comes on top: vocab_size + 1
    classes) on the normalised texts (a fixed-seed sample of max_sentences of them) and
    writes it atomically to `path`. The same texts give the same model bytes."""
    sample = [t for t in (normalize(t) for t in sample_texts(texts, max_sentences)) if t]
    if not sample:
        raise UserError(f"no transcript to build the speech vocabulary {path} from; check "
                        "the training data")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample), model_writer=model, vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, input_sentence_size=0,
            unk_id=UNK, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=True,
            num_threads=_TRAINER_THREADS, minloglevel=2)
    except RuntimeError as e:
        raise UserError(
            f"cannot build a {vocab_size}-piece speech vocabulary from {len(sample)} "
            f"transcripts ({one_line(e)}); change --config.vocab_size (pieces + 1 for blank)"
        ) from e
    write_atomically(path, model.getvalue())
    return SpeechVocab(model.getvalue(), path)


def load(path: str) -> SpeechVocab:
    """The speech vocabulary in the sentencepiece .model file `path`, or UserError."""
    fix = ("pass --config.vocab_path=<a .model file> or leave it empty to build one from the "
           "training transcripts")
    if not path or not os.path.isfile(path):
        raise UserError(f"speech vocabulary file {path} does not exist; {fix}")
    with open(path, "rb") as f:
        model = f.read()
    if not model:  # sentencepiece accepts empty bytes as a model of no pieces
        raise UserError(f"speech vocabulary file {path} is empty; {fix}")
    try:
        return SpeechVocab(model, path)
    except RuntimeError as e:
        raise UserError(
            f"speech vocabulary file {path} is not a sentencepiece model ({one_line(e)}); {fix}"
        ) from e
