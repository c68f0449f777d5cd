"""The LibriSpeech readers on data written in the real formats (FLAC, the reference's manifests)."""

import json
import os

import numpy as np
import pytest
import soundfile

from common.errors import UserError
from input_pipelines import librispeech
from tools import make_tiny_librispeech


@pytest.fixture
def tiny(tmp_path):
    written = make_tiny_librispeech.make(str(tmp_path))
    return str(tmp_path), written


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_openslr_reader_round_trip(tiny):
    root, written = tiny
    dev = librispeech.utterances_openslr(root, ["dev-clean"])
    train = librispeech.utterances_openslr(root, ["train-clean-100"])
    assert len(dev) == len(train) == 6
    for u in dev + train:
        text, samples = written[u.id]
        assert u.transcript == text
        assert os.path.basename(u.audio_path) == u.id + ".flac"
        audio = librispeech.read_audio(u.audio_path)
        assert audio.dtype == np.float32
        np.testing.assert_array_equal(audio, samples.astype(np.float32) / 32768)
        assert librispeech.num_samples(u) == len(samples)
    assert {u.id for u in dev}.isdisjoint({u.id for u in train})
    # ROOT may also be the LibriSpeech directory itself.
    same = librispeech.utterances_openslr(os.path.join(root, "LibriSpeech"), ["dev-clean"])
    assert same == dev


