"""The Workload contract: everything benchmark-specific, nothing about *how* it runs.

A workload never calls jax.jit, jax.devices() or the MLPerf logger; the lifecycle
(suite.lifecycle) and the loop its kind selects (suite.loops) own devices, compilation,
timing and logging. Steps are pure functions the runner jits with shardings of its choosing;
where a step places work by hand (shard_map) it is handed the mesh.
"""

import abc
import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from common.errors import UserError
from suite import hparams as hparams_lib
from suite import schedule as schedule_lib
from suite import training
from suite.config import base_config
from suite.hparams import Hparam
from suite.target import Target

Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Facts about the data a config trains on, found when the run starts (never written
    back into the config): sizes, where it lies, and files the workload resolved."""

    train_examples: int
    eval_examples: int
    source: str  # printed and logged: "imagenet2012 from /data", "synthetic", ...
    # Where one training example is not one batch row (packed sequences), the workload
    # says how many steps make an epoch; otherwise it is train_examples / global batch.
    steps_per_epoch: int | None = None
    data_dir: str | None = None
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. vocab_path

    def epoch_steps(self, global_batch_size: int) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(self.train_examples / global_batch_size)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """One pass over the eval split, and what scoring it needs besides the step outputs
    (a translation's reference sentences); handed to finalize_eval as it is."""

    batches: Iterable[Batch]
    context: Any = None
    # True: every iter(batches) is the same pass (e.g. the batches made once and kept), so
    # the loop asks for the set once per run and reads it again at each eval.
    replayable: bool = False


def sum_outputs(outputs: list[dict]) -> dict[str, float]:
    """Totals of per-batch eval sums: what most finalize_eval implementations start from."""
    return {k: float(np.sum([o[k] for o in outputs])) for k in outputs[0]} if outputs else {}


class Workload(abc.ABC):
    name: str  # registry key: --workload=<name>
    benchmark: str  # MLPerf submission_benchmark
    ruleset: str  # compliance checker ruleset version, e.g. "4.0.0"
    target: Target  # the closed-division target
    kind: str = "supervised"  # which loop trains it (suite.loops)
    presets: tuple[str, ...] = ("reference", "tiny")
    # Config fields (dotted) a closed-division run may change: the rules' tunable
    # hyperparameters. Everything else is fixed by the reference.
    closed_tunable: frozenset[str] = frozenset()
    # Fields of this workload that change how a run executes, not what it computes (free in
    # either division); suite.config.RUNTIME_FIELDS holds those every workload shares.
    runtime_fields: frozenset[str] = frozenset()
    # What --data_dir must hold, for messages that tell the user how to fix a run.
    data_dir_help: str = "the tfds data directory that holds the prepared dataset"
    # False where the reference preset may run without --data_dir (data_info says when
    # it may not: MiniGo needs one only for the target model it plays).
    data_dir_required: bool = True
    # The logged hyperparameters; both mllog_hparams and --borrow_hparams read them.
    hparams: tuple[Hparam, ...] = ()

    # ----- configuration -------------------------------------------------
    def config(self, preset: str) -> ml_collections.ConfigDict:
        """The full config of a preset: the reference, then the preset's changes."""
        if preset not in self.presets:
            raise UserError(f"unknown preset {preset!r}; choose one of "
                            f"{', '.join(self.presets)}")
        c = base_config(self.target.value)
        self.reference_config(c)
        if preset != "reference":
            getattr(self, f"{preset}_preset")(c)
        return c

    @abc.abstractmethod
    def reference_config(self, c: ml_collections.ConfigDict) -> None:
        """Adds the closed-division fields to the shared base (suite.config.base_config)."""

    def tiny_preset(self, c: ml_collections.ConfigDict) -> None:
        """The CPU-sized model on built-in data: changes to the reference config."""
        raise NotImplementedError

    def validate(self, cfg, mesh_sizes: Mapping[str, int]) -> None:
        """UserError for a config this workload cannot run (mesh divisibility, schedule
        fields, a missing checkpoint), raised while the config resolves: before any
        workdir exists. The default checks the epoch schedule's fields."""
        self.schedule(cfg, DataInfo(1, 1, "validation", steps_per_epoch=1))

    def target_for(self, cfg: ml_collections.ConfigDict) -> Target:
        """Presets may lower the bar (the tiny one does); closed runs use self.target."""
        return Target(self.target.metric, cfg.target_value, self.target.mode)

    def logical_axis_rules(self, cfg) -> list[tuple[str, Any]]:
        """Logical axis name -> mesh axis (or None). Default: pure data parallel."""
        return [("batch", ("data", "fsdp"))]

    def schedule(self, cfg, data: DataInfo) -> schedule_lib.Schedule:
        """Where evals fall. Default: whole-epoch blocks, the first eval_offset_epochs long."""
        return schedule_lib.EpochBlocks(
            data.epoch_steps(cfg.global_batch_size), max_epochs=cfg.max_epochs,
            epochs_per_block=cfg.epochs_per_block, offset_epochs=cfg.eval_offset_epochs)

    # ----- model and steps (pure) ----------------------------------------
    @abc.abstractmethod
    def init_variables(self, cfg, rng: jax.Array) -> tuple[Any, Any]:
        """(params, model_state): params may be boxed with flax logical partitioning;
        model_state holds untrained variables (batch statistics), {} where there are none."""

    @abc.abstractmethod
    def learning_rate(self, cfg, data: DataInfo) -> optax.Schedule:
        """The learning-rate schedule, optimizer step (from 0) -> lr: the one the optimizer
        is built with (recorders evaluate it on the host, never a copy of it)."""

    @abc.abstractmethod
    def optimizer(self, cfg, data: DataInfo) -> optax.GradientTransformation:
        """The optimizer, built with learning_rate(cfg, data)."""

    @abc.abstractmethod
    def loss(self, cfg, params, model_state, batch: Batch, rng: jax.Array, *,
             mesh) -> tuple[jax.Array, tuple[dict, Any]]:
        """(mean loss, (scalar metrics, new model_state)) of one (micro-)batch."""

    def init(self, cfg, data: DataInfo, rng: jax.Array) -> training.TrainState:
        params, model_state = self.init_variables(cfg, rng)
        return training.init_state(params, model_state, self.optimizer(cfg, data),
                                   ema=cfg.ema_decay > 0)

    def train_step(self, cfg, data: DataInfo, state, batch: Batch, rng: jax.Array, *,
                   mesh) -> tuple[Any, dict]:
        """One optimizer step: (new_state, scalar metrics incl. 'loss'). The shared helper
        by default, with gradient accumulation and the EMA; overridable."""
        loss = functools.partial(self.loss, cfg, mesh=mesh)
        return training.train_step(loss, self.optimizer(cfg, data), state, batch, rng,
                                   accum_steps=cfg.grad_accum_steps, ema_decay=cfg.ema_decay)

    def nonfinite_loss_cause(self, cfg, metrics: dict[str, Any]) -> str | None:
        """What made a step's loss, or an eval's metric, non-finite, where the step's
        metrics or finalize_eval's (host values) tell, and its fix: '<what happened>:
        <fix>'; None leaves the loop's general advice (the learning rate, the data)."""
        return None

    @abc.abstractmethod
    def eval_step(self, cfg, params, model_state, batch: Batch, *, mesh) -> dict:
        """Per-batch outputs of the weights eval scores (the EMA where kept): sums
        (correct, count) or per-example arrays (decoded tokens). They come back
        replicated, so every process sees the whole eval set's outputs."""

    @abc.abstractmethod
    def finalize_eval(self, cfg, outputs: list[dict[str, np.ndarray]],
                      context: Any) -> dict[str, float]:
        """Metrics from the host copies of every eval batch's outputs, in batch order, and
        the EvalSet's context; must include target.metric."""

    def eval_batch_size(self, cfg) -> int:
        """Global batch of the eval step; decoding workloads use a smaller one than training."""
        return cfg.get("eval_batch_size") or cfg.global_batch_size

    def initial_params(self, cfg, abstract_params) -> Any | None:
        """Host (NumPy) params to start from instead of the random init, e.g. a reference
        checkpoint; shaped like abstract_params. Loaded before run_start, as MLPerf's
        rules count checkpoint loading as initialization. None: the random init."""
        return None

    def artifacts(self, cfg, data: DataInfo) -> dict[str, str]:
        """Files a run depends on (name in the workdir -> path), copied into its workdir
        so that the run can be reproduced from the workdir alone (e.g. a vocabulary)."""
        return {}

    # ----- data ----------------------------------------------------------
    @abc.abstractmethod
    def batch_spec(self, cfg, split: str, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one batch: used for AOT compilation and synthetic data."""

    def batch_specs(self, cfg, split: str,
                    batch_size: int) -> list[dict[str, jax.ShapeDtypeStruct]]:
        """Every batch shape the split's pipeline yields (one per length bucket), each
        compiled before run_start; batch_spec's shape is the one benchmarks and synthetic
        data use. Default: that shape alone."""
        return [self.batch_spec(cfg, split, batch_size)]

    @abc.abstractmethod
    def data_info(self, cfg, data_dir: str | None) -> DataInfo:
        """Facts of the configured dataset; raises UserError if it is missing."""

    @abc.abstractmethod
    def train_batches(
        self, cfg, data: DataInfo, *, local_batch_size: int, process_index: int,
        process_count: int, seed: int,
    ) -> Iterator[Batch]:
        """Infinite iterator of this process's share of each global batch.

        Called before run_start: build the pipeline here, but read no data until the
        first next() (MLPerf's clock must cover every read of the data).
        """

    def train_batches_from(
        self, cfg, data: DataInfo, first: int, *, local_batch_size: int, process_index: int,
        process_count: int, seed: int,
    ) -> Iterator[Batch]:
        """train_batches from its batch `first` on: where a run resumed inside an epoch goes
        on. By default the batches before it are made and dropped; a pipeline that can pass
        over them without making them (reading no data) overrides this."""
        batches = self.train_batches(cfg, data, local_batch_size=local_batch_size,
                                     process_index=process_index,
                                     process_count=process_count, seed=seed)
        return itertools.islice(batches, first, None) if first else batches

    @abc.abstractmethod
    def eval_batches(
        self, cfg, data: DataInfo, *, local_batch_size: int, process_index: int,
        process_count: int,
    ) -> EvalSet:
        """One pass over the eval split; every process yields the same number of batches.

        Called at each eval, unless the EvalSet says it is replayable: then once per run."""

    def synthetic_data_info(self, cfg) -> DataInfo:
        """What a --data=synthetic run stands in for: the config's example counts."""
        return DataInfo(cfg.train_examples, cfg.eval_examples, "synthetic")

    def synthetic_eval_context(self, cfg) -> Any:
        """finalize_eval's context for synthetic eval batches (which carry no text)."""
        return None

    def synthetic_high(self, cfg) -> dict[str, np.ndarray]:
        """Exclusive upper bounds of integer batch fields in synthetic data; default 2.
        Lookup-bound models say how far ids spread, so throughput runs gather like real ones."""
        return {}

    # ----- serving (MLPerf inference, suite.infer) -------------------------
    # LoadGen's name of the model (its mlperf.conf keys, the submission's benchmark);
    # None: this workload is not served yet.
    inference_model: str | None = None
    answer_dtype: str = "int32"  # of each sample's answer in LoadGen's response buffers

    def model_fields(self, cfg) -> dict[str, Any]:
        """Config fields that fix the weights' shapes: a checkpoint must match them."""
        return {}

    def serving_inputs(self, cfg, data: DataInfo) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(inputs, labels) of every eval sample, in eval order, preprocessed exactly as the
        training eval sees them: the query sample library's samples."""
        raise UserError(f"{self.name} cannot be served yet (suite.infer)")

    def calibration_inputs(self, cfg, data: DataInfo, names: list[str] | None) -> dict:
        """The fixed calibration set of post-training quantization, never eval data: the
        listed training files, or the preset's documented default subset when names is None."""
        raise UserError(f"{self.name} has no int8 calibration set yet")

    def serving_model(self, cfg, params, model_state, precision: str,
                      calibration: dict | None) -> tuple[Any, Any]:
        """(apply, variables) at a precision ('fp32', 'bf16', 'int8'); apply(variables,
        inputs) -> one answer per sample (e.g. a class index) is pure and jittable.
        int8 gets its calibration inputs and may compute eagerly to calibrate."""
        raise UserError(f"{self.name} cannot be served yet (suite.infer)")

    def weight_transformations(self, precision: str) -> str:
        """What serving at this precision did to the trained weights (measurements.json)."""
        return "none"

    def default_calibration_note(self, cfg) -> str:
        """Which images the preset's default calibration set holds (calibration.md)."""
        return "none"

    def score_answers(self, cfg, answers: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Accuracy of the answers LoadGen logged, one per sample, in sample order."""
        raise NotImplementedError

    # ----- reporting -----------------------------------------------------
    def mllog_hparams(self, cfg, steps_per_epoch: int) -> dict[str, Any]:
        """Hyperparameters the benchmark's ruleset requires, keyed by mllog constants;
        a value is plain or a Logged(value, metadata). From the hparams table."""
        return hparams_lib.mllog_values(self.hparams, cfg, steps_per_epoch)

    def resolved_choices(self, cfg, mesh_sizes: Mapping[str, int]) -> dict[str, Any]:
        """jaxperf_* events for the log's set-up section: what the settings a run decides
        for itself ('auto') became on this mesh; values plain or Logged(value, metadata)."""
        return {}

    def check_closed(self, cfg) -> None:
        """Closed-division rules beyond which fields may change (UserError if broken)."""
        return None

    def config_from_hparams(self, logged: dict[str, Any]) -> dict[str, Any]:
        """Closed-tunable config values recovered from another run's logged hparams."""
        if not self.hparams:
            raise UserError(f"--borrow_hparams is not supported for {self.name} yet")
        rows = (Hparam("global_batch_size", "global_batch_size"), *self.hparams)
        return hparams_lib.borrowed_values(rows, self.config("reference"), logged,
                                           self.closed_tunable, self.name)

    @abc.abstractmethod
    def flops_per_example(self, cfg) -> float:
        """Training FLOPs of one example (forward + backward), from a hand-written formula."""
