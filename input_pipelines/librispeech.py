"""LibriSpeech as people have it on disk, read on the host with soundfile and NumPy.

Two layouts:
  * OpenSLR (SLR12) as extracted: <root>/LibriSpeech/<split>/<speaker>/<chapter>/ holding
    <speaker>-<chapter>-<n>.flac and one <speaker>-<chapter>.trans.txt with a line
    "<utterance-id> <TRANSCRIPT>" per file.
  * The reference's preprocessed wav files listed by its JSON manifests (see
    utterances_manifest for the shape assumed).

Each process lists the utterances, takes its own share with shard(), and groups that share into
batches of fixed padded shapes by duration (length buckets), so the compiled step sees only a few
shapes. Text stays text here; tokenisation is the workload's business.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from common.errors import UserError

SAMPLE_RATE = 16000
TRAIN_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500")
EVAL_SPLITS = ("dev-clean",)
# The reference drops training utterances longer than this; eval keeps every utterance.
MAX_TRAIN_SECONDS = 16.7
MAX_TRAIN_SAMPLES = int(MAX_TRAIN_SECONDS * SAMPLE_RATE)
# Padded lengths, in samples, of the training buckets; the last one holds the longest kept.
DEFAULT_BUCKET_BOUNDS = tuple(s * SAMPLE_RATE for s in (4, 8, 12)) + (MAX_TRAIN_SAMPLES,)


@dataclasses.dataclass(frozen=True)
class Utterance:
    id: str
    audio_path: str
    transcript: str
    # Known from a manifest; None from the OpenSLR listing until num_samples() reads the header.
    num_samples: int | None = None


@dataclasses.dataclass
class Batch:
    """One fixed-shape batch: audio [batch, bound] float32, zero past each true length."""

    audio: np.ndarray
    audio_lengths: np.ndarray  # [batch] int32, true samples per row (0 on padding rows)
    transcripts: list[str]
    ids: list[str]
    valid: np.ndarray  # [batch] bool; False only on the rows that fill an eval batch


def _missing_split(root: str, split: str) -> UserError:
    return UserError(
        f"LibriSpeech/{split} not found under {root}; download {split}.tar.gz from OpenSLR SLR12 "
        f"(https://www.openslr.org/12) and extract it there")


def _split_dir(root: str, split: str) -> str:
    # Accept both ROOT (holding LibriSpeech/) and ROOT being LibriSpeech/ itself.
    for candidate in (os.path.join(root, "LibriSpeech", split), os.path.join(root, split)):
        if os.path.isdir(candidate):
            return candidate
    raise _missing_split(root, split)


def _read_transcripts(path: str) -> dict[str, str]:
    lines = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text:
                raise UserError(f"{path}:{number} has no transcript after the utterance id; each "
                                "line must read '<utterance-id> <TRANSCRIPT>'")
            lines[utt_id] = text
    return lines


def utterances_openslr(root: str, splits: Sequence[str]) -> list[Utterance]:
    """Every utterance of `splits` in the OpenSLR layout, sorted by id within each split."""
    utterances = []
    for split in splits:
        found = []
        for chapter_dir, _, files in sorted(os.walk(_split_dir(root, split))):
            audio = {f[:-len(".flac")] for f in files if f.endswith(".flac")}
            transcripts: dict[str, str] = {}
            for name in sorted(f for f in files if f.endswith(".trans.txt")):
                transcripts.update(_read_transcripts(os.path.join(chapter_dir, name)))
            for utt_id in sorted(audio - transcripts.keys()):
                raise UserError(
                    f"{os.path.join(chapter_dir, utt_id + '.flac')} has no transcript line; add "
                    f"'{utt_id} <TRANSCRIPT>' to the chapter's .trans.txt or remove the file")
            for utt_id in sorted(transcripts.keys() - audio):
                raise UserError(
                    f"{os.path.join(chapter_dir, utt_id + '.flac')} is missing but the chapter's "
                    ".trans.txt has a line for it; re-extract the split from its OpenSLR archive")
            found += [Utterance(u, os.path.join(chapter_dir, u + ".flac"), transcripts[u])
                      for u in sorted(audio)]
        if not found:
            raise UserError(f"{_split_dir(root, split)} holds no .flac files; re-extract "
                            f"{split}.tar.gz from OpenSLR SLR12 there")
        utterances += sorted(found, key=lambda u: u.id)
    return utterances


def utterances_manifest(path: str, data_dir: str | None = None) -> list[Utterance]:
    """The utterances of one of the reference's preprocessed JSON manifests.

    Assumed shape (what the reference's utils/convert_librispeech.py writes, read from its
    source): a JSON list of entries {"transcript": lower-cased str, "files": [{"fname",
    "sample_rate", "num_samples", "duration", "channels", "speed", ...}, ...],
    "original_duration", "original_num_samples"}, one file per speed-perturbed copy; the copy
    at speed 1 (else the first) is read. "fname" is "<split>/<speaker>/<chapter>/<id>.wav",
    relative to `data_dir`: by default the wav/ directory beside the manifest, where the
    reference's preprocess_librispeech.sh writes the files (BASE/librispeech-dev-clean-wav.json
    lists BASE/wav/dev-clean/...), else the manifest's own directory.
    """
    if data_dir is None:
        here = os.path.dirname(os.path.abspath(path))
        data_dir = os.path.join(here, "wav") if os.path.isdir(os.path.join(here, "wav")) else here
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise UserError(f"manifest {path} not found; pass the JSON the reference's "
                        "convert_librispeech.py wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"manifest {path} is not valid JSON ({e}); regenerate it") from None
    if not isinstance(entries, list):
        raise UserError(f"manifest {path} must be a JSON list of utterance entries")
    utterances = []
    for n, entry in enumerate(entries):
        where = f"manifest {path} entry {n}"
        for key in ("transcript", "files"):
            if not isinstance(entry, dict) or key not in entry:
                raise UserError(f"{where} lacks key '{key}'; regenerate the manifest")
        files = entry["files"]
        if not isinstance(files, list) or not files:
            raise UserError(f"{where} has no 'files'; regenerate the manifest")
        file = next((f for f in files if isinstance(f, dict) and f.get("speed", 1) == 1), files[0])
        if not isinstance(file, dict) or "fname" not in file:
            raise UserError(f"{where} has a file without key 'fname'; regenerate the manifest")
        audio_path = os.path.join(data_dir, file["fname"])
        if not os.path.isfile(audio_path):
            raise UserError(f"{audio_path} (from {where}) not found; run the reference's "
                            "preprocessing into that directory, or pass the right data_dir")
        num_samples = file.get("num_samples")
        utterances.append(Utterance(
            id=os.path.splitext(os.path.basename(file["fname"]))[0],
            audio_path=audio_path, transcript=str(entry["transcript"]).strip(),
            num_samples=int(num_samples) if num_samples is not None else None))
    return utterances


def read_audio(path: str) -> np.ndarray:
    """The file's samples as float32 mono at 16 kHz in [-1, 1)."""
    import soundfile  # here: a host without it (--data=synthetic) still imports this module

    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:  # soundfile's errors are RuntimeErrors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} cannot be decoded ({reason}); replace it with the file "
                        "from the original archive") from None
    if rate != SAMPLE_RATE:
        raise UserError(f"{path} is sampled at {rate} Hz, expected {SAMPLE_RATE}; resample it "
                        "to 16 kHz or use the original LibriSpeech file")
    if samples.shape[1] != 1:
        raise UserError(f"{path} has {samples.shape[1]} channels, expected mono; mix it down "
                        "or use the original LibriSpeech file")
    return samples[:, 0]


