"""Writes a tiny LibriSpeech in the OpenSLR layout, as FLAC, for tests of the readers.

    python -m tools.make_tiny_librispeech --out /tmp/tiny_librispeech [--splits dev-clean ...]

Written: <out>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac and
<speaker>-<chapter>.trans.txt, 16 kHz mono 16-bit like the real files. The audio is not speech:
each letter of the transcript is a short tone at its own pitch (spaces are silence), so a file's
length and content follow from its transcript. The spoken built-in corpus is another tool.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import soundfile

SAMPLE_RATE = 16000
SECONDS_PER_CHARACTER = 0.04
WORDS = ("ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN")
SPLITS = ("dev-clean", "train-clean-100")


def tones(text: str) -> np.ndarray:
    """int16 samples: one tone per letter, silence for anything else."""
    per_char = int(SECONDS_PER_CHARACTER * SAMPLE_RATE)
    t = np.arange(per_char) / SAMPLE_RATE
    pieces = []
    for c in text:
        if "A" <= c <= "Z":
            pitch = 200.0 + 40.0 * (ord(c) - ord("A"))
            pieces.append(0.3 * np.sin(2 * np.pi * pitch * t))
        else:
            pieces.append(np.zeros(per_char))
    return np.round(np.concatenate(pieces) * 32767).astype(np.int16)


def make(out: str, splits: tuple[str, ...] = SPLITS, speakers: int = 2,
         utterances_per_speaker: int = 3, seed: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    """Writes the files; returns {utterance id: (transcript, int16 samples written)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split_number, split in enumerate(splits):
        for s in range(speakers):
            speaker, chapter = 100 * (split_number + 1) + s, 1000 + s
            chapter_dir = os.path.join(out, "LibriSpeech", split, str(speaker), str(chapter))
            os.makedirs(chapter_dir, exist_ok=True)
            lines = []
            for n in range(utterances_per_speaker):
                utt_id = f"{speaker}-{chapter}-{n:04d}"
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
                samples = tones(text)
                soundfile.write(os.path.join(chapter_dir, utt_id + ".flac"), samples,
                                SAMPLE_RATE, subtype="PCM_16", format="FLAC")
                lines.append(f"{utt_id} {text}\n")
                written[utt_id] = (text, samples)
            with open(os.path.join(chapter_dir, f"{speaker}-{chapter}.trans.txt"), "w") as f:
                f.writelines(lines)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write LibriSpeech/ into")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--speakers", type=int, default=2)
    parser.add_argument("--utterances_per_speaker", type=int, default=3)
    args = parser.parse_args(argv)
    if args.speakers < 1 or args.utterances_per_speaker < 1:
        print("error: --speakers and --utterances_per_speaker must be at least 1", file=sys.stderr)
        raise SystemExit(2)
    written = make(args.out, tuple(args.splits), args.speakers, args.utterances_per_speaker)
    print(f"wrote {len(written)} utterances under {os.path.join(args.out, 'LibriSpeech')}")


if __name__ == "__main__":
    main()
