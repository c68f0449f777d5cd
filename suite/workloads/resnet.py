"""MLPerf image classification: ResNet-50 v1.5 on ImageNet to 75.9 % top-1, LARS."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from models import resnet as resnet_models
from suite import lars
from suite.hparams import Hparam, fixed
from suite.target import Target
from suite.workdir import cache_dir
from suite.workload import DataInfo, EvalSet, Workload, sum_outputs

IMAGENET_TRAIN, IMAGENET_EVAL = 1_281_167, 50_000


@functools.lru_cache(maxsize=8)
def _open_dataset(dataset: str, data_dir: str | None):
    """The tfds builder, opened (or, for built-in data, prepared) once per process:
    data_info, the train pipeline and every eval would otherwise each re-read its metadata."""
    from input_pipelines import image_classification

    if dataset == "jaxperf_digits":
        from input_pipelines import digits

        return digits.prepare(data_dir or cache_dir("tfds"))
    return image_classification.open_builder(dataset, data_dir)


def _warmup(cfg, steps_per_epoch: int) -> int:
    return int(round(cfg.warmup_epochs * steps_per_epoch))


def _train_epochs_from_decay_steps(decay_steps, logged: dict) -> dict:
    samples, batch = logged.get(C.TRAIN_SAMPLES), logged.get(C.GLOBAL_BATCH_SIZE)
    if not (decay_steps and samples and batch):
        return {}
    steps_per_epoch = math.ceil(samples / batch)
    warmup = float(logged.get(C.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS, 0.0))
    return {"train_epochs": round(decay_steps / steps_per_epoch + warmup)}


def _calibration_batches(calibration: dict, batch: int = 50):
    images = calibration["image"]
    return [images[i:i + batch] for i in range(0, len(images), batch)]


class ResNetWorkload(Workload):
    name = "resnet"
    benchmark = C.RESNET
    ruleset = "4.0.0"
    target = Target("top1", 0.759, "max")
    # MLPerf training rules, ResNet with LARS: what a closed submission may tune.
    closed_tunable = frozenset({"global_batch_size", "base_lr", "warmup_epochs", "train_epochs",
                                "momentum", "weight_decay", "eval_offset_epochs"})

    def reference_config(self, c):
        c.model = "resnet50"
        c.num_classes = 1000
        c.dataset = "imagenet2012"
        c.train_split, c.eval_split = "train", "validation"
        c.train_examples, c.eval_examples = IMAGENET_TRAIN, IMAGENET_EVAL
        c.image_size = 224
        c.min_crop_area = 0.08
        c.random_flip = True
        # The reference closed-division hyperparameters (batch 3,264, LARS).
        c.global_batch_size = 3264
        c.train_epochs = 41  # LR schedule length; the run stops at the target
        c.max_epochs = 41  # budget: past it the run is aborted
        c.epochs_per_block = 4  # MLPerf ResNet evaluates every 4 epochs
        c.eval_offset_epochs = 3  # first eval after 3 epochs, then every 4
        c.label_smoothing = 0.1
        c.base_lr = 10.5
        c.end_lr = 1e-4
        c.warmup_epochs = 2.0
        c.lr_decay_power = 2.0
        c.momentum = 0.9
        c.weight_decay = 5e-5
        c.lars_epsilon = 0.0
        c.lars_trust_coefficient = 0.001

    def tiny_preset(self, c):
        # Small ResNet on scikit-learn's real handwritten digits, 32x32.
        c.model = "resnet_tiny"
        c.num_classes = 10
        c.dataset = "jaxperf_digits"
        c.train_examples, c.eval_examples = 1500, 297
        c.image_size = 16  # stored at 32x32; 16 keeps each CPU epoch near a second
        c.min_crop_area = 0.6
        c.random_flip = False  # a mirrored 2 is not a 2
        c.target_value = 0.95
        c.global_batch_size = 128  # divides over 1, 2, 4 or 8 devices
        c.train_epochs = 14
        c.max_epochs = 14
        c.epochs_per_block = 1
        c.eval_offset_epochs = 1
        c.base_lr = 2.0
        c.warmup_epochs = 1.0
        c.weight_decay = 1e-4

    def validate(self, cfg, mesh_sizes):
        if cfg.model not in resnet_models.SHAPES:
            raise UserError(f"--config.model must be one of {', '.join(resnet_models.SHAPES)}, "
                            f"got {cfg.model!r}")
        super().validate(cfg, mesh_sizes)

    # ----- model ---------------------------------------------------------
    def _model(self, cfg) -> nn.Module:
        dtype = jnp.dtype(cfg.compute_dtype)
        return resnet_models.ResNet(**resnet_models.SHAPES[cfg.model],
                                    num_classes=cfg.num_classes, dtype=dtype)

    def learning_rate(self, cfg, data) -> optax.Schedule:
        steps_per_epoch = data.epoch_steps(cfg.global_batch_size)
        warmup = _warmup(cfg, steps_per_epoch)
        decay = cfg.train_epochs * steps_per_epoch - warmup
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, cfg.base_lr, max(warmup, 1)),
                optax.polynomial_schedule(cfg.base_lr, cfg.end_lr, cfg.lr_decay_power, decay),
            ],
            [warmup],
        )

    def optimizer(self, cfg, data) -> optax.GradientTransformation:
        # MLPerf's LARS leaves batch-norm parameters and biases out of both the
        # weight decay and the layer-wise trust ratio: only kernels get them.
        def kernels_only(params):
            return jax.tree_util.tree_map_with_path(
                lambda path, _: getattr(path[-1], "key", None) == "kernel", params
            )

        return lars.lars(
            self.learning_rate(cfg, data),
            weight_decay=cfg.weight_decay,
            trust_coefficient=cfg.lars_trust_coefficient,
            eps=cfg.lars_epsilon,
            momentum=cfg.momentum,
            mask=kernels_only,
        )

    def init_variables(self, cfg, rng):
        image = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.uint8)
        variables = self._model(cfg).init(rng, image, train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(self, cfg, params, model_state, batch, rng, *, mesh):
        del rng, mesh  # augmentation happens in the input pipeline
        logits, updates = self._model(cfg).apply(
            {"params": params, **model_state}, batch["image"], train=True,
            mutable=["batch_stats"])
        labels = optax.smooth_labels(
            jax.nn.one_hot(batch["label"], cfg.num_classes), cfg.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, labels).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, ({"train_top1": accuracy}, {"batch_stats": updates["batch_stats"]})

    def eval_step(self, cfg, params, model_state, batch, *, mesh):
        logits = self._model(cfg).apply({"params": params, **model_state}, batch["image"],
                                        train=False)
        correct = (jnp.argmax(logits, -1) == batch["label"]) * batch["mask"]
        return {"correct": correct.sum(), "count": batch["mask"].sum()}

    def finalize_eval(self, cfg, outputs, context):
        sums = sum_outputs(outputs)
        return {"top1": float(sums["correct"]) / max(float(sums["count"]), 1.0),
                "eval_examples": int(sums["count"])}

    # ----- data ----------------------------------------------------------
    def batch_spec(self, cfg, split, batch_size):
        # Pixels: the model normalises them inside the step (models/resnet.py).
        image = jax.ShapeDtypeStruct((batch_size, cfg.image_size, cfg.image_size, 3), jnp.uint8)
        spec = {"image": image, "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
        if split == "eval":
            spec["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
        return spec

    def synthetic_high(self, cfg):
        # Pixels over their whole range and labels over every class, as real batches have.
        return {"image": 256, "label": cfg.num_classes}

    def _builder(self, cfg, data_dir):
        return _open_dataset(cfg.dataset, data_dir or None)

    def data_info(self, cfg, data_dir):
        from input_pipelines import image_classification

        builder = self._builder(cfg, data_dir)
        return DataInfo(
            train_examples=image_classification.num_examples(builder, cfg.train_split),
            eval_examples=image_classification.num_examples(builder, cfg.eval_split),
            source=f"{cfg.dataset} from {builder.data_dir}",
        )

    def train_batches(self, cfg, data, *, local_batch_size, process_index, process_count,
                      seed):
        from input_pipelines import image_classification

        return image_classification.train_batches(
            self._builder(cfg, data.data_dir),
            split=cfg.train_split,
            local_batch_size=local_batch_size,
            image_size=cfg.image_size,
            process_index=process_index,
            process_count=process_count,
            seed=seed,
            min_crop_area=cfg.min_crop_area,
            random_flip=cfg.random_flip,
        )

    def eval_batches(self, cfg, data, *, local_batch_size, process_index, process_count):
        from input_pipelines import image_classification

        return EvalSet(image_classification.eval_batches(
            self._builder(cfg, data.data_dir),
            split=cfg.eval_split,
            local_batch_size=local_batch_size,
            image_size=cfg.image_size,
            process_index=process_index,
            process_count=process_count,
        ))

    # ----- serving -------------------------------------------------------
    inference_model = "resnet50"
    # The tiny preset's calibration set: the first 500 training images in file order
    # (digit_0000 ... of jaxperf_digits' train split), at eval preprocessing.
    TINY_CALIBRATION_COUNT = 500

    def model_fields(self, cfg):
        return {k: cfg[k] for k in ("model", "num_classes", "image_size")}

    def serving_inputs(self, cfg, data):
        from input_pipelines import image_classification

        batches = image_classification.eval_batches(
            self._builder(cfg, data.data_dir), split=cfg.eval_split, local_batch_size=256,
            image_size=cfg.image_size, process_index=0, process_count=1)
        for b in batches:
            real = b["mask"] > 0
            yield {"image": b["image"][real]}, b["label"][real]

    def calibration_inputs(self, cfg, data, names):
        from input_pipelines import image_classification

        if names is None and cfg.dataset != "jaxperf_digits":
            raise UserError(
                f"int8 on {cfg.dataset} needs the fixed calibration list: pass "
                "--calibration_list=FILE (for ImageNet, MLPerf's cal_image_list_option_1.txt)")
        # MLPerf's ImageNet list names 500 validation images (the rules' calibration set);
        # the tiny preset's default set is training data, so no eval image calibrates it.
        images = image_classification.selected_images(
            self._builder(cfg, data.data_dir), split=cfg.eval_split if names else cfg.train_split,
            image_size=cfg.image_size, file_names=names,
            count=None if names else self.TINY_CALIBRATION_COUNT)
        return {"image": images}

    def serving_model(self, cfg, params, model_state, precision, calibration):
        def answers(module):
            def apply(variables, inputs):
                logits = module.apply(variables, inputs["image"], train=False)
                return jnp.argmax(logits, -1).astype(jnp.int32)
            return apply

        if precision in ("fp32", "bf16"):
            dtype = jnp.float32 if precision == "fp32" else jnp.bfloat16
            module = self._model(cfg).clone(dtype=dtype)
            return answers(module), {"params": params, **model_state}
        # int8: batch norm folded into the convolutions first, then static w8a8.
        from suite.serving import quantize

        module = self._model(cfg).clone(dtype=jnp.float32, folded=True)
        folded = resnet_models.fold_batch_norm(params, model_state["batch_stats"])
        qmodule, qvariables = quantize.quantize_int8(module, {"params": folded},
                                                     _calibration_batches(calibration))
        return answers(qmodule), qvariables

    def weight_transformations(self, precision):
        if precision == "int8":
            return ("batch norm folded into the convolutions; int8 weights, symmetric, one "
                    "scale per output channel; static per-tensor int8 activation scales from "
                    "the calibration set (qwix post-training quantization)")
        return "none" if precision == "fp32" else "cast to bf16 at compute time"

    def default_calibration_note(self, cfg):
        return (f"The first {self.TINY_CALIBRATION_COUNT} images of {cfg.dataset}'s "
                f"{cfg.train_split!r} split in file order, at eval preprocessing (training "
                "data only: no eval image is ever used to calibrate).")

    def score_answers(self, cfg, answers, labels):
        return {"top1": float(np.mean(answers == labels))}

    # ----- reporting -----------------------------------------------------
    hparams = (
        fixed(C.OPT_NAME, C.LARS, must_match=True),
        Hparam(C.LARS_OPT_BASE_LEARNING_RATE, "base_lr"),
        Hparam(C.LARS_OPT_END_LR, "end_lr"),
        Hparam(C.LARS_OPT_LR_DECAY_POLY_POWER, log=lambda c, spe: int(c.lr_decay_power)),
        # The schedule length is logged in steps; ours is in epochs of this batch size.
        Hparam(C.LARS_OPT_LR_DECAY_STEPS, borrow=_train_epochs_from_decay_steps,
               log=lambda c, spe: c.train_epochs * spe - _warmup(c, spe)),
        Hparam(C.LARS_EPSILON, "lars_epsilon"),
        Hparam(C.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS, "warmup_epochs"),
        Hparam(C.LARS_OPT_MOMENTUM, "momentum"),
        Hparam(C.LARS_OPT_WEIGHT_DECAY, "weight_decay"),
        Hparam(C.MODEL_BN_SPAN, log=lambda c, spe: c.global_batch_size),
    )

    def flops_per_example(self, cfg):
        forward = resnet_models.forward_flops_per_example(
            num_classes=cfg.num_classes, image_size=cfg.image_size,
            **resnet_models.SHAPES[cfg.model])
        # Backward costs twice the forward (gradients w.r.t. inputs and weights).
        return 3.0 * forward
