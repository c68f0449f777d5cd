"""The RNN-T's batches (input_pipelines.speech_batches) on FLAC files written here: what a
too-short file does, and what each featurised row costs."""

import os

import numpy as np
import pytest
import soundfile

from input_pipelines import librispeech, speech_batches
from tests.helpers import one_line_error
from tools import make_tiny_librispeech


def _write(path: str, samples: np.ndarray) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, samples, librispeech.SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return path


def _settings(**kwargs) -> speech_batches.Settings:
    return speech_batches.Settings(bounds=(3 * librispeech.SAMPLE_RATE,),
                                   tokens_per_second=12.0, **kwargs)


def test_a_file_too_short_for_one_frame_is_a_one_line_error(tmp_path):
    """Nothing falls back to other audio: a 10 ms file names itself and the fix."""
    click = 0.3 * np.sin(np.linspace(0, 40, 160))
    path = _write(str(tmp_path / "short.flac"), click)
    utterance = librispeech.Utterance("short", path, "ONE")
    for training in (False, True):
        one_line_error(lambda training=training: speech_batches.features(
            utterance, np.random.default_rng(0), _settings(augment=training)),
            path, "160 samples" if not training else "speed perturbation",
            f"fewer than the {speech_batches.MIN_SAMPLES}", "replace it")
    # A file of a few frames still makes its features.
    tone = 0.3 * np.sin(np.linspace(0, 600, 600))
    ok = librispeech.Utterance("ok", _write(str(tmp_path / "ok.flac"), tone), "ONE")
    feats = speech_batches.features(ok, np.random.default_rng(0), _settings(augment=False))
    assert feats.shape == (-(-(1 + 600 // 160) // 3), 240)
    assert np.isfinite(feats).all()



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 tone 'utterances' per split (tools.make_tiny_librispeech), token ids made up from
    the words (the batches take any ids; the vocabulary is the workload's business)."""
    root = str(tmp_path_factory.mktemp("tones"))
    make_tiny_librispeech.make(root, speakers=3, utterances_per_speaker=4)
    split = {s: librispeech.utterances_openslr(root, [s]) for s in make_tiny_librispeech.SPLITS}
    words = {w: i + 1 for i, w in enumerate(make_tiny_librispeech.WORDS)}
    tokens = {u.id: np.array([words[w] for w in u.transcript.split()], np.int32)
              for us in split.values() for u in us}
    return split, tokens


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_eval_batches_are_featurised_once_and_replayed(corpus, featurised):
    split, tokens = corpus
    dev = split["dev-clean"]
    batches = speech_batches.eval_batches(dev, tokens, _settings(augment=False), local_batch=5,
                                          process_index=0, process_count=1, read_ahead=2)
    first = list(batches)
    assert sorted(featurised) == sorted(u.id for u in dev)  # each utterance once
    assert [int(b["mask"].sum()) for b in first] == [5, 5, 2]
    second = list(batches)
    assert len(featurised) == len(dev)  # the second pass featurised nothing
    _same(first, second)
    assert not second[0]["feats"].flags.writeable  # nobody can change what the next eval reads
    # A fresh pipeline (another run) featurises again, and makes the same arrays.
    fresh = list(speech_batches.eval_batches(dev, tokens, _settings(augment=False),
                                             local_batch=5, process_index=0, process_count=1))
    assert len(featurised) == 2 * len(dev)
    _same(first, fresh)
    with pytest.raises(ValueError, match="never augmented"):
        speech_batches.eval_batches(dev, tokens, _settings(), local_batch=5, process_index=0,
                                    process_count=1)


def test_left_out_explains_why_an_epoch_trains_on_fewer_utterances():
    """Of 9 listed (manifest lengths, no audio read): 1 over MLPerf's 16.7 s, 1 whose labels
    pass the last bucket, and the 7 that fit, of which whole batches of 3 keep 6."""
    rate = librispeech.SAMPLE_RATE
    settings = speech_batches.Settings(bounds=(2 * rate, librispeech.MAX_TRAIN_SAMPLES),
                                       tokens_per_second=2.0)
    lengths = [rate] * 4 + [3 * rate] * 3 + [3 * rate, librispeech.MAX_TRAIN_SAMPLES + 1]
    utterances = [librispeech.Utterance(f"u{i}", "", "", n) for i, n in enumerate(lengths)]
    tokens = {u.id: np.zeros(2, np.int32) for u in utterances}
    tokens["u7"] = np.zeros(40, np.int32)  # 20 s of labels at 2 tokens a second
    steps, kept = speech_batches.steps_per_epoch(utterances, tokens, 3, settings)
    assert (steps, kept) == (2, 6)  # 4 short ones make one batch, 3 longer ones another
    assert speech_batches.left_out(utterances, tokens, kept, settings) == {
        "utterances": 9, "over_max_duration": 1, "past_last_bucket": 1, "bucket_remainders": 1}
