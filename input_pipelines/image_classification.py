"""tf.data readers for JPEG image-classification datasets prepared by tfds (imagenet2012,
jaxperf_digits): Inception-style training crops, center-crop evaluation, host-local batches.

Images leave the host as uint8 pixels, normalised by the model inside the jitted step: a
quarter of float32's bytes on the host-to-device link (a ResNet-50 batch of 512 at 224 px
is 77 MB instead of 308 MB), and tf.data's threads skip a float pass per pixel.

TensorFlow is imported inside the functions so that synthetic-data runs, and machines
without TensorFlow, can import this module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import numpy as np

from common.errors import UserError
from input_pipelines.tfds_common import one_line, open_prepared, tf_modules

# Inception crop shape limits, as in the MLPerf ResNet-50 reference.
_ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
_CROP_ATTEMPTS = 10

_PREPARE_HINTS = {
    "imagenet2012": "`tfds build imagenet2012 --data_dir=DATA_DIR --manual_dir=DIR_WITH_THE"
    "_ILSVRC2012_TARS` (or `python -m tools.make_tiny_imagenet --out DIR` for a tiny test copy)",
    "jaxperf_digits": "`python -m input_pipelines.digits --data_dir DATA_DIR`",
}


def open_builder(name: str, data_dir: str):  # -> tfds.core.DatasetBuilder
    """Returns tfds's builder for `name` prepared under `data_dir`, or raises UserError."""
    if not data_dir or not os.path.isdir(data_dir):
        raise UserError(
            f"data_dir {data_dir!r} does not exist; pass --data_dir pointing at a tfds data "
            f"directory that holds a prepared {name}"
        )
    hint = _PREPARE_HINTS.get(name, f"tfds build {name} --data_dir=DATA_DIR").replace(
        "DATA_DIR", data_dir
    )
    return open_prepared(name, data_dir, hint)


def num_examples(builder, split: str) -> int:
    """Examples in `split` (tfds slicing syntax such as 'train[:10%]' allowed)."""
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError) as e:
        raise UserError(
            f"split {split!r} is not in {builder.info.full_name} in {builder.data_dir} "
            f"({one_line(e)}); pick one of {sorted(builder.info.splits.keys())}"
        ) from e


def eval_steps(builder, split: str, global_batch_size: int) -> int:
    """Batches every process yields from eval_batches: one pass, last batch padded."""
    return math.ceil(num_examples(builder, split) / global_batch_size)


def _process_shard(builder, split: str, process_index: int, process_count: int):
    """(this process's contiguous slice of `split`, its size); slices cover it exactly once."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    _, tfds = tf_modules()
    num_examples(builder, split)  # a bad split name fails here, with the split's own name
    shard = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
    return shard, num_examples(builder, shard)


def _center_window(jpeg_shape, crop_fraction: float):
    """Square [y, x, h, w] window of crop_fraction x the shorter side, centred."""
    tf, _ = tf_modules()
    height, width = jpeg_shape[0], jpeg_shape[1]
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def _pixels(image):
    """A resized float image -> uint8, rounded to the nearest level (resizing is bilinear,
    so its values lie between the decoded uint8 ones)."""
    tf, _ = tf_modules()
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _to_numpy(dataset, builder) -> Iterator[dict[str, np.ndarray]]:
    """tfds.as_numpy, with damaged data files reported as UserError rather than TF traces."""
    tf, tfds = tf_modules()
    where = f"{builder.info.full_name} in {builder.data_dir}"
    # Bound now: at interpreter exit, closing an unfinished generator evaluates the except
    # clauses after TensorFlow's module attributes have already been torn down.
    damaged = (tf.errors.DataLossError, tf.errors.NotFoundError)
    invalid = tf.errors.InvalidArgumentError
    try:
        yield from tfds.as_numpy(dataset)
    except damaged as e:
        raise UserError(
            f"data files of {where} are damaged or missing ({one_line(e)}); prepare it again"
        ) from e
    except invalid as e:
        if "jpeg" not in str(e).lower():
            raise  # a pipeline bug, not bad data: keep the traceback
        raise UserError(
            f"an image in {where} is not a readable JPEG ({one_line(e)}); prepare it again"
        ) from e


def train_batches(
    builder,
    *,
    split: str,
    local_batch_size: int,
    image_size: int,
    process_index: int,
    process_count: int,
    seed: int,
    min_crop_area: float = 0.08,
    random_flip: bool = True,
    min_object_covered: float = 0.1,
    fallback_crop_fraction: float = 0.875,
    shuffle_buffer_size: int = 10_000,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless host-local batches {'image': uint8 [B, S, S, 3], 'label': int32 [B]}.

    Reads only this process's shard of `split`. Everything random derives from
    (seed, process_index), so a rerun with the same arguments yields the same batches.
    """
    tf, tfds = tf_modules()
    shard, shard_size = _process_shard(builder, split, process_index, process_count)
    if shard_size == 0:
        raise UserError(
            f"split {split!r} of {builder.info.full_name} has {num_examples(builder, split)} "
            f"examples, too few to give each of {process_count} processes one to train on"
        )
    file_seed, shuffle_seed, augment_seed = (
        int(s) for s in np.random.SeedSequence([seed, process_index]).generate_state(3)
    )

    def preprocess(index, example):
        # Stateless ops keyed by the example's position in the stream: deterministic even
        # with parallel map, unlike stateful tf.random ops whose order depends on threads.
        crop_seed = tf.stack([tf.constant(augment_seed, tf.int64), index])
        flip_seed = tf.stack([tf.constant(augment_seed + 1, tf.int64), index])
        jpeg = example["image"]
        jpeg_shape = tf.io.extract_jpeg_shape(jpeg)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            jpeg_shape,
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=crop_seed,
            min_object_covered=min_object_covered,
            aspect_ratio_range=_ASPECT_RATIO_RANGE,
            area_range=(min_crop_area, 1.0),
            max_attempts=_CROP_ATTEMPTS,
            use_image_if_no_bounding_boxes=True,
        )
        # After _CROP_ATTEMPTS misses the op returns the whole image; a center crop like
        # eval's keeps object scale closer to what the model sees at eval time.
        missed = tf.reduce_all(tf.equal(size[:2], jpeg_shape[:2]))
        window = tf.where(
            missed,
            _center_window(jpeg_shape, fallback_crop_fraction),
            tf.stack([begin[0], begin[1], size[0], size[1]]),
        )
        image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
        image = tf.image.resize(image, [image_size, image_size], method="bilinear")
        if random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return {
            "image": _pixels(image),
            "label": tf.cast(example["label"], tf.int32),
        }

    dataset = builder.as_dataset(
        split=shard,
        shuffle_files=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=file_seed),
    )
    # Shuffle encoded JPEGs (small) before decoding (large); reshuffled every epoch.
    dataset = dataset.shuffle(shuffle_buffer_size, seed=shuffle_seed).repeat().enumerate()
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(local_batch_size, drop_remainder=True)
    return _to_numpy(dataset.prefetch(tf.data.AUTOTUNE), builder)


