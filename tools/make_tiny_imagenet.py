"""Writes a tiny ImageNet in the real ILSVRC2012 manual-download layout and lets tfds's own
imagenet2012 builder prepare it, so tests and users exercise the genuine prepare step.

    python -m tools.make_tiny_imagenet --out /tmp/tiny_imagenet [--classes 10 ...]
    # then: --data_dir /tmp/tiny_imagenet/tfds

Layout written under <out>/manual/, as image-net.org ships it:
  ILSVRC2012_img_train.tar  tar of per-synset tars n01440764.tar, each holding
                            n01440764_<k>.JPEG; tfds takes the label from the inner tar's name.
  ILSVRC2012_img_val.tar    flat ILSVRC2012_val_00000001.JPEG, ...; tfds labels the sorted
                            names from the validation_labels.txt it ships, so only the first
                            --val names can be used (the real files are numbered from 1).
No test tar is written: tfds logs that the test split is missing and prepares the others.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import time

import numpy as np

from common.errors import UserError
from flags import flagfile
from input_pipelines import tfds_common

DATASET = "imagenet2012"
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
NUM_VAL_IMAGES = 50_000
# Every 8th image is greyscale (ILSVRC2012 holds some; readers must turn them into RGB). A
# grey image keeps only the brightness of its class's hue, which two hues share, so it is
# label noise to a model: one in four made the trained models unsure of every class.
GREY_EVERY = 8


def _tfds_text_lines(relative_path: str) -> list[str]:
    """Lines of a file shipped inside tfds: the same label files its builder reads."""
    _, tfds = tfds_common.tf_modules()  # TensorFlow imported quietly

    return tfds.core.tfds_path(relative_path).read_text().split()


def _val_file_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _pick_synsets(classes: int, val_synsets: list[str], all_synsets: list[str]) -> list[str]:
    """Synsets of the written validation images first, so eval classes were trained on;
    topped up in tfds label order."""
    chosen = list(dict.fromkeys(val_synsets))[:classes]
    for synset in all_synsets:
        if len(chosen) == classes:
            break
        if synset not in chosen:
            chosen.append(synset)
    return chosen


def _jpeg(synset: str, palette: list[str], rng: np.random.Generator, grey: bool) -> bytes:
    """A small photo-like JPEG whose colour depends on the class, so the data is learnable:
    the classes written share the hue circle evenly (palette), so any two differ."""
    from PIL import Image

    # Varied, non-square sizes like real photos exercise the crop and resize arithmetic.
    height, width = (int(v) for v in rng.integers(40, 120, size=2))
    hue = palette.index(synset) / len(palette)
    base = 255 * (0.5 + 0.5 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3]))))
    ramp = np.linspace(-40, 40, width)[None, :, None]
    noise = rng.normal(0, 25, size=(height, width, 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    if grey:  # ILSVRC2012 has greyscale JPEGs too; readers must turn them into RGB.
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible archives
    tar.addfile(info, io.BytesIO(data))


def write_manual_dir(
    manual_dir: str, *, classes: int, train_per_class: int, val: int, seed: int = 0
) -> dict[str, list[str]]:
    """Writes the two ILSVRC2012 tars into manual_dir.

    Returns {'train': the synsets written, 'validation': the synset of each validation image}.
    """
    if not 1 <= classes <= 1000 or train_per_class < 1 or not 0 <= val <= NUM_VAL_IMAGES:
        raise UserError(
            f"need 1 <= --classes <= 1000, --train_per_class >= 1 and 0 <= --val <= "
            f"{NUM_VAL_IMAGES}; got {classes}, {train_per_class}, {val}"
        )
    all_synsets = _tfds_text_lines("datasets/imagenet2012/labels.txt")
    val_synsets = _tfds_text_lines("datasets/imagenet2012/validation_labels.txt")[:val]
    synsets = _pick_synsets(classes, val_synsets, all_synsets)
    palette = [s for s in all_synsets if s in set(synsets) | set(val_synsets)]
    rng = np.random.default_rng(seed)
    os.makedirs(manual_dir, exist_ok=True)

    with tarfile.open(os.path.join(manual_dir, TRAIN_TAR), "w") as train_tar:
        for synset in synsets:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for k in range(1, train_per_class + 1):
                    jpeg = _jpeg(synset, palette, rng, grey=k % GREY_EVERY == 0)
                    _add_bytes(class_tar, f"{synset}_{k}.JPEG", jpeg)
            _add_bytes(train_tar, f"{synset}.tar", inner.getvalue())

    if val:
        with tarfile.open(os.path.join(manual_dir, VAL_TAR), "w") as val_tar:
            for number, synset in enumerate(val_synsets, start=1):
                jpeg = _jpeg(synset, palette, rng, grey=number % GREY_EVERY == 0)
                _add_bytes(val_tar, _val_file_name(number), jpeg)
    return {"train": synsets, "validation": val_synsets}


def make(
    out_dir: str, *, classes: int = 10, train_per_class: int = 4, val: int = 20, seed: int = 0
) -> str:
    """Writes <out_dir>/manual and prepares it with tfds into <out_dir>/tfds; returns the
    latter, the --data_dir to read it from."""
    _, tfds = tfds_common.tf_modules()  # TensorFlow imported quietly

    data_dir = os.path.join(out_dir, "tfds")
    if os.path.exists(os.path.join(data_dir, DATASET)):
        raise UserError(
            f"{data_dir} already holds {DATASET}; delete {out_dir} or pass another --out"
        )
    manual_dir = os.path.join(out_dir, "manual")
    write_manual_dir(
        manual_dir, classes=classes, train_per_class=train_per_class, val=val, seed=seed
    )
    builder = tfds.builder(DATASET, data_dir=data_dir, try_gcs=False)
    # Nothing is downloaded, so the download folder would only be empty litter in data_dir.
    with tempfile.TemporaryDirectory() as download_dir:
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            ),
        )
    return data_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="new folder for manual/ and tfds/")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train_per_class", type=int, default=4)
    parser.add_argument("--val", type=int, default=20, help="first N validation images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(flagfile.expand(argv))
    start = time.perf_counter()
    try:
        data_dir = make(
            args.out,
            classes=args.classes,
            train_per_class=args.train_per_class,
            val=args.val,
            seed=args.seed,
        )
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"prepared {DATASET} in {time.perf_counter() - start:.1f}s; use --data_dir {data_dir}")


if __name__ == "__main__":
    main()
