"""Subword vocabulary: a sentencepiece model shared by the source and target languages.

Tokens: PAD 0, EOS 1 (ends every sentence), UNK 2, no BOS (the decoder starts from PAD).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from common.errors import UserError
from input_pipelines.tfds_common import one_line

PAD, EOS, UNK = 0, 1, 2
# sentencepiece's trained model depends on its thread count: fixed, so every machine builds
# the same vocabulary from the same sentences.
_TRAINER_THREADS = 16


class Vocab:
    """A sentencepiece subword vocabulary with PAD 0, EOS 1, UNK 2 and no BOS."""

    def __init__(self, model: bytes, path: str):
        self.path = path
        self.fingerprint = hashlib.sha256(model).hexdigest()[:16]  # cache key, not the path
        self._sp = spm.SentencePieceProcessor(model_proto=model)
        ids = (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id(), self._sp.bos_id())
        if ids != (PAD, EOS, UNK, -1):
            raise UserError(
                f"vocabulary {path} has pad/eos/unk/bos ids {ids}, not ({PAD}, {EOS}, {UNK}, "
                "-1); leave --config.vocab_path empty to build a matching one"
            )

    @property
    def size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, EOS appended."""
        return self._sp.encode(list(texts), out_type=int, add_eos=True)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ids up to the first EOS; PAD dropped, ids beyond the vocabulary (a model's
        padded output layer) read as UNK."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        ends = np.flatnonzero(ids == EOS)
        ids = ids[: ends[0]] if len(ends) else ids
        ids = np.where((ids < 0) | (ids >= self.size), UNK, ids)
        return self._sp.decode(ids[ids != PAD].tolist())

    def decode_batch(self, ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(row) for row in ids]


def sample_texts(texts: Iterable[str], limit: int) -> list[str]:
    """Up to `limit` texts, a uniform sample when there are more (reservoir, fixed seed)."""
    rng, sample = random.Random(0), []
    for seen, text in enumerate(texts):
        if seen < limit:
            sample.append(text)
        elif (j := int(rng.random() * (seen + 1))) < limit:
            sample[j] = text
    return sample


def build_vocab(
    texts: Iterable[str], vocab_size: int, path: str, max_sentences: int = 1_000_000
) -> Vocab:
    """Trains a unigram sentencepiece model on (a fixed-seed sample of max_sentences of)
    texts and writes it atomically to `path`; the same texts give the same vocabulary."""
    sample = [t for t in sample_texts(texts, max_sentences) if t.strip()]
    if not sample:
        raise UserError(f"no text to build the vocabulary {path} from; check the training data")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample), model_writer=model, vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, input_sentence_size=0,
            pad_id=PAD, eos_id=EOS, unk_id=UNK, bos_id=-1, num_threads=_TRAINER_THREADS,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UserError(
            f"cannot build a {vocab_size}-piece vocabulary from {len(sample)} sentences "
            f"({one_line(e)}); pass a smaller --config.vocab_size"
        ) from e
    write_atomically(path, model.getvalue())
    return Vocab(model.getvalue(), path)


def write_atomically(path: str, data: bytes) -> None:
    """Writes data to path through a sibling file and a rename: readers never see half a
    file, even with several writers."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)


def load_vocab(path: str) -> Vocab:
    """The sentencepiece vocabulary in the .model file `path`, or UserError."""
    fix = "pass --config.vocab_path=<a .model file> or leave it empty to build one from the "
    fix += "training data"
    if not path or not os.path.isfile(path):
        raise UserError(f"vocabulary file {path} does not exist; {fix}")
    with open(path, "rb") as f:
        model = f.read()
    try:
        return Vocab(model, path)
    except RuntimeError as e:
        raise UserError(
            f"vocabulary file {path} is not a sentencepiece model ({one_line(e)}); {fix}"
        ) from e
