"""The ResNet-50 input pipeline on real JPEG data: the built-in digits and a tiny ImageNet
that tfds's own imagenet2012 builder prepares from ILSVRC2012-layout tars."""

import collections
import io
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from common.errors import UserError
from input_pipelines import digits
from input_pipelines import image_classification as ic
from tools import make_tiny_imagenet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    data_dir = str(tmp_path_factory.mktemp("digits"))
    digits.prepare(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def digits_builder(digits_dir):
    return ic.open_builder(digits.NAME, digits_dir)


@pytest.fixture(scope="session")
def tiny_imagenet(tmp_path_factory) -> tuple[str, str]:
    out = str(tmp_path_factory.mktemp("tiny_imagenet"))
    return out, make_tiny_imagenet.make(out, classes=4, train_per_class=3, val=8)


def _real_rows(batches) -> collections.Counter:
    """Multiset of (label, image bytes) over unmasked rows: identifies examples exactly."""
    rows = collections.Counter()
    for batch in batches:
        mask = batch.get("mask", np.ones(len(batch["label"])))
        for image, label, keep in zip(batch["image"], batch["label"], mask, strict=True):
            if keep:
                rows[(int(label), image.tobytes())] += 1
    return rows


def _eval(builder, split="validation", **kwargs) -> list[dict]:
    args = {"local_batch_size": 64, "image_size": 32, "process_index": 0, "process_count": 1}
    return list(ic.eval_batches(builder, split=split, **(args | kwargs)))


def _train(builder, batches=1, **kwargs) -> list[dict]:
    args = {"split": "train", "local_batch_size": 16, "image_size": 24, "seed": 0}
    args |= {"process_index": 0, "process_count": 1}
    iterator = ic.train_batches(builder, **(args | kwargs))
    return [next(iterator) for _ in range(batches)]


def test_digits_dataset_is_jpeg_like_imagenet(digits_dir, digits_builder):
    info = digits_builder.info
    assert {name: s.num_examples for name, s in info.splits.items()} == {
        "train": 1500,
        "validation": 297,
    }
    assert info.features["image"].encoding_format == "jpeg"
    assert info.features["image"].shape == (32, 32, 3)
    assert info.features["label"].num_classes == 10
    assert digits.prepare(digits_dir).data_dir == digits_builder.data_dir  # idempotent


def test_train_batches_are_uint8_pixels(digits_builder):
    (batch,) = _train(digits_builder)
    assert batch["image"].shape == (16, 24, 24, 3)
    assert batch["image"].dtype == np.uint8  # the model normalises them on the device
    assert batch["label"].dtype == np.int32
    assert set(batch["label"]) <= set(range(10))
    assert batch["image"].max() > 100 and len(np.unique(batch["image"])) > 50


def test_the_model_normalises_pixels_with_imagenet_statistics():
    from models import resnet

    mean, std = np.array(resnet.MEAN_RGB), np.array(resnet.STD_RGB)
    pixels = np.array([[0, 0, 0], [255, 255, 255], [124, 116, 104]], np.uint8)
    np.testing.assert_allclose(resnet.normalize(pixels), (pixels - mean) / std, atol=1e-5)
    np.testing.assert_allclose(resnet.normalize(np.float32(mean)), 0.0, atol=1e-6)


def test_train_batches_follow_the_seed(digits_builder):
    first, again, other = (_train(digits_builder, batches=2, seed=s) for s in (0, 0, 1))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_train_shards_are_disjoint_and_cover_the_split(digits_builder):
    # Whole-image crops and no flip make each training row a pure function of its example,
    # so it can be matched against an eval pass over the same split.
    whole_image = {"min_crop_area": 1.0, "random_flip": False, "fallback_crop_fraction": 1.0}
    shards = [
        _real_rows(
            _train(
                digits_builder,
                batches=3,  # 3 x 250 = one epoch of a 750-example shard
                local_batch_size=250,
                image_size=32,
                process_index=index,
                process_count=2,
                **whole_image,
            )
        )
        for index in range(2)
    ]
    assert sum(shards[0].values()) == sum(shards[1].values()) == 750
    assert not shards[0].keys() & shards[1].keys()
    everything = _real_rows(_eval(digits_builder, split="train", resize_ratio=1.0))
    assert shards[0] + shards[1] == everything


def test_eval_single_process(digits_builder):
    batches = _eval(digits_builder)
    assert len(batches) == ic.eval_steps(digits_builder, "validation", 64) == 5
    for batch in batches:
        assert batch["image"].shape == (64, 32, 32, 3)
        assert batch["image"].dtype == np.uint8
        assert batch["label"].dtype == np.int32
        assert batch["mask"].dtype == np.float32
    masks = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(masks, np.arange(320) < 297)  # padding only at the end
    assert sum(_real_rows(batches).values()) == 297


@pytest.mark.parametrize(
    ("process_count", "batch_size"),
    [
        (2, 148),  # shards 149 / 148: the second needs one fully masked batch
        (3, 16),  # shards 99 x 3: each pads its last batch
    ],
)
def test_eval_covers_each_example_once_across_processes(digits_builder, process_count, batch_size):
    steps = ic.eval_steps(digits_builder, "validation", batch_size * process_count)
    combined = collections.Counter()
    real_per_process = []
    for index in range(process_count):
        batches = _eval(
            digits_builder,
            local_batch_size=batch_size,
            process_index=index,
            process_count=process_count,
        )
        assert len(batches) == steps
        for batch in batches:
            assert batch["image"].shape[0] == batch["mask"].shape[0] == batch_size
            assert not batch["image"][batch["mask"] == 0].any()  # padding is zeros
        real_per_process.append(int(sum(b["mask"].sum() for b in batches)))
        combined += _real_rows(batches)
    assert sum(real_per_process) == 297
    assert max(real_per_process) - min(real_per_process) <= 1
    assert combined == _real_rows(_eval(digits_builder))


def test_tiny_imagenet_built_by_real_tfds_builder(tiny_imagenet):
    out, data_dir = tiny_imagenet
    manual = os.path.join(out, "manual")
    with tarfile.open(os.path.join(manual, make_tiny_imagenet.TRAIN_TAR)) as train_tar:
        class_tars = train_tar.getnames()
        inner = io.BytesIO(train_tar.extractfile(class_tars[0]).read())
    with tarfile.open(fileobj=inner) as first_class:
        assert first_class.getnames() == [f"{class_tars[0][:-4]}_{k}.JPEG" for k in (1, 2, 3)]
    synsets = [name[: -len(".tar")] for name in class_tars]
    with tarfile.open(os.path.join(manual, make_tiny_imagenet.VAL_TAR)) as val_tar:
        assert val_tar.getnames() == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 9)]

    builder = ic.open_builder("imagenet2012", data_dir)
    assert builder.info.features["label"].num_classes == 1000
    assert ic.num_examples(builder, "train") == 12
    assert ic.num_examples(builder, "validation") == 8
    names = builder.info.features["label"].int2str

    epoch = _train(builder, batches=3, local_batch_size=4, image_size=224)
    assert epoch[0]["image"].shape == (4, 224, 224, 3)
    train_labels = collections.Counter(names(int(x)) for b in epoch for x in b["label"])
    assert train_labels == {synset: 3 for synset in synsets}

    batches = _eval(builder, local_batch_size=8, image_size=224)
    assert [b["image"].shape for b in batches] == [(8, 224, 224, 3)]
    assert batches[0]["mask"].sum() == 8
    val_labels = collections.Counter(names(int(x)) for x in batches[0]["label"])
    # tfds labels validation images from the validation_labels.txt it ships.
    expected = make_tiny_imagenet._tfds_text_lines("datasets/imagenet2012/validation_labels.txt")
    assert val_labels == collections.Counter(expected[:8])
    assert set(synsets) <= set(expected[:8])  # classes chosen from the validation images


