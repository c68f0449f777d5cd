"""int8 on the real ImageNet path: a tiny ImageNet in ILSVRC2012's own tars, prepared by
tfds's builder, trained and served at the reference preprocessing (224x224 crops), with
int8 calibrated on a list of validation file names as MLPerf's ImageNet calibration is.
Accuracy mode only: nothing here compares times, so it runs with the parallel tests."""

import json
import os

import numpy as np

from tests.helpers import run_infer, run_main
from tools import make_tiny_imagenet

CLASSES, TRAIN_PER_CLASS, VAL = 30, 8, 32
TRAIN = ["--division=open", "--config.model=resnet_tiny224", "--config.global_batch_size=16",
         "--config.base_lr=1.0", "--config.warmup_epochs=1", "--config.train_epochs=24",
         "--config.max_epochs=24", "--config.epochs_per_block=4",
         "--config.eval_offset_epochs=4", "--config.label_smoothing=0.0",
         "--config.target_value=0.85"]


def _accuracy(workdir) -> dict:
    with open(os.path.join(workdir, "Offline", "accuracy", "result.json")) as f:
        return json.load(f)


def test_int8_keeps_99_percent_of_fp32_on_real_format_imagenet(tmp_path):
    cache = str(tmp_path / "cache")
    data_dir = make_tiny_imagenet.make(str(tmp_path / "imagenet"), classes=CLASSES,
                                       train_per_class=TRAIN_PER_CLASS, val=VAL)
    train = str(tmp_path / "train")
    proc = run_main([f"--data_dir={data_dir}", f"--workdir={train}", *TRAIN], cache)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(train, "final_weights.json")) as f:
        trained_top1 = json.load(f)["metrics"]["top1"]
    # MLPerf calibrates ImageNet on 500 listed validation images; here the first 16.
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("".join(f"ILSVRC2012_val_{n:08d}.JPEG\n" for n in range(1, 17)))
    served = {}
    for precision in ("fp32", "int8"):
        workdir = str(tmp_path / precision)
        # The reference preset's config with the model named: the checkpoint must match it.
        args = [f"--checkpoint={train}", f"--data_dir={data_dir}",
                "--config.model=resnet_tiny224", f"--workdir={workdir}",
                f"--precision={precision}", "--scenario=Offline", "--mode=accuracy"]
        if precision == "int8":
            args.append(f"--calibration_list={calibration}")
        proc = run_infer(args, cache)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        served[precision] = _accuracy(workdir)
    fp32, int8 = served["fp32"], served["int8"]
    assert fp32["answered"] == int8["answered"] == VAL
    assert fp32["top1"] == trained_top1  # the training eval's reader and preprocessing
    # MLPerf's int8 rule: at least 99 % of the fp32 top-1, by int8 matmuls.
    assert fp32["top1"] >= 0.85
    assert int8["top1"] >= 0.99 * fp32["top1"], (int8["top1"], fp32["top1"])
    assert int8["matmul_input_types"].get("s8xs8", 0) > 0
    # Exactly the 16 listed validation images, at the eval preprocessing's 224x224.
    with np.load(tmp_path / "int8" / "calibration.npz") as f:
        assert f["image"].shape == (16, 224, 224, 3)