def _center_crop(image_size, resize_ratio):
    """JPEG bytes -> the eval image: what every eval, inference sample and calibration
    image goes through, so that all three see the same pixels."""
    tf, _ = tf_modules()

    def crop(jpeg):
        # Cropping resize_ratio x the shorter side and resizing to image_size selects the
        # same pixels as "resize shorter side to image_size / resize_ratio, center-crop
        # image_size", but decodes only the crop.
        window = _center_window(tf.io.extract_jpeg_shape(jpeg), resize_ratio)
        image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
        image = tf.image.resize(image, [image_size, image_size], method="bilinear")
        return _pixels(image)

    return crop


def selected_images(
    builder,
    *,
    split: str,
    image_size: int,
    file_names: Sequence[str] | None = None,
    count: int | None = None,
    resize_ratio: float = 0.875,
) -> np.ndarray:
    """Images of `split` at eval preprocessing, in split order: those named in file_names
    (every name must be there), or else the first `count`. A calibration set is read so."""
    tf, tfds = tf_modules()
    num_examples(builder, split)
    if "file_name" not in builder.info.features:
        raise UserError(f"{builder.info.full_name} has no file names to select images by")
    wanted = None if file_names is None else set(file_names)
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    if wanted is not None:
        names = tf.constant(sorted(wanted))
        dataset = dataset.filter(lambda ex: tf.reduce_any(tf.equal(
            tf.strings.split(ex["file_name"], "/")[-1], names)))
    elif count is not None:
        dataset = dataset.take(count)
    center = _center_crop(image_size, resize_ratio)
    dataset = dataset.map(lambda ex: {"image": center(ex["image"]), "file_name": ex["file_name"]},
                          num_parallel_calls=tf.data.AUTOTUNE)
    images, found = [], set()
    for example in _to_numpy(dataset.batch(256).prefetch(tf.data.AUTOTUNE), builder):
        images.append(example["image"])
        found.update(n.decode().split("/")[-1] for n in example["file_name"])
    if wanted is not None and found != wanted:
        missing = sorted(wanted - found)
        raise UserError(
            f"{len(missing)} of the {len(wanted)} listed files are not in split {split!r} of "
            f"{builder.info.full_name} (first: {missing[0]}); pass the list that goes with "
            "this dataset")
    if not images:
        raise UserError(f"split {split!r} of {builder.info.full_name} selected no images")
    return np.concatenate(images)


def eval_batches(
    builder,
    *,
    split: str,
    local_batch_size: int,
    image_size: int,
    process_index: int,
    process_count: int,
    resize_ratio: float = 0.875,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `split`: {'image' uint8, 'label' int32, 'mask' float32 (1 real, 0 pad)}.

    Across processes every example appears exactly once, and every process yields the same
    eval_steps(...) full-size batches (padded with mask 0), so collective eval steps line up.
    """
    tf, tfds = tf_modules()
    shard, shard_size = _process_shard(builder, split, process_index, process_count)
    steps = eval_steps(builder, split, local_batch_size * process_count)

    center = _center_crop(image_size, resize_ratio)

    def preprocess(example):
        return {
            "image": center(example["image"]),
            "label": tf.cast(example["label"], tf.int32),
            "mask": tf.constant(1.0, tf.float32),
        }

    padding = tf.data.Dataset.from_tensors(
        {
            "image": tf.zeros([image_size, image_size, 3], tf.uint8),
            "label": tf.constant(0, tf.int32),
            "mask": tf.constant(0.0, tf.float32),
        }
    ).repeat()
    if shard_size:
        dataset = builder.as_dataset(
            split=shard, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
        )
        dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    else:  # more processes than examples: this one only keeps the collective steps in line
        dataset = padding.take(0)
    # Endless padding, cut at `steps` full batches: pads the last real batch and adds whole
    # padding batches where this process's shard is shorter than the longest one.
    dataset = dataset.concatenate(padding).batch(local_batch_size, drop_remainder=True)
    return _to_numpy(dataset.take(steps).prefetch(tf.data.AUTOTUNE), builder)
