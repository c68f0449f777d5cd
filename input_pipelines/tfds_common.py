"""What every tfds-backed reader shares: TensorFlow imported lazily and kept off the
accelerators, TF errors as one readable line, and preparing the built-in datasets."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from common import quiet_tf
from common.errors import UserError


@functools.cache
def tf_modules() -> tuple[Any, Any]:
    """Imports (tensorflow, tensorflow_datasets), keeping TensorFlow off accelerators and
    its start-up notes off the console (common.quiet_tf)."""
    try:
        tf = quiet_tf.import_tensorflow()
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise UserError(
            f"real-data input needs TensorFlow and tensorflow-datasets ({e}); install them "
            "(pip install tensorflow-cpu tensorflow-datasets) or run with synthetic data"
        ) from e
    try:
        # TF would otherwise reserve the GPU memory that JAX needs; tf.data only needs CPUs.
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TF's devices are already initialised by the caller; respect their choice.
    return tf, tfds


def one_line(error: BaseException) -> str:
    # TF errors embed graph-node and op markers that say nothing to a user.
    text = re.sub(r"\{\{.*?\}\}|\[\[.*?\]\]|\[Op:.*", " ", str(error), flags=re.DOTALL)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def open_prepared(name: str, data_dir: str, hint: str):
    """tfds's builder for `name`, prepared under data_dir, or UserError: `hint` says how
    to prepare it. Readers check their own features afterwards."""
    tf, tfds = tf_modules()
    from google.protobuf import json_format

    not_prepared = f"no prepared {name} under {data_dir}; prepare it with {hint}"
    dataset_dir = os.path.join(data_dir, name)
    if os.path.isdir(dataset_dir):
        versions = sorted(v for v in os.listdir(dataset_dir) if not v.startswith("incomplete"))
        not_prepared += f" (versions found there: {versions or 'none complete'})"
    try:
        # try_gcs=False: the benchmark must read exactly the data under data_dir.
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise UserError(f"tfds knows no dataset {name} ({one_line(e)}); check the name") from e
    except (json_format.ParseError, ValueError, KeyError, OSError, tf.errors.OpError) as e:
        raise UserError(
            f"unreadable dataset_info for {name} under {data_dir} ({one_line(e)}); delete "
            f"{dataset_dir} and prepare it again with {hint}"
        ) from e
    if not builder.is_prepared():
        raise UserError(not_prepared)
    return builder


def prepare_builtin(make_builder, name: str, data_dir: str):
    """Builds the built-in dataset `name` (nothing to download) under data_dir unless it is
    there; returns its builder. make_builder(data_dir=...) constructs the tfds builder.

    Idempotent and quick. Two processes preparing the same fresh data_dir at once may race
    on tfds's final rename, so multi-process runs should prepare once up front.
    """
    from google.protobuf import json_format

    _, tfds = tf_modules()
    try:
        with _tfds_quiet():
            builder = make_builder(data_dir=data_dir)
            prepared = builder.is_prepared()
    except (json_format.ParseError, ValueError, KeyError, OSError) as e:
        detail = " ".join(str(e).split())[:200]
        raise UserError(
            f"unreadable {name} under {data_dir} ({detail}); delete "
            f"{data_dir}/{name} and prepare it again"
        ) from e
    if not prepared:
        print(f"Preparing the built-in {name} dataset under {data_dir} (once, a few seconds).",
              flush=True)
        tfds.disable_progress_bar()  # tqdm bars would bury the run's own output
        # Nothing is downloaded: a temporary download folder keeps data_dir free of litter,
        # and try_download_gcs=False never looks for a pre-built copy online.
        with tempfile.TemporaryDirectory() as download_dir, _tfds_quiet():
            builder.download_and_prepare(
                download_dir=download_dir,
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
    return builder


@contextlib.contextmanager
def _tfds_quiet() -> Iterator[None]:
    """While jaxperf builds its own built-in data: tfds's warnings about the half-built
    version folder ("Variant folder ... has no dataset_info.json") and its "Downloading and
    preparing" / "downloaded and prepared" notes (nothing is downloaded; the line above says
    what happens). Errors still raise; everything else tfds logs is untouched."""
    absl_logger = logging.getLogger("absl")  # tfds logs through absl.logging
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        absl_logger.setLevel(level)