def num_samples(utterance: Utterance) -> int:
    """The utterance's length in samples, from the manifest or else the audio file's header."""
    if utterance.num_samples is not None:
        return utterance.num_samples
    import soundfile

    try:
        info = soundfile.info(utterance.audio_path)
    except (RuntimeError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{utterance.audio_path} cannot be decoded ({reason}); replace it with "
                        "the file from the original archive") from None
    return info.frames


def shard(utterances: Sequence[Utterance], process_index: int,
          process_count: int) -> list[Utterance]:
    """This process's share: disjoint across processes, all of them together cover each once.

    Sorted by id first, so every process computes the same split whatever order it listed in.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return sorted(utterances, key=lambda u: u.id)[process_index::process_count]


def bucket_for(length: int, bucket_bounds: Sequence[int]) -> int | None:
    """Index of the smallest bound >= length, or None when it fits none."""
    for i, bound in enumerate(bucket_bounds):
        if length <= bound:
            return i
    return None


def why_not_trained(utterance: Utterance, length: int, bounds: Sequence[int]) -> str | None:
    """Why training leaves an utterance out, `length` being what is bucketed: its audio is
    over MAX_TRAIN_SAMPLES (MLPerf's rule) or `length` is past the last of `bounds`; None if
    it trains."""
    if num_samples(utterance) > MAX_TRAIN_SAMPLES:
        return "over_max_duration"
    if length > max(bounds):
        return "past_last_bucket"
    return None


def plan_batches(utterances: Sequence[Utterance], batch_size: int, *, training: bool,
                 bucket_bounds: Sequence[int] = DEFAULT_BUCKET_BOUNDS,
                 seed: int | None = None,
                 length_of: Callable[[Utterance], int] = num_samples,
                 ) -> list[tuple[int, list[Utterance | None]]]:
    """(padded length, rows) per batch, without reading audio.

    length_of: what is bucketed, in samples; by default the audio's length. A caller whose
    padded label length follows the bucket passes the larger of the audio's length and the
    labels' length in samples, so that both fit the bucket.

    Training drops utterances over MAX_TRAIN_SAMPLES or the last bound, shuffles within each
    bucket and the batch order when `seed` is given, and drops each bucket's partial remainder.
    Eval keeps every utterance exactly once: the ones longer than the last bound share one more
    bucket padded to the longest of them rounded up to a whole second, and a bucket's last batch
    is filled with None rows (the `valid` mask of Batch).
    """
    bounds = sorted(bucket_bounds)
    by_bucket: dict[int, list[Utterance]] = {}
    overlong = []
    for utterance in utterances:
        length = length_of(utterance)
        if training and why_not_trained(utterance, length, bounds):
            continue
        index = bucket_for(length, bounds)
        if index is None:
            overlong.append((length, utterance))
        else:
            by_bucket.setdefault(bounds[index], []).append(utterance)
    if overlong:
        longest = max(length for length, _ in overlong)
        bound = -(-longest // SAMPLE_RATE) * SAMPLE_RATE
        by_bucket[bound] = [u for _, u in overlong]
    rng = np.random.default_rng(seed) if seed is not None else None
    plan: list[tuple[int, list[Utterance | None]]] = []
    for bound in sorted(by_bucket):
        members = list(by_bucket[bound])
        if rng is not None:
            members = [members[i] for i in rng.permutation(len(members))]
        for start in range(0, len(members), batch_size):
            rows: list[Utterance | None] = list(members[start:start + batch_size])
            if len(rows) < batch_size:
                if training:
                    break
                rows += [None] * (batch_size - len(rows))
            plan.append((bound, rows))
    if rng is not None:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


def batches(utterances: Sequence[Utterance], batch_size: int, *, training: bool,
            bucket_bounds: Sequence[int] = DEFAULT_BUCKET_BOUNDS,
            seed: int | None = None) -> Iterator[Batch]:
    """Batches of plan_batches with their audio read and zero-padded to the bucket bound."""
    for bound, rows in plan_batches(utterances, batch_size, training=training,
                                    bucket_bounds=bucket_bounds, seed=seed):
        audio = np.zeros((batch_size, bound), np.float32)
        lengths = np.zeros((batch_size,), np.int32)
        for i, utterance in enumerate(rows):
            if utterance is not None:
                samples = read_audio(utterance.audio_path)[:bound]
                audio[i, :len(samples)] = samples
                lengths[i] = len(samples)
        yield Batch(audio=audio, audio_lengths=lengths,
                    transcripts=[u.transcript if u else "" for u in rows],
                    ids=[u.id if u else "" for u in rows],
                    valid=np.array([u is not None for u in rows]))
