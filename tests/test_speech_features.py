"""Speech features of the RNN-T reference: librosa cross-check, normalisation, stacking and
the training augmentations' bounds."""

import librosa
import numpy as np
import pytest
import scipy.signal

from input_pipelines import speech_features as sf

SR = sf.SAMPLE_RATE


def chirp_with_noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size)
    signal = scipy.signal.chirp(t, f0=100, t1=seconds, f1=7000) + 0.05 * noise
    return (0.5 * signal).astype(np.float32)


def test_log_mel_equals_librosas_mel_spectrogram():
    audio = chirp_with_noise()
    ours = sf.log_mel(audio, rng=None)
    # The same recipe through librosa's own mel-spectrogram path: pre-emphasis, then power STFT
    # (same window, hop, n_fft, centring) onto the same 80-filter Slaney basis, natural log.
    emphasised = np.concatenate([audio[:1], audio[1:] - 0.97 * audio[:-1]])
    window = scipy.signal.get_window("hann", 320, fftbins=False)
    power_mel = librosa.feature.melspectrogram(
        y=emphasised, sr=SR, n_fft=512, hop_length=160, win_length=320, window=window,
        center=True, pad_mode="reflect", power=2.0, n_mels=80)
    expected = np.log(np.maximum(power_mel, 1e-20)).T
    assert ours.shape == (1 + audio.size // 160, 80) == expected.shape
    assert ours.dtype == np.float32
    difference = np.abs(ours - expected).max()
    print(f"max |log-mel - librosa| = {difference:.2e} (values span {np.ptp(expected):.1f})")
    assert difference < 1e-3


def test_log_mel_frame_is_the_windowed_spectrum_of_its_samples():
    # An independent check of framing and window placement: frame t is centred on sample
    # 160 t, the symmetric 320-sample Hann window sits in the middle of 512.
    audio = chirp_with_noise(seed=1)
    emphasised = np.concatenate([audio[:1], audio[1:] - 0.97 * audio[:-1]]).astype(np.float64)
    window = np.zeros(512)
    window[96:416] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 319)
    features = sf.log_mel(audio, rng=None)
    for t in (5, 50, 90):
        segment = emphasised[160 * t - 256:160 * t + 256]
        power = np.abs(np.fft.rfft(segment * window)) ** 2
        expected = np.log(sf.mel_basis().astype(np.float64) @ power)
        np.testing.assert_allclose(features[t], expected, atol=1e-3)  # a periodic window: 0.05


def test_dither_is_seeded_and_small():
    audio = chirp_with_noise()
    first = sf.log_mel(audio, np.random.default_rng(3))
    again = sf.log_mel(audio, np.random.default_rng(3))
    plain = sf.log_mel(audio, rng=None)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, plain)
    # 1e-5 noise next to a signal of amplitude 0.5: it moves only the weakest bins noticeably.
    change = np.abs(first - plain)
    assert np.median(change) < 1e-3 and change.max() < 0.1


def test_normalisation_gives_zero_mean_unit_std_per_bin():
    features = sf.normalize_per_feature(sf.log_mel(chirp_with_noise(), rng=None))
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(features.std(axis=0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="at least 2 frames"):
        sf.normalize_per_feature(np.ones((1, 80), np.float32))


@pytest.mark.parametrize("frames", [99, 100, 101])
def test_stacking_keeps_ceil_of_a_third_with_240_features(frames):
    features = np.arange(frames * 80, dtype=np.float32).reshape(frames, 80) + 1
    stacked = sf.stack_frames(features)
    assert stacked.shape == (-(-frames // 3), 240)
    # Output frame i holds input frames 3i, 3i+1, 3i+2 side by side; past the end, zeros.
    np.testing.assert_array_equal(stacked[1], np.concatenate(features[3:6]))
    tail = frames - 3 * (stacked.shape[0] - 1)
    np.testing.assert_array_equal(stacked[-1, :80 * tail], np.concatenate(features[-tail:]))
    assert not stacked[-1, 80 * tail:].any()


def test_spec_augment_masks_stay_within_bounds_and_follow_the_seed():
    frames = 1000  # 10 s: time masks of at most round(0.03 * 1000) = 30 frames
    features = np.random.default_rng(0).standard_normal((frames, 80)).astype(np.float32) + 5
    masked_any = 0
    for seed in range(20):
        masked = sf.spec_augment(features, np.random.default_rng(seed))
        zero = masked == 0
        bins = zero.all(axis=0)
        steps = zero.all(axis=1)
        assert zero.sum() == (zero & (bins[None, :] | steps[:, None])).sum()  # only masks
        assert bins.sum() <= 2 * 20
        # Each time mask is one contiguous span; overlaps can merge spans, so bound each run
        # of masked frames by the spans it can hold.
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], steps, [0]]))))[::2]
        assert steps.sum() <= 10 * 30 and all(run <= 10 * 30 for run in runs)
        assert len(runs) <= 10
        masked_any += zero.sum()
        np.testing.assert_array_equal(masked, sf.spec_augment(features,
                                                             np.random.default_rng(seed)))
    assert masked_any > 0


def test_spec_augment_time_masks_are_each_at_most_3_percent():
    # One time mask and no frequency masks, so each masked run is exactly one mask.
    features = np.ones((500, 80), np.float32)
    widths = []
    for seed in range(200):
        masked = sf.spec_augment(features, np.random.default_rng(seed), freq_masks=0,
                                 time_masks=1)
        widths.append(int((masked == 0).all(axis=1).sum()))
    assert max(widths) == round(0.03 * 500)  # 200 draws of 0..15 reach the bound
    assert min(widths) == 0


def test_speed_perturbation_scales_the_length_by_the_factor_drawn():
    audio = chirp_with_noise()
    factors = []
    for seed in range(5):
        perturbed, factor = sf.speed_perturb(audio, np.random.default_rng(seed))
        assert 0.85 <= factor <= 1.15
        assert abs(perturbed.size - audio.size * factor) <= 1
        assert perturbed.dtype == audio.dtype
        factors.append(factor)
    assert len(set(factors)) == 5


def test_trim_removes_silence_below_60_db():
    tone = chirp_with_noise(0.5)  # peak about 0.5
    signs = np.sign(np.random.default_rng(2).standard_normal(4000))
    quiet = (1e-5 * signs).astype(np.float32)  # about -94 dB below the tone
    audio = np.concatenate([quiet, tone, quiet])
    trimmed = sf.trim_silence(audio)
    loud = np.flatnonzero(np.abs(trimmed) > 1e-3)
    # librosa decides per 2048-sample frame at a 512 hop, so up to a frame of silence stays
    # on each side; most of the 4000 samples of silence on each side go.
    assert loud[0] <= 2048 and trimmed.size - 1 - loud[-1] <= 2048
    assert trimmed.size < tone.size + 2 * 2048
    assert loud[-1] - loud[0] + 1 >= tone.size - 10  # the tone itself is kept whole
    assert sf.trim_silence(tone).size == tone.size
    # Silence just above -60 dB is kept: the cut is relative to the loudest frame.
    audible = np.concatenate([100 * quiet, tone, 100 * quiet])  # about -54 dB
    assert sf.trim_silence(audible).size == audible.size


def test_utterance_features_shapes():
    audio = chirp_with_noise()
    evaluation = sf.utterance_features(audio, np.random.default_rng(0), train=False)
    assert evaluation.shape == (-(-(1 + audio.size // 160) // 3), 240)
    training = sf.utterance_features(audio, np.random.default_rng(0), train=True)
    assert training.shape[1] == 240 and np.isfinite(training).all()
