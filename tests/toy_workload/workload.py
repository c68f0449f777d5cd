"""The glue: what jaxperf needs to know to train the linear model to 90 % top-1."""

import jax
import jax.numpy as jnp
import optax
from mlperf_logging.mllog import constants as C

from suite.hparams import Hparam, fixed
from suite.target import Target
from suite.workload import DataInfo, EvalSet, Workload, sum_outputs
from tests.toy_workload import data
from tests.toy_workload.model import Linear


class LinearDigits(Workload):
    name = "linear_digits"
    benchmark = C.RESNET  # image classification, open division: anything goes
    ruleset = "4.0.0"
    target = Target("top1", 0.90, "max")
    presets = ("tiny",)
    hparams = (fixed(C.OPT_NAME, "sgd", must_match=True),
               Hparam(C.OPT_BASE_LR, "base_lr"))

    def reference_config(self, c):
        c.global_batch_size = 64
        c.train_examples, c.eval_examples = data.sizes()
        c.max_epochs = c.train_epochs = 30  # 0.90 falls near epoch 20
        c.base_lr = 1.0

    def tiny_preset(self, c):
        pass  # the toy is tiny already

    def init_variables(self, cfg, rng):
        return Linear().init(rng, jnp.zeros((1, 64)))["params"], {}

    def learning_rate(self, cfg, data_info):
        return optax.constant_schedule(cfg.base_lr)

    def optimizer(self, cfg, data_info):
        return optax.sgd(self.learning_rate(cfg, data_info))

    def loss(self, cfg, params, model_state, batch, rng, *, mesh):
        logits = Linear().apply({"params": params}, batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, ({}, model_state)

    def eval_step(self, cfg, params, model_state, batch, *, mesh):
        logits = Linear().apply({"params": params}, batch["image"])
        correct = (jnp.argmax(logits, -1) == batch["label"]) * batch["mask"]
        return {"correct": correct.sum(), "count": batch["mask"].sum()}

    def finalize_eval(self, cfg, outputs, context):
        sums = sum_outputs(outputs)
        return {"top1": sums["correct"] / sums["count"], "eval_examples": int(sums["count"])}

    def batch_spec(self, cfg, split, batch_size):
        spec = {"image": jax.ShapeDtypeStruct((batch_size, 64), jnp.float32),
                "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
        if split == "eval":
            spec["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
        return spec

    def data_info(self, cfg, data_dir):
        train, held_out = data.sizes()
        return DataInfo(train, held_out, "scikit-learn digits (8x8)",
                        steps_per_epoch=train // cfg.global_batch_size)

    def train_batches(self, cfg, data_info, *, local_batch_size, process_index, process_count,
                      seed):
        return data.train_batches(local_batch_size, process_index, process_count, seed)

    def eval_batches(self, cfg, data_info, *, local_batch_size, process_index, process_count):
        return EvalSet(data.eval_batches(local_batch_size, process_index, process_count))

    def flops_per_example(self, cfg):
        return 3.0 * 2 * 64 * 10  # one 64x10 matmul forward, twice that backward
