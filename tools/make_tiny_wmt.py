"""Writes a tiny WMT English-German in tfds's real prepared format, so that tfds's own
registered builders read it: `tfds.builder("wmt17_translate/de-en", data_dir=OUT)` and
`tfds.builder("wmt14_translate/de-en", data_dir=OUT)`, exactly as the benchmark opens the
real data.

    python -m tools.make_tiny_wmt --out /tmp/tiny_wmt [--train_examples 2000 ...]
    # then: --data_dir /tmp/tiny_wmt

Written under <out>/:
  wmt17_translate/de-en/1.0.0   splits train and validation (the benchmark trains on train)
  wmt14_translate/de-en/1.0.0   split test (newstest2014, the benchmark's eval set)
The sentences are pairs of the built-in jaxperf_numbers_translate corpus, which needs no
download. The real WMT builders can only download gigabytes, so each copy is written by a
subclass of tfds's own builder class that keeps its name, config, version and features and
only replaces where the examples come from.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

from common.errors import UserError
from flags import flagfile
from input_pipelines import tfds_common

TRAIN_DATASET = "wmt17_translate/de-en"
EVAL_DATASET = "wmt14_translate/de-en"


@functools.cache
def _builder_class(dataset: str):
    """A subclass of tfds's registered builder `dataset` whose examples are given, not downloaded.

    Cached: tfds keeps every builder class it has seen, so make one per dataset, not per call.
    """
    _, tfds = tfds_common.tf_modules()  # TensorFlow imported quietly

    registered = tfds.builder_cls(dataset)

    class GivenExamples(registered, skip_registration=True):
        # The registered name, config, version and features: tfds.builder(name) reads it.
        name = registered.name

        def _split_generators(self, dl_manager):
            del dl_manager  # the examples are given
            return {split: self._generate_examples(split) for split in self.given_splits}

        def _generate_examples(self, split):
            for i, (en, de) in enumerate(self.given_splits[split]):
                yield i, {"en": en, "de": de}

    # Recorded in dataset_info.json as moduleName; set after class creation so that tfds's
    # per-module list of builders is not given this class.
    GivenExamples.__module__ = registered.__module__
    return GivenExamples


def write_dataset(data_dir: str, name: str, splits: dict[str, list[tuple[str, str]]]) -> None:
    """Prepares `name` ('wmt17_translate/de-en', ...) under data_dir with the given
    {split: [(English, German), ...]}; only those splits exist afterwards."""
    _, tfds = tfds_common.tf_modules()  # TensorFlow imported quietly

    dataset, config = name.split("/")
    builder = _builder_class(dataset)(data_dir=data_dir, config=config)
    if os.path.exists(builder.data_dir):
        raise UserError(f"{builder.data_dir} already exists; delete it or pass another --out")
    builder.given_splits = splits
    tfds.disable_progress_bar()
    with tempfile.TemporaryDirectory() as download_dir:
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )


def make(
    out_dir: str,
    *,
    train_examples: int = 2000,
    validation_examples: int = 100,
    test_examples: int = 200,
) -> str:
    """Writes both tiny WMT datasets under out_dir; returns out_dir, the --data_dir to use."""
    from input_pipelines import numbers_translate

    train, held_out = numbers_translate.pairs("train"), numbers_translate.pairs("test")
    # Validation and test come from the corpus's test pairs, disjoint from train and each other.
    if not (
        1 <= train_examples <= len(train)
        and validation_examples >= 1
        and test_examples >= 1
        and validation_examples + test_examples <= len(held_out)
    ):
        raise UserError(
            f"need 1 <= --train_examples <= {len(train)} and --test_examples, "
            f"--validation_examples >= 1 with a sum <= {len(held_out)}; got {train_examples}, "
            f"{test_examples}, {validation_examples}"
        )
    write_dataset(
        out_dir,
        TRAIN_DATASET,
        {"train": train[:train_examples], "validation": held_out[-validation_examples:]},
    )
    write_dataset(out_dir, EVAL_DATASET, {"test": held_out[:test_examples]})
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="tfds data directory to write into")
    parser.add_argument("--train_examples", type=int, default=2000)
    parser.add_argument("--validation_examples", type=int, default=100)
    parser.add_argument("--test_examples", type=int, default=200)
    args = parser.parse_args(flagfile.expand(argv))
    start = time.perf_counter()
    try:
        data_dir = make(
            args.out,
            train_examples=args.train_examples,
            validation_examples=args.validation_examples,
            test_examples=args.test_examples,
        )
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {TRAIN_DATASET} and {EVAL_DATASET} in {time.perf_counter() - start:.1f}s; "
          f"use --data_dir {data_dir}")


if __name__ == "__main__":
    main()
