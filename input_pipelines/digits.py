"""`jaxperf_digits`: a tiny real image-classification dataset that needs no download.

The 1797 8x8 handwritten digits that scikit-learn ships are written as a tfds dataset laid
out like imagenet2012 (JPEG `image`, `label`, `file_name`), so the tiny presets and the tests
read them through exactly the same tfds + JPEG decode path as the ResNet-50 benchmark.

Importing this module registers the builder with tfds (`tfds.builder('jaxperf_digits')`), so it
imports tensorflow_datasets at top level: import it only on real-data code paths.
"""

from __future__ import annotations

import argparse
import io
from typing import ClassVar

import numpy as np

from input_pipelines import tfds_common

_, tfds = tfds_common.tf_modules()  # TensorFlow imported there, quietly

NAME = "jaxperf_digits"
IMAGE_SIZE = 32
NUM_CLASSES = 10
TRAIN_EXAMPLES = 1500
# Fixed so that the train/validation split is identical on every machine and tfds version.
_SPLIT_SEED = 20120
_JPEG_QUALITY = 95


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # heavy import, only needed while building

    digits = load_digits()
    return digits.images, digits.target


def _to_jpeg(digit: np.ndarray) -> bytes:
    """8x8 grey levels in 0..16 -> 32x32 RGB JPEG bytes."""
    from PIL import Image

    grey = np.clip(np.rint(digit * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    # Bilinear rather than nearest: blocky 4x4 squares would make the 8x8 JPEG blocks
    # almost lossless and hide decode/resize bugs that real photos expose.
    image = Image.fromarray(grey, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    buffer = io.BytesIO()
    # Stored as 3 channels, like ImageNet, so readers never special-case greyscale.
    image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


class JaxperfDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's handwritten digits, upscaled to 32x32 and stored as JPEG."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "First release: 1500 train / 297 validation, 32x32 JPEG."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="sklearn.datasets.load_digits upscaled to 32x32 RGB JPEG.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(IMAGE_SIZE, IMAGE_SIZE, 3), encoding_format="jpeg"
                    ),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # the data ships inside scikit-learn
        images, labels = _load_digits()
        order = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
        return {
            "train": self._generate_examples(images, labels, order[:TRAIN_EXAMPLES]),
            "validation": self._generate_examples(images, labels, order[TRAIN_EXAMPLES:]),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for index in indices:
            # The index into load_digits() keeps every example traceable to its source.
            file_name = f"digit_{index:04d}.jpeg"
            yield (
                file_name,
                {
                    "image": _to_jpeg(images[index]),
                    "label": int(labels[index]),
                    "file_name": file_name,
                },
            )


def prepare(data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds jaxperf_digits under data_dir unless it is already there; returns the builder.

    Idempotent and quick (a few seconds). Two processes preparing the same fresh data_dir at
    once may race on tfds's final rename, so multi-process runs should prepare once up front.
    """
    return tfds_common.prepare_builtin(JaxperfDigits, NAME, data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Prepare {NAME} for --data_dir.")
    parser.add_argument("--data_dir", required=True, help="tfds data directory to build into")
    builder = prepare(parser.parse_args(argv).data_dir)
    print(f"{NAME} ready in {builder.data_dir}")


if __name__ == "__main__":
    main()
