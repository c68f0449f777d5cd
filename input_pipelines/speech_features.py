"""Host-side speech features of MLPerf's RNN-T reference, as pure NumPy functions.

The reference's training pipeline (DALI, then SpecAugment and frame splicing in PyTorch) runs:
(training: speed perturbation, by decoding at a rate scaled by the factor) -> silence trimmed
at -60 dB -> dither -> pre-emphasis -> centred STFT power -> 80 mel filters -> natural log
floored at 1e-20 -> per-feature normalisation over the utterance -> (training: SpecAugment)
-> 3 frames stacked, every 3rd kept. SpecAugment runs before stacking, so its masks count
80-bin, 10 ms frames.

The STFT, window, mel basis, resampler and silence trim are librosa's, imported where they are
used: a host without librosa (an accelerator host running --data=synthetic) still imports the
speech workload. `import librosa` takes
about 0.1 s (it loads submodules lazily); its first trim and mel-basis calls compile numba code
once per machine (cached on disk afterwards), which only the speech workload pays for.
Every random choice draws from a numpy Generator the caller passes in.
"""

import functools

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 512
WIN_LENGTH = 320  # 20 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 80
DITHER = 1e-5
PREEMPHASIS = 0.97
LOG_FLOOR = 1e-20  # the reference's floor (a cutoff, not an offset) keeps silent bins finite
NORM_EPSILON = 1e-5  # guards a constant bin; speech log-mel bins vary by whole units
STACKING = 3
SUBSAMPLING = 3
TRIM_TOP_DB = 60.0
SPEED_RANGE = (0.85, 1.15)
FREQ_MASKS, MAX_FREQ_MASK = 2, 20
TIME_MASKS, MAX_TIME_MASK_FRACTION = 10, 0.03


@functools.lru_cache(maxsize=4)
def mel_basis(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
              n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) filters: librosa's Slaney-normalised mel basis, 0 Hz to Nyquist,
    the same call the reference makes."""
    import librosa
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    basis.setflags(write=False)  # cached and shared between callers
    return basis


@functools.lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """The 20 ms analysis window: symmetric Hann of 320 samples."""
    import librosa
    window = librosa.filters.get_window("hann", WIN_LENGTH, fftbins=False).astype(np.float32)
    window.setflags(write=False)
    return window


def trim_silence(audio: np.ndarray, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    """Drop leading and trailing audio more than `top_db` below the utterance's loudest frame."""
    import librosa
    trimmed, _ = librosa.effects.trim(audio, top_db=top_db)
    return trimmed


def speed_perturb(audio: np.ndarray, rng: np.random.Generator,
                  speed_range: tuple[float, float] = SPEED_RANGE,
                  sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Resample by a factor drawn uniformly from `speed_range` and play back at the old rate.

    The reference decodes at sample_rate * factor and treats the result as sample_rate audio,
    so the length becomes ceil(len * factor). librosa.resample (soxr underneath) takes the
    non-integer rate ratio exactly, which scipy's resample_poly would have to round to a
    fraction first. Returns the audio and the factor drawn.
    """
    import librosa
    factor = float(rng.uniform(*speed_range))
    resampled = librosa.resample(audio, orig_sr=sample_rate, target_sr=sample_rate * factor)
    return resampled.astype(audio.dtype, copy=False), factor


def log_mel(audio: np.ndarray, rng: np.random.Generator | None,
            dither: float = DITHER) -> np.ndarray:
    """(1 + len // 160, 80) natural-log mel power of 16 kHz audio, float32.

    Dither (skipped when rng is None) and pre-emphasis (first sample kept) first, then a
    centred STFT with reflected edges (torch.stft's and DALI's defaults) and a symmetric
    320-sample Hann window (the reference builds it with periodic=False) zero-padded to 512.
    """
    import librosa
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size < N_FFT // 2 + 1:
        raise ValueError(f"expected one channel of at least {N_FFT // 2 + 1} samples, got "
                         f"shape {x.shape}")
    if rng is not None and dither > 0:
        x = x + dither * rng.standard_normal(x.shape, dtype=np.float32)
    x = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    spectrum = librosa.stft(x, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                            window=hann_window(), center=True, pad_mode="reflect")
    mel = mel_basis() @ (np.abs(spectrum) ** 2)
    return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


def normalize_per_feature(features: np.ndarray) -> np.ndarray:
    """Each mel bin to zero mean and unit standard deviation over the utterance's frames.

    The statistics of the reference's training pipeline (DALI's Normalize over time):
    population standard deviation; 1e-5 is added to it so that a constant bin stays finite.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.shape[0] < 2:
        raise ValueError(f"per-feature normalisation needs at least 2 frames, got "
                         f"{features.shape[0]}")
    mean = features.mean(axis=0, keepdims=True)
    std = features.std(axis=0, keepdims=True) + NORM_EPSILON
    return (features - mean) / std


def stack_frames(features: np.ndarray, stacking: int = STACKING,
                 subsampling: int = SUBSAMPLING) -> np.ndarray:
    """(T, F) -> (ceil(T / subsampling), F * stacking).

    Output frame i concatenates input frames s*i, s*i+1, ..., s*i+stacking-1; frames past the
    end are zeros (the normalised mean), so a tail shorter than `stacking` still yields a
    frame, as in the reference, whose lengths become ceil(T / subsampling).
    """
    num_frames, num_features = features.shape
    padded = np.zeros((num_frames + stacking - 1, num_features), features.dtype)
    padded[:num_frames] = features
    shifted = [padded[n:n + num_frames] for n in range(stacking)]
    return np.concatenate(shifted, axis=1)[::subsampling]


def spec_augment(features: np.ndarray, rng: np.random.Generator,
                 freq_masks: int = FREQ_MASKS, max_freq_mask: int = MAX_FREQ_MASK,
                 time_masks: int = TIME_MASKS,
                 max_time_mask_fraction: float = MAX_TIME_MASK_FRACTION) -> np.ndarray:
    """Zero `freq_masks` bands of 0..max_freq_mask bins and `time_masks` spans of
    0..round(fraction * T) frames of (T, F) normalised features (masks may overlap)."""
    num_frames, num_features = features.shape
    keep = np.ones(features.shape, dtype=bool)
    for _ in range(freq_masks):
        width = int(rng.integers(0, max_freq_mask + 1))
        start = int(rng.integers(0, max(1, num_features - width + 1)))
        keep[:, start:start + width] = False
    max_time_mask = int(round(num_frames * max_time_mask_fraction))
    for _ in range(time_masks):
        width = int(rng.integers(0, max_time_mask + 1))
        start = int(rng.integers(0, max(1, num_frames - width + 1)))
        keep[start:start + width, :] = False
    return np.where(keep, features, np.zeros((), features.dtype))


def utterance_features(audio: np.ndarray, rng: np.random.Generator,
                       train: bool) -> np.ndarray:
    """(ceil(frames / 3), 240) model inputs of one 16 kHz utterance; `train` adds speed
    perturbation and SpecAugment."""
    if train:
        audio, _ = speed_perturb(audio, rng)
    audio = trim_silence(audio)
    features = normalize_per_feature(log_mel(audio, rng))
    if train:
        features = spec_augment(features, rng)
    return stack_frames(features)
