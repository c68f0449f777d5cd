"""The tiny BERT preset's built-in pretraining data: a generated English "encyclopedia".

Documents are biographies and city articles about a small fixed world. Every city has a
country, a river, a population, a founding year and a festival; every person has a birth
date and city, a subject, a university and a death, and later sentences repeat those facts
("... moved to porto to study law at the university of porto ..."). So a masked token can
often be recovered from context (a name or city said earlier, he/his agreeing with she/her,
a profession matching the subject) or from world knowledge (porto lies in portugal), and a
random second segment is usually about someone else: both pretraining tasks are learnable
by a small model in minutes. Numbers and years are spelled out by num2words; text is lower
case, as for the reference's uncased BERT.

Vocabulary: a 1,024-piece sentencepiece BPE model trained on the training documents. Its
first pieces are fixed: [PAD] 0, [UNK] 1, then the control symbols [CLS] 2, [SEP] 3,
[MASK] 4, which no text encodes to; every other id is an ordinary piece. BPE, not unigram:
the corpus has only ~700 word forms, on which the unigram trainer stops near 380 pieces
and splits even common words ("▁r iver"), while BPE keeps every word whole (~330 pieces in
use, the rest partial merges), so a masked token is a word, as mostly in the reference.

Examples follow the reference's create_pretraining_data.py: segment A is one or more
sentences of a document, B either the sentences that follow (next_sentence_labels 0) or a
stretch of another document (label 1), each half the time; [CLS] A [SEP] B [SEP] is cut to
seq_len by trimming the longer segment at a random end; 15% of the tokens (capped at
max_predictions, never [CLS]/[SEP]) are predicted, of which 80% become [MASK], 10% a random
ordinary piece and 10% stay. All randomness comes from random.Random.random(), whose
sequence Python guarantees across versions, so every machine writes the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from common.errors import UserError
from input_pipelines import bert_records, built_once
from input_pipelines import tiny_wiki_text as text

# sentencepiece and num2words are imported where they are used: the tiny preset's config
# reads TINY, and a --data=synthetic run must not need them (accelerator hosts lack them).
if TYPE_CHECKING:
    import sentencepiece as spm

MANIFEST, VOCAB, EVAL_FILE, TRAIN_DIR = built_once.MANIFEST, "vocab.model", "eval.tfrecord", "train"
# Bumped whenever the generator changes what it writes, so cached copies are rebuilt.
GENERATOR_VERSION = 1
TINY = dict(seq_len=64, max_predictions=10, vocab_size=1024, train_examples=32_000,
            eval_examples=2_000, train_shards=4, seed=0)
SPECIAL_PIECES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                  "mask": "[MASK]"}
MASKED_LM_PROB = 0.15
SHORT_SEQ_PROB = 0.1  # as the reference: some examples are shorter, so padding is exercised
# Sentences the vocabulary is trained on: the templates repeat, so more only cost time.
_VOCAB_SENTENCES = 40_000
_TRAINER_THREADS = 16  # sentencepiece's result depends on it: fixed, as in subwords.py
def train_vocab(sentences: Sequence[str], vocab_size: int) -> bytes:
    """A serialized sentencepiece model with the fixed special ids of SPECIAL_PIECES."""
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
            model_type="bpe", character_coverage=1.0, input_sentence_size=0,
            pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece=SPECIAL_PIECES["pad"],
            unk_piece=SPECIAL_PIECES["unk"],
            control_symbols=[SPECIAL_PIECES[k] for k in ("cls", "sep", "mask")],
            num_threads=_TRAINER_THREADS, minloglevel=2)
    except RuntimeError as e:
        raise UserError(f"cannot build a {vocab_size}-piece vocabulary from {len(sentences)} "
                        f"generated sentences ({' '.join(str(e).split())[:200]}); choose a "
                        "smaller vocab_size") from e
    return model.getvalue()


def _special_ids_of(sp: spm.SentencePieceProcessor) -> dict[str, int]:
    return {key: int(sp.piece_to_id(piece)) for key, piece in SPECIAL_PIECES.items()}


def special_ids(manifest: dict) -> dict[str, int]:
    """{"pad", "unk", "cls", "sep", "mask"} -> token id, from a prepare()d manifest."""
    try:
        return {key: int(manifest["special_ids"][key]) for key in SPECIAL_PIECES}
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"the tiny BERT manifest lacks special token ids ({e}); delete its "
                        "directory and prepare it again") from e


# Pretraining examples.


def _segment_pairs(docs: list[list[list[int]]], index: int, max_tokens: int,
                   rng: random.Random) -> list[tuple[list[int], list[int], int]]:
    """(A, B, next_sentence_label) pairs of document `index`, at most max_tokens together."""
    doc, pairs = docs[index], []
    # Like the reference, a tenth of the examples aim shorter, so that padding occurs too.
    target = max_tokens if rng.random() >= SHORT_SEQ_PROB else text.between(rng, 2, max_tokens)
    chunk, length, label, i = [], 0, None, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        at_end = i == len(doc) - 1
        if at_end or length >= target:
            if label is None:
                label = int(rng.random() < 0.5)
            if label == 0 and len(chunk) < 2:
                # One sentence has no true continuation inside the chunk. The reference makes
                # B random then, which tips the labels toward 1, since documents often end
                # on a lone sentence. Instead the chunk grows, keeping its label, or at the
                # document's end takes the sentence before it as A once more.
                if not at_end:
                    i += 1
                    continue
                if i > 0:
                    chunk.insert(0, doc[i - 1])
                else:
                    label = 1
            a_end = text.between(rng, 1, len(chunk) - 1) if len(chunk) > 1 else 1
            a = [token for sentence in chunk[:a_end] for token in sentence]
            if label:
                other = index
                for _ in range(10):  # another document, unless there is only this one
                    other = int(rng.random() * len(docs))
                    if other != index:
                        break
                b, source = [], docs[other]
                for sentence in source[int(rng.random() * len(source)):]:
                    b.extend(sentence)
                    if len(b) >= max(1, target - len(a)):
                        break
                i -= len(chunk) - a_end  # A's unused sentences start the next chunk
            else:
                b = [token for sentence in chunk[a_end:] for token in sentence]
            while len(a) + len(b) > max_tokens:  # trim the longer one at a random end
                longer = a if len(a) > len(b) else b
                longer.pop(0 if rng.random() < 0.5 else -1)
            pairs.append((a, b, label))
            chunk, length, label = [], 0, None
        i += 1
    return pairs


def _example(a: list[int], b: list[int], label: int, *, seq_len: int, max_predictions: int,
             vocab_size: int, special: dict[str, int], rng: random.Random,
             keep_originals: bool) -> dict[str, np.ndarray]:
    tokens = [special["cls"], *a, special["sep"], *b, special["sep"]]
    candidates = [i for i, t in enumerate(tokens) if t not in (special["cls"], special["sep"])]
    text.shuffle(rng, candidates)
    positions = sorted(candidates[:min(max_predictions,
                                       max(1, round(len(tokens) * MASKED_LM_PROB)))])
    inputs = list(tokens)
    # Random replacements are ordinary pieces only: the reference may draw [CLS] or [PAD]
    # from its vocabulary file, which teaches nothing.
    first_ordinary = max(special.values()) + 1
    for position in positions:
        draw = rng.random()
        if draw < 0.8:
            inputs[position] = special["mask"]
        elif draw >= 0.9:
            inputs[position] = text.between(rng, first_ordinary, vocab_size - 1)

    def padded(values, length, dtype=np.int32):
        out = np.zeros(length, dtype)
        out[:len(values)] = values
        return out

    example = dict(
        input_ids=padded(inputs, seq_len), input_mask=padded([1] * len(tokens), seq_len),
        segment_ids=padded([0] * (len(a) + 2) + [1] * (len(b) + 1), seq_len),
        masked_lm_positions=padded(positions, max_predictions),
        masked_lm_ids=padded([tokens[p] for p in positions], max_predictions),
        masked_lm_weights=padded([1.0] * len(positions), max_predictions, np.float32),
        next_sentence_labels=np.array([label], np.int32))
    if keep_originals:  # for tests: the tokens before masking
        example["original_ids"] = padded(tokens, seq_len)
    return example


def create_examples(docs: list[list[list[int]]], count: int, *, seq_len: int,
                    max_predictions: int, vocab_size: int, special: dict[str, int], seed: int,
                    keep_originals: bool = False) -> list[dict[str, np.ndarray]]:
    """`count` masked pretraining examples from token-id documents (lists of sentences),
    shuffled; more passes over the documents (new segments, new masks) if one is too few.
    keep_originals adds "original_ids", the unmasked tokens."""
    if seq_len < 8 or max_predictions < 1 or count < 1:
        raise UserError(f"tiny BERT data needs seq_len >= 8, max_predictions >= 1 and examples "
                        f">= 1, got {seq_len}, {max_predictions}, {count}")
    rng, pairs = random.Random(seed), []
    while len(pairs) < count:
        before = len(pairs)
        for index in range(len(docs)):
            pairs.extend(_segment_pairs(docs, index, seq_len - 3, rng))
        if len(pairs) == before:
            raise UserError(f"no pretraining examples from {len(docs)} documents; generate more")
    text.shuffle(rng, pairs)
    return [_example(a, b, label, seq_len=seq_len, max_predictions=max_predictions,
                     vocab_size=vocab_size, special=special, rng=rng,
                     keep_originals=keep_originals) for a, b, label in pairs[:count]]


def tokenized(docs: list[list[str]], sp: spm.SentencePieceProcessor) -> list[list[list[int]]]:
    flat = sp.encode([sentence for doc in docs for sentence in doc], out_type=int)
    out, at = [], 0
    for doc in docs:
        out.append(flat[at:at + len(doc)])
        at += len(doc)
    return out


# Writing and caching.


def write(out_dir: str, *, seq_len: int, max_predictions: int, vocab_size: int,
          train_examples: int, eval_examples: int, train_shards: int, seed: int) -> dict:
    """Writes vocab.model, train/part-0000k-of-0000n, eval.tfrecord and manifest.json into
    out_dir (created if needed); returns the manifest."""
    os.makedirs(os.path.join(out_dir, TRAIN_DIR), exist_ok=True)
    # About two examples come from a document, so one pass over these covers the count.
    train_docs = text.documents(train_examples // 2 + 1, seed, "train")
    eval_docs = text.documents(eval_examples // 2 + 1, seed, "eval")
    model = train_vocab([s for doc in train_docs for s in doc][:_VOCAB_SENTENCES], vocab_size)
    with open(os.path.join(out_dir, VOCAB), "wb") as f:
        f.write(model)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    special = _special_ids_of(sp)
    sizes = dict(seq_len=seq_len, max_predictions=max_predictions, vocab_size=vocab_size,
                 special=special)
    train = create_examples(tokenized(train_docs, sp), train_examples,
                            seed=seed * 10 + text.STREAMS["train_examples"], **sizes)
    evals = create_examples(tokenized(eval_docs, sp), eval_examples,
                            seed=seed * 10 + text.STREAMS["eval_examples"], **sizes)
    train_files = []
    for k in range(train_shards):
        name = f"part-{k:05d}-of-{train_shards:05d}"
        bert_records.write_examples(
            os.path.join(out_dir, TRAIN_DIR, name),
            train[k * train_examples // train_shards:(k + 1) * train_examples // train_shards])
        train_files.append(f"{TRAIN_DIR}/{name}")
    bert_records.write_examples(os.path.join(out_dir, EVAL_FILE), evals)
    manifest = dict(
        generator_version=GENERATOR_VERSION, seq_len=seq_len, max_predictions=max_predictions,
        vocab_size=vocab_size, train_examples=train_examples, eval_examples=eval_examples,
        train_shards=train_shards, seed=seed, special_ids=special, vocab_file=VOCAB,
        train_files=train_files, eval_file=EVAL_FILE,
        documents=dict(train=len(train_docs), eval=len(eval_docs)),
        next_sentence_random=sum(int(e["next_sentence_labels"][0]) for e in train) / len(train),
    )
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _matches(manifest: dict | None, params: dict) -> bool:
    return (manifest is not None and manifest.get("generator_version") == GENERATOR_VERSION
            and all(manifest.get(key) == value for key, value in params.items()))


def prepare(cache_root: str) -> tuple[str, dict]:
    """The tiny BERT data under cache_root/bert_tiny/, written once (atomically, see
    input_pipelines.built_once); returns (dir, manifest)."""
    return built_once.prepare(cache_root, "bert_tiny", "the built-in tiny BERT data",
                              lambda manifest: _matches(manifest, TINY),
                              lambda staging: write(staging, **TINY))
