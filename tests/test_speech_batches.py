"""The RNN-T's batches (input_pipelines.speech_batches) on FLAC files written here: what a
too-short file does, and what each featurised row costs."""

import os

import numpy as np
import soundfile

from input_pipelines import librispeech, speech_batches
from tests.helpers import one_line_error


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
            utterance, np.random.default_rng(0), _settings(), training),
            path, "160 samples" if not training else "speed perturbation",
            f"fewer than the {speech_batches.MIN_SAMPLES}", "replace it")
    # A file of a few frames still makes its features.
    tone = 0.3 * np.sin(np.linspace(0, 600, 600))
    ok = librispeech.Utterance("ok", _write(str(tmp_path / "ok.flac"), tone), "ONE")
    feats = speech_batches.features(ok, np.random.default_rng(0), _settings(), False)
    assert feats.shape == (-(-(1 + 600 // 160) // 3), 240)
    assert np.isfinite(feats).all()

