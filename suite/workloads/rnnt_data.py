"""The RNN-T workload's data: which utterances, their tokens, the buckets, the pipelines.

Listings, vocabularies and token ids are made once per process (data_info, the training
pipeline and every eval share them).
"""

import dataclasses
import functools
import hashlib
import os

import numpy as np

from common.errors import UserError
from input_pipelines import librispeech, speech_batches
from input_pipelines.librispeech import SAMPLE_RATE
from suite.workdir import cache_dir
from suite.workload import DataInfo, EvalSet


@dataclasses.dataclass(frozen=True)
class Transcripts:
    """finalize_eval's context: each eval utterance's normalised transcript, in eval order."""

    texts: tuple[str, ...]
    vocab: object


@dataclasses.dataclass(frozen=True)
class Corpus:
    root: str
    train: tuple[librispeech.Utterance, ...]
    eval: tuple[librispeech.Utterance, ...]
    source: str


def _seconds(values) -> tuple[int, ...]:
    return tuple(int(round(s * SAMPLE_RATE)) for s in values)


def _train_bounds(cfg) -> tuple[int, ...]:
    return _seconds(cfg.bucket_seconds)


def _eval_bounds(cfg) -> tuple[int, ...]:
    return _seconds(cfg.eval_bucket_seconds)


def settings(cfg, training: bool = True) -> speech_batches.Settings:
    """The training or the eval split's: its buckets, and whether its rows are augmented."""
    return speech_batches.Settings(
        bounds=_train_bounds(cfg) if training else _eval_bounds(cfg),
        tokens_per_second=cfg.tokens_per_second, augment=training and cfg.augment)


@functools.lru_cache(maxsize=4)
def _corpus(dataset: str, layout: str, data_dir: str | None, train_splits: tuple,
            eval_splits: tuple, train_manifests: tuple, eval_manifests: tuple) -> Corpus:
    if dataset == "spoken_numbers":
        from input_pipelines import spoken_numbers

        data_dir, _ = spoken_numbers.prepare(cache_dir())
    elif dataset != "librispeech":
        raise UserError(f"--config.dataset must be librispeech or spoken_numbers, got "
                        f"{dataset!r}")
    elif not data_dir:
        raise UserError("the rnnt workload needs --data_dir: the directory holding "
                        "LibriSpeech/ from OpenSLR SLR12 (or run --preset=tiny)")
    if layout == "manifest":
        def listed(names):
            return tuple(u for n in names
                         for u in librispeech.utterances_manifest(os.path.join(data_dir, n)))

        train, evaluation = listed(train_manifests), listed(eval_manifests)
        what = f"manifests {', '.join(train_manifests)} -> {', '.join(eval_manifests)}"
    else:
        train = tuple(librispeech.utterances_openslr(data_dir, train_splits))
        evaluation = tuple(librispeech.utterances_openslr(data_dir, eval_splits))
        what = f"{'+'.join(train_splits)} -> {'+'.join(eval_splits)}"
    return Corpus(data_dir, _with_lengths(train), _with_lengths(evaluation),
                  f"{dataset} {what} from {data_dir}")


def _with_lengths(utterances: tuple) -> tuple:
    """Each utterance with its length in samples, read once (the OpenSLR listing has none
    until a file's header is read, and every epoch's bucket plan needs them all)."""
    return tuple(dataclasses.replace(u, num_samples=librispeech.num_samples(u))
                 for u in utterances)


def _listing(cfg, data_dir: str | None) -> tuple:
    """_corpus's arguments: the few strings that name a corpus, and key its caches."""
    return (cfg.dataset, cfg.layout, data_dir or None, tuple(cfg.train_splits),
            tuple(cfg.eval_splits), tuple(cfg.train_manifests), tuple(cfg.eval_manifests))


def corpus(cfg, data_dir: str | None) -> Corpus:
    return _corpus(*_listing(cfg, data_dir))


@functools.lru_cache(maxsize=4)
def load_vocab(path: str):
    from input_pipelines import speech_tokens  # sentencepiece: real data only

    return speech_tokens.load(path)


