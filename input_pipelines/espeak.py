"""Speech from eSpeak NG, the library and voice data the espeakng-loader wheel bundles.

No pip package drives libespeak-ng for audio (phonemizer and friends ask it for phonemes only),
so this is a thin ctypes binding of its C API (speak_lib.h): synchronous synthesis into a
callback that collects the 16-bit samples.

eSpeak NG keeps its voice, parameters and random state in process globals, so a process has
one Synthesizer (synthesizer() is cached) and callers that want the same audio every time
synthesise in a fresh process, in a fixed order, reseeding before every utterance.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os

import numpy as np

from common.errors import UserError

PACKAGE = "espeakng-loader"
_INSTALL = f"pip install '{PACKAGE}' (the version pinned in jaxperf's pyproject.toml)"

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data path instead of exiting the process
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0
# 0..100, 100 the library's default: some Klatt variants clip int16 at 100 (klatt4 and
# klatt5 reach 32767), none comes near it at 60.
VOLUME = 60

_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


def package_version() -> str:
    """The installed espeakng-loader's version: which libespeak-ng and voices made the audio."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"{PACKAGE} is not installed; {_INSTALL}") from None


class Synthesizer:
    """libespeak-ng loaded and initialised for synchronous synthesis into memory."""

    def __init__(self, library_path: str | None = None, data_path: str | None = None):
        if library_path is None or data_path is None:
            try:
                import espeakng_loader
            except ImportError:
                raise UserError(f"{PACKAGE} is not installed; {_INSTALL}") from None
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as e:
            raise UserError(f"cannot load libespeak-ng from {library_path} ({e}); reinstall "
                            f"it: {_INSTALL}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.data_path = data_path
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                 os.fsencode(data_path), _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise UserError(f"libespeak-ng found no voice data in {data_path}; reinstall it: "
                            f"{_INSTALL}")
        self.version = lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []
        # Kept on self: ctypes frees the C trampoline with the Python object.
        self._callback = _Callback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def _collect(self, wav, num_samples: int, events) -> int:
        del events
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        return 0  # 0 = carry on

    def has_variant(self, variant: str) -> bool:
        return os.path.isfile(os.path.join(self.data_path, "voices", "!v", variant))

    def synthesize(self, text: str, voice: str, *, rate: int, pitch: int, pitch_range: int,
                   seed: int) -> np.ndarray:
        """int16 samples at self.sample_rate of `text` read by `voice` ("<language>" or
        "<language>+<variant>", e.g. "en-us+m3") at `rate` words a minute, base pitch and
        pitch range 0..100 (50 the voice's own)."""
        language, _, variant = voice.partition("+")
        # The library silently ignores an unknown variant; an unknown language it reports.
        if variant and not self.has_variant(variant):
            raise ValueError(f"eSpeak NG has no voice variant {variant!r} in {self.data_path}")
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"eSpeak NG has no voice {language!r} in {self.data_path}")
        for parameter, value in ((_RATE, rate), (_VOLUME, VOLUME), (_PITCH, pitch),
                                 (_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks.clear()
        encoded = text.encode()
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


@functools.lru_cache(maxsize=1)
def synthesizer() -> Synthesizer:
    """This process's one Synthesizer (the library's state is global to the process)."""
    return Synthesizer()
