"""TensorFlow imported without its start-up notes: every jaxperf module that needs TF
(tf.data input pipelines, tfds, the BERT reference checkpoint) imports it here."""

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# What TensorFlow's native libraries print on stderr as they load, whatever
# TF_CPP_MIN_LOG_LEVEL says (TF 2.21: once per library, twice per process). The oneDNN
# note is about TF's own ops (the input pipeline's), never JAX's numerics; turning oneDNN
# off (TF_ENABLE_ONEDNN_OPTS=0) would silence it too, but change those ops' numerics to
# hide a line.
LOAD_NOISE = (b"All log messages before absl::InitializeLog() is called",
              b"oneDNN custom operations are on")


@contextlib.contextmanager
def stderr_without(noise: tuple[bytes, ...]) -> Iterator[None]:
    """Runs the block with file descriptor 2 (where native code writes) sent to a temporary
    file, then writes back every line that holds none of `noise`, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True)
                    if not any(n in line for n in noise)]
            if kept:
                os.write(2, b"".join(kept))


def import_tensorflow() -> Any:
    """The tensorflow module (ImportError where it is not installed)."""
    if "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None:
        return sys.modules["tensorflow"]
    # TF's C++ INFO lines (the CPU features it was built for, ...) say nothing to a
    # benchmark's user; its warnings and errors still show. Set before TF reads it, and
    # never over the user's own setting.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with stderr_without(LOAD_NOISE):
        import tensorflow as tf
    return tf
