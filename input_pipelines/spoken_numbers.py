"""Built-in spoken numbers: tiny speech-recognition data that needs no download.

eSpeak NG (input_pipelines.espeak) reads digit strings ("THREE SEVEN ONE FOUR") and number
phrases ("ONE HUNDRED AND FOUR") in English voices; the audio is written as 16-bit mono 16 kHz
FLAC in LibriSpeech's OpenSLR layout (train-clean-100 and dev-clean), so the tiny speech preset
reads it through input_pipelines.librispeech exactly as it reads the real corpus.

Each utterance: a voice (accent + variant: the dev split's variants never occur in training),
a rate of 130-210 words a minute, base pitch and pitch range; 22,050 Hz resampled to 16 kHz
(soxr), scaled to a random peak level, padded with silence on both sides to 1-3.5 s, then
white noise at 10-30 dB SNR over the whole file (after padding: exact-zero stretches would make
a mel bin constant, which the per-feature normalisation of the features cannot take).

The library keeps global state, so the corpus is synthesised in a fresh subprocess (build())
in a fixed order, reseeding every utterance from np.random.default_rng([seed, split, index]):
the same arguments and espeakng-loader version give the same samples on every run. The
manifest records a sha256 over every utterance's id, transcript and samples in that order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import soundfile
import soxr
from num2words import num2words

from common.errors import UserError
from input_pipelines import built_once, espeak

MANIFEST = built_once.MANIFEST
# Bumped whenever the generator changes what it writes, so cached copies are rebuilt.
GENERATOR_VERSION = 1
SAMPLE_RATE = 16_000
SPLITS = {"train": "train-clean-100", "dev": "dev-clean"}
DEFAULT_TRAIN_UTTERANCES, DEFAULT_DEV_UTTERANCES = 2000, 200

# Accents, shared by both splits: every variant is heard in all of them.
LANGUAGES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
# Variants (formant and Klatt synthesisers, male and female); dev's are held out of training
# so that dev measures recognition of unheard voices.
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f3", "f5",
                  "klatt", "klatt2", "klatt3", "klatt5")
DEV_VARIANTS = ("m7", "f4", "klatt4", "klatt6")
RATE_WPM = (130, 210)
PITCH = (30, 70)
PITCH_RANGE = (20, 80)
SECONDS = (1.0, 3.5)
PAD_SECONDS = (0.05, 0.35)  # each side, before any widening up to SECONDS[0]
PEAK = (0.1, 0.6)  # of int16 full scale: noise at 10 dB SNR then stays clear of clipping
SNR_DB = (10.0, 30.0)
# A long phrase read slowly can exceed SECONDS[1]; it is redrawn, and a 2-digit string
# always fits, so a few tries suffice.
_MAX_TRIES = 20
_NUMBER_DIGITS_P = (0.1, 0.35, 0.35, 0.2)  # of a number phrase having 1, 2, 3, 4 digits
_SPLIT_TAG = {"train": 1, "dev": 2}
_SPEAKER_BASE = {"train": 1000, "dev": 5000}
_CHAPTER = 1
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def voices(split: str) -> list[str]:
    """The split's voices, one speaker each, accent-major so a small corpus still hears every
    variant."""
    variants = TRAIN_VARIANTS if split == "train" else DEV_VARIANTS
    return [f"{language}+{variant}" for language in LANGUAGES for variant in variants]


def transcript(rng: np.random.Generator) -> str:
    """A digit string of 2-6 digits or a number phrase below 10,000, in LibriSpeech's style:
    upper-case words separated by single spaces."""
    if rng.random() < 0.5:
        return " ".join(DIGIT_WORDS[d] for d in rng.integers(0, 10, int(rng.integers(2, 7))))
    # Mostly 2-3 digit numbers: a lone word ("SEVEN") is short and says little.
    digits = int(rng.choice(4, p=_NUMBER_DIGITS_P)) + 1
    value = int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10**digits))
    if digits >= 3 and rng.random() < 0.25:
        value -= value % 10 ** (digits - 1)  # "NINE THOUSAND", "FIVE HUNDRED"
    return " ".join(num2words(value).replace("-", " ").replace(",", " ").upper().split())


def add_noise(audio: np.ndarray, signal_power: float, snr_db: float,
              rng: np.random.Generator) -> np.ndarray:
    """audio plus white Gaussian noise whose power is signal_power / 10 ** (snr_db / 10)."""
    noise_std = (signal_power / 10.0 ** (snr_db / 10.0)) ** 0.5
    return audio + noise_std * rng.standard_normal(audio.shape)


def _utterance(synth: espeak.Synthesizer, split: str, index: int,
               seed: int) -> tuple[str, np.ndarray, dict]:
    """(transcript, int16 samples at 16 kHz, what was drawn) of one utterance."""
    rng = np.random.default_rng([seed, _SPLIT_TAG[split], index])
    split_voices = voices(split)
    voice = split_voices[index % len(split_voices)]
    rate = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    pitch_range = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    lead, trail = (int(rng.integers(round(PAD_SECONDS[0] * SAMPLE_RATE),
                                    round(PAD_SECONDS[1] * SAMPLE_RATE) + 1)) for _ in "lt")
    peak, snr_db = float(rng.uniform(*PEAK)), float(rng.uniform(*SNR_DB))
    espeak_seed = int(rng.integers(1, 2**31))
    min_samples, max_samples = (round(s * SAMPLE_RATE) for s in SECONDS)
    for _ in range(_MAX_TRIES):
        text = transcript(rng)
        raw = synth.synthesize(text.lower(), voice, rate=rate, pitch=pitch,
                               pitch_range=pitch_range, seed=espeak_seed)
        # float64 throughout, rounded once at the end, so that resampler builds differing
        # in their last bits almost never change a sample.
        speech = soxr.resample(raw.astype(np.float64), synth.sample_rate, SAMPLE_RATE)
        if len(speech) + lead + trail <= max_samples:
            break
    else:
        raise RuntimeError(f"no transcript of {voice} at {rate} wpm fit {SECONDS[1]} s")
    short = min_samples - (len(speech) + lead + trail)
    if short > 0:
        lead, trail = lead + short // 2, trail + short - short // 2
    speech *= peak * 32767.0 / max(float(np.abs(speech).max()), 1.0)
    signal_power = float(np.mean(np.square(speech)))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    audio = add_noise(audio, signal_power, snr_db, rng)
    samples = np.clip(np.rint(audio), -32768, 32767).astype(np.int16)
    drawn = dict(voice=voice, rate=rate, pitch=pitch, pitch_range=pitch_range,
                 peak=round(peak, 4), snr_db=round(snr_db, 3), lead=lead,
                 speech=len(speech), trail=trail)
    return text, samples, drawn


def hash_utterance(digest, utt_id: str, text: str, samples: np.ndarray) -> None:
    """Adds one utterance to the corpus digest (sha256): id, transcript, int16 LE samples."""
    digest.update(f"{utt_id} {text}\n".encode())
    digest.update(np.asarray(samples, dtype="<i2").tobytes())


def write(out_dir: str, *, train_utterances: int = DEFAULT_TRAIN_UTTERANCES,
          dev_utterances: int = DEFAULT_DEV_UTTERANCES, seed: int = 0) -> dict:
    """Synthesises the corpus into out_dir/LibriSpeech/ and writes out_dir/manifest.json;
    returns the manifest. Run it in a fresh process (build() does) for reproducible bytes."""
    started = time.perf_counter()
    synth = espeak.synthesizer()
    for variant in TRAIN_VARIANTS + DEV_VARIANTS:
        if not synth.has_variant(variant):
            raise UserError(f"eSpeak NG voice variant {variant!r} is missing from "
                            f"{synth.data_path}; install the pinned {espeak.PACKAGE} version")
    digest = hashlib.sha256()
    records, speakers, seconds, flac_bytes = [], {}, {}, 0
    for split, count in (("train", train_utterances), ("dev", dev_utterances)):
        per_speaker: dict[int, list[tuple[str, str]]] = {}
        total = 0
        for index in range(count):
            text, samples, drawn = _utterance(synth, split, index, seed)
            speaker = _SPEAKER_BASE[split] + voices(split).index(drawn["voice"])
            speakers[str(speaker)] = drawn["voice"]
            lines = per_speaker.setdefault(speaker, [])
            utt_id = f"{speaker}-{_CHAPTER}-{len(lines):04d}"
            chapter_dir = os.path.join(out_dir, "LibriSpeech", SPLITS[split], str(speaker),
                                       str(_CHAPTER))
            os.makedirs(chapter_dir, exist_ok=True)
            path = os.path.join(chapter_dir, utt_id + ".flac")
            soundfile.write(path, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            flac_bytes += os.path.getsize(path)
            lines.append((utt_id, text))
            hash_utterance(digest, utt_id, text, samples)
            records.append(dict(id=utt_id, split=split, transcript=text, **drawn))
            total += len(samples)
        for speaker, lines in per_speaker.items():
            with open(os.path.join(out_dir, "LibriSpeech", SPLITS[split], str(speaker),
                                   str(_CHAPTER), f"{speaker}-{_CHAPTER}.trans.txt"), "w") as f:
                f.writelines(f"{utt_id} {text}\n" for utt_id, text in lines)
        seconds[split] = round(total / SAMPLE_RATE, 3)
    used = {split: sorted({r["voice"] for r in records if r["split"] == split})
            for split in SPLITS}
    manifest = dict(
        generator_version=GENERATOR_VERSION, train_utterances=train_utterances,
        dev_utterances=dev_utterances, seed=seed, espeakng_loader=espeak.package_version(),
        espeak_ng=synth.version, sample_rate=SAMPLE_RATE, splits=SPLITS, voices=used,
        speakers=speakers, seconds=seconds, flac_bytes=flac_bytes, sha256=digest.hexdigest(),
        build_seconds=round(time.perf_counter() - started, 2), utterances=records)
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _check_counts(train_utterances: int, dev_utterances: int) -> None:
    if train_utterances < 1 or dev_utterances < 1:
        raise UserError(f"the spoken numbers corpus needs at least 1 train and 1 dev "
                        f"utterance; got {train_utterances} and {dev_utterances}")


def build(out_dir: str, *, train_utterances: int = DEFAULT_TRAIN_UTTERANCES,
          dev_utterances: int = DEFAULT_DEV_UTTERANCES, seed: int = 0) -> dict:
    """write() in a fresh Python subprocess (eSpeak NG's state is per process); returns the
    manifest. A problem the user can fix comes back as the child's one-line UserError."""
    _check_counts(train_utterances, dev_utterances)
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [repo_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run(
        [sys.executable, "-m", "input_pipelines.spoken_numbers", "--out", out_dir,
         "--train_utterances", str(train_utterances), "--dev_utterances", str(dev_utterances),
         "--seed", str(seed)], env=env, capture_output=True, text=True, check=False)
    if result.returncode == 2 and result.stderr.strip():
        raise UserError(result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        raise RuntimeError(f"building the spoken numbers corpus failed:\n{result.stderr}")
    manifest = built_once.read_manifest(out_dir)
    if manifest is None:
        raise RuntimeError(f"the spoken numbers builder wrote no manifest in {out_dir}")
    return manifest


def prepare(cache_root: str, *, train_utterances: int = DEFAULT_TRAIN_UTTERANCES,
            dev_utterances: int = DEFAULT_DEV_UTTERANCES,
            seed: int = 0) -> tuple[str, dict]:
    """The corpus under cache_root/spoken_numbers/, built once (atomically, see
    input_pipelines.built_once); returns (data_dir, manifest). data_dir holds LibriSpeech/,
    so librispeech.utterances_openslr(data_dir, [SPLITS["train"]]) lists the training set."""
    _check_counts(train_utterances, dev_utterances)
    version = espeak.package_version()

    def current(manifest: dict) -> bool:
        return (manifest.get("generator_version") == GENERATOR_VERSION
                and manifest.get("train_utterances") == train_utterances
                and manifest.get("dev_utterances") == dev_utterances
                and manifest.get("seed") == seed and manifest.get("espeakng_loader") == version)

    return built_once.prepare(
        cache_root, "spoken_numbers", "the built-in spoken numbers corpus", current,
        lambda staging: build(staging, train_utterances=train_utterances,
                              dev_utterances=dev_utterances, seed=seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthesise the spoken numbers corpus "
                                     "(LibriSpeech layout) into --out.")
    parser.add_argument("--out", required=True, help="directory to write into")
    parser.add_argument("--train_utterances", type=int, default=DEFAULT_TRAIN_UTTERANCES)
    parser.add_argument("--dev_utterances", type=int, default=DEFAULT_DEV_UTTERANCES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _check_counts(args.train_utterances, args.dev_utterances)
        manifest = write(args.out, train_utterances=args.train_utterances,
                         dev_utterances=args.dev_utterances, seed=args.seed)
    except UserError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    print(f"{args.train_utterances} + {args.dev_utterances} utterances "
          f"({sum(manifest['seconds'].values()):.0f} s of audio, {manifest['flac_bytes']:,} "
          f"bytes of FLAC) in {manifest['build_seconds']} s into {args.out}")


if __name__ == "__main__":
    main()