def test_manifest_reader(tiny, tmp_path):
    root, written = tiny
    dev = librispeech.utterances_openslr(root, ["dev-clean"])
    # The reference's layout: BASE/librispeech-dev-clean-wav.json listing
    # BASE/wav/dev-clean/<speaker>/<chapter>/<id>.wav, fname relative to BASE/wav, transcripts
    # lower-cased, and a file per speed (here a 0.9 copy listed first, which must be skipped).
    entries = []
    for u in dev:
        samples = written[u.id][1]
        speaker, chapter, _ = u.id.split("-")
        fname = f"dev-clean/{speaker}/{chapter}/{u.id}.wav"
        os.makedirs(tmp_path / "wav" / os.path.dirname(fname), exist_ok=True)
        soundfile.write(tmp_path / "wav" / fname, samples, 16000, subtype="PCM_16")
        files = [{"channels": 1, "sample_rate": 16000.0, "bitrate": 16,
                  "duration": len(samples) / 16000, "num_samples": len(samples),
                  "encoding": "Signed Integer PCM", "silent": False, "fname": fname, "speed": 1}]
        files.insert(0, dict(files[0], fname=fname.replace(".wav", "-0.9.wav"), speed=0.9,
                             num_samples=len(samples) * 10 // 9))
        entries.append({"transcript": u.transcript.lower(), "files": files,
                        "original_duration": len(samples) / 16000,
                        "original_num_samples": len(samples)})
    manifest = tmp_path / "librispeech-dev-clean-wav.json"
    manifest.write_text(json.dumps(entries))
    read = librispeech.utterances_manifest(str(manifest))
    assert [u.id for u in read] == [u.id for u in dev]
    assert [u.transcript for u in read] == [u.transcript.lower() for u in dev]
    assert [u.num_samples for u in read] == [len(written[u.id][1]) for u in dev]
    np.testing.assert_array_equal(librispeech.read_audio(read[0].audio_path),
                                  librispeech.read_audio(dev[0].audio_path))

    del entries[1]["transcript"]
    manifest.write_text(json.dumps(entries))
    with pytest.raises(UserError, match="entry 1 lacks key 'transcript'") as e:
        librispeech.utterances_manifest(str(manifest))
    _one_line(e)
    entries[1]["transcript"] = "x"
    os.remove(tmp_path / "wav" / entries[2]["files"][1]["fname"])
    manifest.write_text(json.dumps(entries))
    with pytest.raises(UserError, match=r"wav/dev-clean/.*\.wav \(from manifest .* entry 2\) "
                       "not found") as e:
        librispeech.utterances_manifest(str(manifest))
    _one_line(e)


def test_openslr_errors(tiny):
    root, _ = tiny
    with pytest.raises(UserError, match="LibriSpeech/train-clean-360 not found under .*"
                       "train-clean-360.tar.gz from OpenSLR SLR12") as e:
        librispeech.utterances_openslr(root, ["train-clean-360"])
    _one_line(e)

    chapter = os.path.join(root, "LibriSpeech", "dev-clean", "100", "1000")
    transcript = os.path.join(chapter, "100-1000.trans.txt")
    lines = open(transcript).readlines()
    with open(transcript, "w") as f:
        f.writelines(lines[1:])  # the first file loses its line
    with pytest.raises(UserError, match="100-1000-0000.flac has no transcript line") as e:
        librispeech.utterances_openslr(root, ["dev-clean"])
    _one_line(e)

    with open(transcript, "w") as f:
        f.writelines(lines)
    os.remove(os.path.join(chapter, "100-1000-0001.flac"))
    with pytest.raises(UserError, match="100-1000-0001.flac is missing but") as e:
        librispeech.utterances_openslr(root, ["dev-clean"])
    _one_line(e)


def test_read_audio_errors(tmp_path):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 2)  # a FLAC magic, then garbage
    with pytest.raises(UserError, match="corrupt.flac cannot be decoded") as e:
        librispeech.read_audio(str(corrupt))
    _one_line(e)
    with pytest.raises(UserError, match="corrupt.flac cannot be decoded"):
        librispeech.num_samples(librispeech.Utterance("x", str(corrupt), "X"))

    wrong_rate = tmp_path / "8k.flac"
    soundfile.write(wrong_rate, np.zeros(800, np.int16), 8000, format="FLAC")
    with pytest.raises(UserError, match="8k.flac is sampled at 8000 Hz, expected 16000") as e:
        librispeech.read_audio(str(wrong_rate))
    _one_line(e)


def _fake(lengths):
    return [librispeech.Utterance(f"u{i:03d}", f"/nowhere/u{i}.flac", f"T{i}", n)
            for i, n in enumerate(lengths)]


def test_shard_disjoint_and_complete():
    utterances = _fake(range(1, 101))[::-1]
    shares = [librispeech.shard(utterances, i, 3) for i in range(3)]
    ids = [u.id for share in shares for u in share]
    assert len(ids) == len(set(ids)) == 100
    assert sorted(len(s) for s in shares) == [33, 33, 34]
    assert librispeech.shard(list(reversed(utterances)), 1, 3) == shares[1]
    with pytest.raises(ValueError):
        librispeech.shard(utterances, 3, 3)


def test_buckets():
    bounds = (16000, 32000, librispeech.MAX_TRAIN_SAMPLES)
    assert [librispeech.bucket_for(n, bounds) for n in (1, 16000, 16001, 267200, 267201)] == \
        [0, 0, 1, 2, None]
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1000, 260000, size=50)) + [270000, 300000]  # two over 16.7 s
    utterances = _fake(lengths)
    length_of = {u.id: u.num_samples for u in utterances}

    train = librispeech.plan_batches(utterances, 4, training=True, bucket_bounds=bounds, seed=1)
    kept = [u for _, rows in train for u in rows]
    assert all(None not in rows and len(rows) == 4 for _, rows in train)
    assert len(kept) == len({u.id for u in kept})
    assert max(u.num_samples for u in kept) <= librispeech.MAX_TRAIN_SAMPLES
    for bound, rows in train:  # padded to the smallest bound that holds the batch
        assert bound in bounds
        smaller = [b for b in bounds if b < bound]
        assert all(length_of[u.id] <= bound for u in rows)
        assert not smaller or all(length_of[u.id] > max(smaller) for u in rows)
    # Remainders dropped: fewer than batch_size per bucket go missing.
    assert 50 - len(kept) < 4 * len(bounds)

    # 16.7 s is the training limit even when a bucket would hold more.
    wide = librispeech.plan_batches(_fake([270000] * 4 + [1000] * 4), 4, training=True,
                                    bucket_bounds=(16000, 320000))
    assert [[u.num_samples for u in rows] for _, rows in wide] == [[1000] * 4]
    assert len(librispeech.plan_batches(_fake([270000] * 4), 4, training=False,
                                        bucket_bounds=(16000, 320000))) == 1

    evaluation = librispeech.plan_batches(utterances, 4, training=False, bucket_bounds=bounds)
    seen = [u.id for _, rows in evaluation for u in rows if u is not None]
    assert sorted(seen) == sorted(length_of)  # every utterance exactly once, the long ones too
    assert max(bound for bound, _ in evaluation) == 304000  # 300000 rounded up to whole seconds


def test_batches_read_and_pad(tiny):
    root, written = tiny
    dev = librispeech.utterances_openslr(root, ["dev-clean"])
    out = list(librispeech.batches(dev, 4, training=False, bucket_bounds=(16000, 32000)))
    rows = 0
    for batch in out:
        assert batch.audio.shape[0] == 4 and batch.audio.shape[1] in (16000, 32000)
        for i, utt_id in enumerate(batch.ids):
            if not batch.valid[i]:
                assert batch.audio_lengths[i] == 0 and not batch.audio[i].any()
                continue
            rows += 1
            samples = written[utt_id][1].astype(np.float32) / 32768
            n = batch.audio_lengths[i]
            assert n == len(samples)
            np.testing.assert_array_equal(batch.audio[i, :n], samples)
            assert not batch.audio[i, n:].any()
            assert batch.transcripts[i] == written[utt_id][0]
    assert rows == len(dev)


def test_tool_cli(tmp_path, capsys):
    make_tiny_librispeech.main(["--out", str(tmp_path), "--splits", "dev-clean",
                                "--speakers", "1", "--utterances_per_speaker", "2"])
    assert "wrote 2 utterances" in capsys.readouterr().out
    assert len(librispeech.utterances_openslr(str(tmp_path), ["dev-clean"])) == 2
