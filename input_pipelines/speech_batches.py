"""The RNN-T's model inputs: utterances -> fixed-shape batches of features and token labels.

Every process plans the same global batches (bucket and rows, input_pipelines.librispeech's
plan_batches over the whole utterance list with the same seed) and then reads and featurises
only its own rows of each. So all processes agree on every step's bucket shape, and a batch's
contents do not depend on how many processes read it: each row's random draws (dither, speed,
SpecAugment) are seeded by its epoch, batch and row, not by who reads it.

A bucket bounds the audio in samples; its padded shapes follow from that bound: feature frames
for the longest audio it holds after the largest speed-up stretch, and label tokens at
`tokens_per_second` (utterances are bucketed by the larger of their audio and label lengths, so
both fit).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from common.errors import UserError
from input_pipelines import librispeech, prefetch, speech_features
from input_pipelines.librispeech import SAMPLE_RATE, Utterance

MIN_SAMPLES = speech_features.N_FFT // 2 + 1  # what log_mel's reflected STFT needs


@dataclasses.dataclass(frozen=True)
class Shape:
    """A bucket's padded sizes."""

    samples: int  # audio bound
    frames: int  # stacked feature frames (model input length)
    labels: int  # tokens


@dataclasses.dataclass(frozen=True)
class Settings:
    """How one split's utterances become model inputs (the reference's values by default)."""

    bounds: tuple[int, ...]  # bucket bounds, in samples
    tokens_per_second: float
    speed_range: tuple[float, float] = speech_features.SPEED_RANGE
    augment: bool = True  # speed perturbation and SpecAugment: training's, where configured

    def shape(self, bound: int) -> Shape:
        stretch = max(self.speed_range) if self.augment else 1.0
        longest = int(np.ceil(bound * stretch))
        mel_frames = 1 + longest // speech_features.HOP_LENGTH
        frames = -(-mel_frames // speech_features.SUBSAMPLING)
        return Shape(bound, frames, max(1, int(bound * self.tokens_per_second // SAMPLE_RATE)))

    def length_of(self, tokens: Mapping[str, np.ndarray]):
        """What plan_batches buckets: the audio's or the labels' length, whichever is longer."""
        per_token = SAMPLE_RATE / self.tokens_per_second

        def length(utterance: Utterance) -> int:
            labels = int(np.ceil(len(tokens[utterance.id]) * per_token))
            return max(librispeech.num_samples(utterance), labels)

        return length


def plan(utterances: Sequence[Utterance], tokens: Mapping[str, np.ndarray], global_batch: int,
         settings: Settings, *, training: bool, seed: int | None = None):
    """The global plan: (bucket bound, rows) per global batch; see librispeech.plan_batches."""
    return librispeech.plan_batches(
        utterances, global_batch, training=training, bucket_bounds=settings.bounds, seed=seed,
        length_of=settings.length_of(tokens))


def features(utterance: Utterance, rng: np.random.Generator,
             settings: Settings) -> np.ndarray:
    """(frames, 240) float32 model inputs of one utterance (the reference's pipeline)."""
    audio = librispeech.read_audio(utterance.audio_path)
    if settings.augment:
        audio, _ = speech_features.speed_perturb(audio, rng, settings.speed_range)
    audio = speech_features.trim_silence(audio)
    if audio.size < MIN_SAMPLES:
        # librosa's trim keeps at least min(length, 512) samples, so only a file of a few
        # milliseconds gets here; the reference has no fallback for it either.
        done = "speed perturbation and trimming" if settings.augment else "trimming"
        raise UserError(
            f"{utterance.audio_path}: {audio.size} samples are left after {done} silence, "
            f"fewer than the {MIN_SAMPLES} of one feature frame; replace it with the file from "
            "the original archive or leave the utterance out")
    feats = speech_features.normalize_per_feature(speech_features.log_mel(audio, rng))
    if settings.augment:
        feats = speech_features.spec_augment(feats, rng)
    return speech_features.stack_frames(feats)


def make_batch(shape: Shape, rows: Sequence[Utterance | None], tokens: Mapping[str, np.ndarray],
               seeds: Sequence[Sequence[int]], settings: Settings, *, training: bool,
               indices: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """One process's rows as fixed-shape arrays; a None row (eval padding) stays zeros with
    mask 0. Eval batches also carry each row's index in the eval order (its reference)."""
    n, dim = len(rows), speech_features.N_MELS * speech_features.STACKING
    batch = {"feats": np.zeros((n, shape.frames, dim), np.float32),
             "feat_lens": np.zeros((n,), np.int32),
             "labels": np.zeros((n, shape.labels), np.int32),
             "label_lens": np.zeros((n,), np.int32)}
    if not training:
        batch["mask"] = np.zeros((n,), np.float32)
        batch["index"] = np.zeros((n,), np.int32)
    for i, (utterance, seed) in enumerate(zip(rows, seeds, strict=True)):
        if utterance is None:
            continue
        feats = features(utterance, np.random.default_rng(list(seed)), settings)
        labels = tokens[utterance.id]
        if len(feats) > shape.frames or len(labels) > shape.labels:
            raise ValueError(f"{utterance.id}: {len(feats)} frames / {len(labels)} tokens "
                             f"exceed its bucket's {shape}")
        batch["feats"][i, :len(feats)] = feats
        batch["feat_lens"][i] = len(feats)
        batch["labels"][i, :len(labels)] = labels
        batch["label_lens"][i] = len(labels)
        if not training:
            batch["mask"][i] = 1.0
            batch["index"][i] = indices[utterance.id]
    return batch


def _own_rows(local_batch: int, process_index: int) -> slice:
    return slice(process_index * local_batch, (process_index + 1) * local_batch)


def train_batches(utterances: Sequence[Utterance], tokens: Mapping[str, np.ndarray],
                  settings: Settings, *, local_batch: int, process_index: int,
                  process_count: int, seed: int, read_ahead: int = 2,
                  skip: int = 0) -> Iterator[dict]:
    """This process's share of every training batch, epoch after epoch (each reshuffled),
    made on a host thread up to `read_ahead` batches ahead of the device. The first `skip`
    batches (trained before a resume) are planned but never read nor featurised."""
    global_batch = local_batch * process_count

    def reads():
        epoch = 0
        while True:
            for b, (bound, rows) in enumerate(plan(utterances, tokens, global_batch, settings,
                                                   training=True, seed=seed * 100_003 + epoch)):
                if epoch == 0 and b < skip:
                    continue  # its seeds stay (epoch, b, row): the rest are unchanged
                own = _own_rows(local_batch, process_index)
                seeds = [(seed, epoch, b, r) for r in range(global_batch)][own]
                yield functools.partial(make_batch, settings.shape(bound), rows[own],
                                        tokens, seeds, settings, training=True)
            epoch += 1

    return prefetch.prefetched(reads, read_ahead, name="speech-train")


class EvalBatches:
    """The eval batches, made on the first whole pass over them and kept: each iter() is
    then one pass over the same arrays (read-only), without featurising again.

    Eval features draw only from seeds fixed by batch and row (the dither), so every pass
    would make the same arrays. dev-clean's features take about 0.6 GB before bucket
    padding, split between the processes (each keeps its own rows).
    """

    def __init__(self, reads, read_ahead: int):
        self._reads, self._read_ahead = reads, read_ahead
        self._kept: tuple[dict, ...] | None = None

    def __iter__(self) -> Iterator[dict]:
        return iter(self._kept) if self._kept is not None else self._first_pass()

    def _first_pass(self) -> Iterator[dict]:
        made = []
        for batch in prefetch.prefetched(self._reads, self._read_ahead, name="speech-eval"):
            for array in batch.values():
                array.setflags(write=False)  # a consumer writing in place would spoil later evals
            made.append(batch)
            yield batch
        self._kept = tuple(made)  # only a whole pass is kept


def eval_batches(utterances: Sequence[Utterance], tokens: Mapping[str, np.ndarray],
                 settings: Settings, *, local_batch: int, process_index: int,
                 process_count: int, read_ahead: int = 2) -> EvalBatches:
    """One pass over every eval utterance per iter(); `index` is its position in
    `utterances`. Featurised once (EvalBatches)."""
    if settings.augment:
        raise ValueError("eval batches are never augmented: pass the eval split's Settings")
    indices = {u.id: i for i, u in enumerate(utterances)}
    global_batch = local_batch * process_count

    def reads():
        for b, (bound, rows) in enumerate(plan(utterances, tokens, global_batch, settings,
                                               training=False)):
            own = _own_rows(local_batch, process_index)
            seeds = [(0, b, r) for r in range(global_batch)][own]
            yield functools.partial(make_batch, settings.shape(bound), rows[own], tokens,
                                    seeds, settings, training=False, indices=indices)

    return EvalBatches(reads, read_ahead)


def steps_per_epoch(utterances: Sequence[Utterance], tokens: Mapping[str, np.ndarray],
                    global_batch: int, settings: Settings) -> tuple[int, int]:
    """(full global batches of an epoch, utterances they hold): each bucket's remainder and
    the utterances too long to train on are left out, whatever the shuffle."""
    batches = plan(utterances, tokens, global_batch, settings, training=True, seed=0)
    return len(batches), len(batches) * global_batch


def left_out(utterances: Sequence[Utterance], tokens: Mapping[str, np.ndarray], kept: int,
             settings: Settings) -> dict[str, int]:
    """Why an epoch trains on `kept` of the training utterances: those over MLPerf's
    longest (the reference's rule), those whose audio or labels pass the last bucket, and
    each bucket's partial remainder (whole global batches only)."""
    length = settings.length_of(tokens)
    why = collections.Counter(librispeech.why_not_trained(u, length(u), settings.bounds)
                              for u in utterances)
    over, past = why["over_max_duration"], why["past_last_bucket"]
    return {"utterances": len(utterances), "over_max_duration": over, "past_last_bucket": past,
            "bucket_remainders": len(utterances) - over - past - kept}