def _vocab_path(cfg, data: Corpus) -> str:
    """The given vocabulary, or one built once from the training transcripts and cached."""
    if cfg.vocab_path:
        load_vocab(cfg.vocab_path)  # one line now, if it is unusable
        return cfg.vocab_path
    texts = [u.transcript for u in data.train]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    path = cache_dir("vocab", f"speech-{cfg.dataset}-{cfg.vocab_size}-{digest}.model")
    if not os.path.exists(path):
        print(f"Building a {cfg.vocab_size}-piece vocabulary from {len(texts)} training "
              f"transcripts (once; cached at {path}).", flush=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        from input_pipelines import speech_tokens

        speech_tokens.build(texts, cfg.vocab_size, path)
    return path


def tokens(cfg, data_dir: str | None, vocab_path: str, split: str) -> dict[str, np.ndarray]:
    """Token ids of each utterance of the corpus's 'train' or 'eval' split, encoded once per
    process for each vocabulary."""
    return _tokens(vocab_path, _listing(cfg, data_dir), split)


@functools.lru_cache(maxsize=8)
def _tokens(vocab_path: str, listing: tuple, split: str) -> dict[str, np.ndarray]:
    # Keyed by the listing's names, not its utterances: a key of all 281,241 training
    # utterances was hashed whole at every call (~50 ms) and kept them alive in the cache.
    utterances = getattr(_corpus(*listing), split)
    ids = load_vocab(vocab_path).encode([u.transcript for u in utterances])
    return {u.id: np.asarray(t, np.int32) for u, t in zip(utterances, ids, strict=True)}


def data_info(workload, cfg, data_dir: str | None) -> DataInfo:
    data = corpus(cfg, data_dir)
    vocab_path = _vocab_path(cfg, data)
    vocab = load_vocab(vocab_path)
    if vocab.size != cfg.vocab_size:
        raise UserError(f"vocabulary {vocab_path} has {vocab.size} pieces but "
                        f"--config.vocab_size={cfg.vocab_size}; pass the matching size")
    eval_settings = settings(cfg, training=False)
    longest = eval_settings.length_of(tokens(cfg, data_dir, vocab_path, "eval"))
    for u in data.eval:
        if librispeech.bucket_for(longest(u), eval_settings.bounds) is None:
            raise UserError(
                f"eval utterance {u.id} ({longest(u) / SAMPLE_RATE:.1f} s of audio or labels) "
                f"exceeds the last of --config.eval_bucket_seconds; raise it")
    train_tokens = tokens(cfg, data_dir, vocab_path, "train")
    steps, kept = speech_batches.steps_per_epoch(data.train, train_tokens, cfg.global_batch_size,
                                                 settings(cfg))
    if steps < 1:
        raise UserError(f"no length bucket of {data.source} fills one global batch of "
                        f"{cfg.global_batch_size}; lower --config.global_batch_size")
    return DataInfo(train_examples=kept, eval_examples=len(data.eval), source=data.source,
                    steps_per_epoch=steps, facts={
                        "vocab_path": vocab_path, "root": data.root,
                        # config.json says why an epoch trains on fewer utterances than listed
                        "train_left_out": speech_batches.left_out(data.train, train_tokens, kept,
                                                                  settings(cfg))})


def train_batches(cfg, data: DataInfo, *, local_batch_size: int, process_index: int,
                  process_count: int, seed: int, skip: int = 0):
    listing = corpus(cfg, data.data_dir)
    return speech_batches.train_batches(
        listing.train, tokens(cfg, data.data_dir, data.facts["vocab_path"], "train"),
        settings(cfg), local_batch=local_batch_size, process_index=process_index,
        process_count=process_count, seed=seed, read_ahead=cfg.read_ahead, skip=skip)


def eval_batches(cfg, data: DataInfo, *, local_batch_size: int, process_index: int,
                 process_count: int) -> EvalSet:
    listing = corpus(cfg, data.data_dir)
    vocab_path = data.facts["vocab_path"]
    batches = speech_batches.eval_batches(
        listing.eval, tokens(cfg, data.data_dir, vocab_path, "eval"),
        settings(cfg, training=False), local_batch=local_batch_size,
        process_index=process_index, process_count=process_count, read_ahead=cfg.read_ahead)
    from input_pipelines import speech_tokens

    texts = tuple(speech_tokens.normalize(u.transcript) for u in listing.eval)
    # Replayable: the loop keeps the set for the run, so dev-clean is featurised at the first
    # eval only.
    return EvalSet(batches, Transcripts(texts, load_vocab(vocab_path)), replayable=True)
