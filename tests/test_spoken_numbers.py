"""The built-in spoken numbers corpus: reproducible, LibriSpeech-shaped, noisy, held-out voices."""

import filecmp
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from common.errors import UserError
from input_pipelines import espeak, librispeech, speech_features
from input_pipelines import spoken_numbers as sn

TRAIN, DEV = 40, 10
# The corpus of (TRAIN, DEV, seed 0) with espeakng-loader 0.2.4: a change here means the
# generator, the library or its voice data, or the resampler changed what it writes.
PINNED_SHA256 = "e57582da1664348ff0217ace54b2094c7c5bc6e6741742c905244f566a86fdf2"
TRANSCRIPT = re.compile(r"[A-Z']+( [A-Z']+)*")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The small corpus built twice, each in its own fresh subprocess and directory."""
    built = []
    for name in ("first", "second"):
        out = str(tmp_path_factory.mktemp(name))
        built.append((out, sn.build(out, train_utterances=TRAIN, dev_utterances=DEV)))
    return built


def test_two_builds_are_byte_identical_and_pinned(corpora):
    (first, manifest), (second, again) = corpora
    assert manifest["sha256"] == again["sha256"] == PINNED_SHA256
    assert manifest["espeakng_loader"] == espeak.package_version()
    paths = []
    for directory, _, files in os.walk(os.path.join(first, "LibriSpeech")):
        paths += [os.path.relpath(os.path.join(directory, f), first) for f in files]
    assert len([p for p in paths if p.endswith(".flac")]) == TRAIN + DEV
    match, mismatch, errors = filecmp.cmpfiles(first, second, paths, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(paths)


def test_reads_back_through_the_librispeech_reader(corpora):
    root, manifest = corpora[0]
    drawn = {r["id"]: r for r in manifest["utterances"]}
    digest = hashlib.sha256()
    for split, count in (("train", TRAIN), ("dev", DEV)):
        utterances = librispeech.utterances_openslr(root, [sn.SPLITS[split]])
        assert len(utterances) == count
        for u in utterances:
            record = drawn[u.id]
            assert record["split"] == split and u.transcript == record["transcript"]
            assert TRANSCRIPT.fullmatch(u.transcript)
            info = soundfile.info(u.audio_path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            samples = soundfile.read(u.audio_path, dtype="int16")[0]
            assert len(samples) == record["lead"] + record["speech"] + record["trail"]
            assert sn.SECONDS[0] * 16000 <= len(samples) <= sn.SECONDS[1] * 16000
            # Noise everywhere, the padding included: never 4 exact zeros in a row.
            zero_runs = np.convolve(samples == 0, np.ones(4, int), mode="valid")
            assert zero_runs.max() < 4, u.id
            # SNR estimated from the file: the leading padding is noise alone.
            audio = samples.astype(np.float64)
            noise_power = audio[:record["lead"]].var()
            speech = audio[record["lead"]:record["lead"] + record["speech"]]
            snr_db = 10 * np.log10((np.mean(speech**2) - noise_power) / noise_power)
            assert sn.SNR_DB[0] <= record["snr_db"] <= sn.SNR_DB[1]
            assert abs(snr_db - record["snr_db"]) < 1.5, (u.id, snr_db, record["snr_db"])
    # The manifest's digest is that of the files on disk, in the manifest's order.
    for record in manifest["utterances"]:
        speaker, chapter, _ = record["id"].split("-")
        path = os.path.join(root, "LibriSpeech", sn.SPLITS[record["split"]], speaker, chapter,
                            record["id"] + ".flac")
        sn.hash_utterance(digest, record["id"], record["transcript"],
                          soundfile.read(path, dtype="int16")[0])
    assert digest.hexdigest() == manifest["sha256"]


def test_dev_voices_are_held_out_of_training(corpora):
    root, manifest = corpora[0]
    speakers = manifest["speakers"]
    heard = {split: {speakers[u.id.split("-")[0]]
                     for u in librispeech.utterances_openslr(root, [sn.SPLITS[split]])}
             for split in sn.SPLITS}
    assert heard == {split: set(manifest["voices"][split]) for split in sn.SPLITS}
    variants = {split: {voice.partition("+")[2] for voice in heard[split]}
                for split in sn.SPLITS}
    assert variants["dev"] and variants["train"]
    assert variants["dev"].isdisjoint(variants["train"])


def test_features_are_finite_on_every_file(corpora):
    root, _ = corpora[0]
    rng = np.random.default_rng(0)
    for u in librispeech.utterances_openslr(root, list(sn.SPLITS.values())):
        features = speech_features.utterance_features(librispeech.read_audio(u.audio_path),
                                                      rng, train=False)
        assert features.shape[1] == 240 and np.isfinite(features).all(), u.id


def test_add_noise_reaches_the_asked_snr():
    rng = np.random.default_rng(1)
    clean = 1000 * np.sin(np.arange(160_000) * 0.05)  # power 500,000
    for snr_db in (10.0, 30.0):
        noise = sn.add_noise(clean, 500_000.0, snr_db, rng) - clean
        measured = 10 * np.log10(500_000.0 / np.mean(noise**2))
        assert abs(measured - snr_db) < 0.05


def test_transcripts_are_librispeech_style_numbers():
    rng = np.random.default_rng(2)
    texts = [sn.transcript(rng) for _ in range(500)]
    assert all(TRANSCRIPT.fullmatch(t) for t in texts)
    digit_strings = [t for t in texts if set(t.split()) <= set(sn.DIGIT_WORDS)
                     and len(t.split()) > 1]
    assert digit_strings and all(2 <= len(t.split()) <= 6 for t in digit_strings)
    assert {"HUNDRED", "THOUSAND", "AND"} <= {w for t in texts for w in t.split()}


def test_prepare_builds_once_and_rebuilds_on_new_parameters(tmp_path, capsys):
    data_dir, manifest = sn.prepare(str(tmp_path), train_utterances=3, dev_utterances=2)
    assert "Preparing" in capsys.readouterr().out
    assert len(librispeech.utterances_openslr(data_dir, ["dev-clean"])) == 2
    assert sn.prepare(str(tmp_path), train_utterances=3, dev_utterances=2) == (data_dir,
                                                                               manifest)
    assert "Preparing" not in capsys.readouterr().out
    _, rebuilt = sn.prepare(str(tmp_path), train_utterances=4, dev_utterances=2)
    assert rebuilt["train_utterances"] == 4
    assert len(librispeech.utterances_openslr(data_dir, ["train-clean-100"])) == 4


def test_problems_are_one_line_user_errors(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="JAXPERF_CACHE") as error:
        sn.prepare(str(blocker / "cache"), train_utterances=2, dev_utterances=1)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="pip install") as error:
        espeak.Synthesizer(library_path=str(tmp_path / "libespeak-ng.so"),
                           data_path=str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="no voice data") as error:
        espeak.Synthesizer(data_path=str(tmp_path / "no-data"))
    assert "\n" not in str(error.value)
    # The builder's own command line: a bad count is exit code 2 and one line, nothing written.
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "input_pipelines.spoken_numbers", "--out",
                             str(out), "--train_utterances", "0"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "at least 1 train" in result.stderr and not out.exists()