def test_eval_with_more_processes_than_examples(tiny_imagenet):
    builder = ic.open_builder("imagenet2012", tiny_imagenet[1])
    per_process = [
        _eval(builder, local_batch_size=1, process_index=index, process_count=10)
        for index in range(10)
    ]
    assert [len(batches) for batches in per_process] == [1] * 10
    assert [int(b[0]["mask"].sum()) for b in per_process] == [1] * 8 + [0] * 2


def test_make_tiny_imagenet_refuses_to_overwrite(tiny_imagenet):
    with pytest.raises(UserError, match="already holds imagenet2012"):
        make_tiny_imagenet.make(tiny_imagenet[0])


def _user_error(call, *args) -> str:
    with pytest.raises(UserError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_open_builder_missing_dir(tmp_path):
    missing = str(tmp_path / "nowhere")
    message = _user_error(ic.open_builder, digits.NAME, missing)
    assert missing in message and "--data_dir" in message


def test_open_builder_empty_dir(tmp_path):
    message = _user_error(ic.open_builder, digits.NAME, str(tmp_path))
    assert f"no prepared jaxperf_digits under {tmp_path}" in message
    assert "python -m input_pipelines.digits" in message
    message = _user_error(ic.open_builder, "imagenet2012", str(tmp_path))
    assert "no prepared imagenet2012" in message and "make_tiny_imagenet" in message


def test_open_builder_corrupt_dataset_info(digits_dir, tmp_path):
    shutil.copytree(os.path.join(digits_dir, digits.NAME), tmp_path / digits.NAME)
    info = tmp_path / digits.NAME / "1.0.0" / "dataset_info.json"
    info.write_text('{"name": "jaxperf_dig')
    message = _user_error(ic.open_builder, digits.NAME, str(tmp_path))
    assert "unreadable dataset_info" in message and "prepare it again" in message
    message = _user_error(digits.prepare, str(tmp_path))
    assert "unreadable jaxperf_digits" in message


def test_damaged_records_raise_user_error(digits_dir, tmp_path):
    shutil.copytree(os.path.join(digits_dir, digits.NAME), tmp_path / digits.NAME)
    (record,) = (tmp_path / digits.NAME / "1.0.0").glob("*validation.tfrecord*")
    data = bytearray(record.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"x" * 64
    record.write_bytes(bytes(data))
    builder = ic.open_builder(digits.NAME, str(tmp_path))
    message = _user_error(_eval, builder)
    assert "damaged" in message and "corrupted record" in message


def test_unknown_split(digits_builder):
    message = _user_error(ic.num_examples, digits_builder, "valid")
    assert "'validation'" in message


def test_importable_and_clear_without_tensorflow(tmp_path):
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
        "from input_pipelines import image_classification as ic\n"
        "from common.errors import UserError\n"
        "try:\n"
        f"    ic.open_builder('imagenet2012', {str(tmp_path)!r})\n"
        "except UserError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=os.environ | {"PYTHONPATH": REPO_ROOT},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "needs TensorFlow" in result.stdout


def test_a_calibration_list_selects_those_images(tiny_imagenet):
    """MLPerf's calibration list names ImageNet files (validation ones); those, and only
    those, are read, at eval preprocessing (what calibration sees is what serving sees)."""
    _, data_dir = tiny_imagenet
    builder = ic.open_builder("imagenet2012", data_dir)
    names = sorted(ex["file_name"].decode() for ex in
                   builder.as_dataset(split="train").as_numpy_iterator())
    assert len(names) == 12
    chosen = [names[0], names[5], names[11]]
    images = ic.selected_images(builder, split="train", image_size=224, file_names=chosen)
    assert images.shape == (3, 224, 224, 3) and images.dtype == np.uint8
    # The same pixels as the eval pipeline's center crop of each chosen file.
    import tensorflow_datasets as tfds

    by_name = {}
    center = ic._center_crop(224, 0.875)
    for ex in builder.as_dataset(split="train",
                                 decoders={"image": tfds.decode.SkipDecoding()}):
        name = ex["file_name"].numpy().decode()
        if name in chosen:
            by_name[name] = center(ex["image"]).numpy()
    expected = {by_name[n].tobytes() for n in chosen}
    assert {image.tobytes() for image in images} == expected
    with pytest.raises(UserError, match="1 of the 2 listed files are not in split 'train'"):
        ic.selected_images(builder, split="train", image_size=224,
                           file_names=[names[0], "n99999999_1.JPEG"])
