"""The Workload contract: everything benchmark-specific, nothing about *how* it runs.

A workload never calls jax.jit, jax.devices() or the MLPerf logger; the runner
(suite.loop) owns devices, compilation, timing and logging. Steps are pure
functions the runner jits with shardings of its choosing.
"""

import abc
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import struct

from suite.errors import UserError
from suite.target import Target

Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Facts the runner needs about the data a config trains on."""

    train_examples: int
    eval_examples: int
    source: str  # printed and logged: "imagenet2012 from /data", "synthetic", ...
    # Where one training example is not one batch row (packed sequences), the workload
    # says how many steps make an epoch; otherwise it is train_examples / global batch.
    steps_per_epoch: int | None = None

    def epoch_steps(self, global_batch_size: int) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(self.train_examples / global_batch_size)


@dataclasses.dataclass(frozen=True)
class Logged:
    """An mllog_hparams value that carries metadata (e.g. max_sequence_length's method)."""

    value: Any
    metadata: dict


def sum_outputs(outputs: list[dict]) -> dict[str, float]:
    """Totals of per-batch eval sums: what most finalize_eval implementations start from."""
    return {k: float(np.sum([o[k] for o in outputs])) for k in outputs[0]} if outputs else {}


@struct.dataclass
class TrainState:
    """The train state of most workloads. Where a workload starts from given weights
    (initial_params), the runner puts them in by replacing `params`."""

    step: jax.Array
    params: Any
    opt_state: Any


class Workload(abc.ABC):
    name: str  # registry key: --workload=<name>
    benchmark: str  # MLPerf submission_benchmark
    ruleset: str  # compliance checker ruleset version, e.g. "4.0.0"
    target: Target  # the closed-division target
    presets: tuple[str, ...] = ("reference", "tiny")
    # Config fields (dotted) a closed-division run may change: the rules' tunable
    # hyperparameters. Everything else is fixed by the reference.
    closed_tunable: frozenset[str] = frozenset()
    # What --data_dir must hold, for messages that tell the user how to fix a run.
    data_dir_help: str = "the tfds data directory that holds the prepared dataset"

    # ----- configuration -------------------------------------------------
    @abc.abstractmethod
    def config(self, preset: str) -> ml_collections.ConfigDict:
        """Full config of a preset. Must hold global_batch_size, train_epochs,
        epochs_per_block, eval_every_blocks ... (see suite.config.COMMON_FIELDS)."""

    def target_for(self, cfg: ml_collections.ConfigDict) -> Target:
        """Presets may lower the bar (the tiny one does); closed runs use self.target."""
        return Target(self.target.metric, cfg.target_value, self.target.mode)

    def logical_axis_rules(self, cfg) -> list[tuple[str, Any]]:
        """Logical axis name -> mesh axis (or None). Default: pure data parallel."""
        return [("batch", ("data", "fsdp"))]

    # ----- model and steps (pure) ----------------------------------------
    @abc.abstractmethod
    def init(self, cfg, rng: jax.Array) -> Any:
        """Train state; params may be boxed with flax logical partitioning."""

    @abc.abstractmethod
    def train_step(self, cfg, state, batch: Batch, rng: jax.Array) -> tuple[Any, dict]:
        """One optimizer step. Returns (new_state, scalar metrics incl. 'loss')."""

    @abc.abstractmethod
    def eval_step(self, cfg, state, batch: Batch) -> dict:
        """Per-batch outputs: sums (correct, count) or per-example arrays (decoded tokens).
        They come back replicated, so every process sees the whole eval set's outputs."""

    @abc.abstractmethod
    def finalize_eval(self, cfg, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Metrics from the host copies of every eval batch's outputs, in batch order;
        must include target.metric."""

    def eval_batch_size(self, cfg) -> int:
        """Global batch of the eval step; decoding workloads use a smaller one than training."""
        return cfg.get("eval_batch_size") or cfg.global_batch_size

    def eval_every_samples(self, cfg) -> int:
        """Where the rules set the eval interval in samples trained (BERT), that interval:
        the run then lasts max_epochs * steps_per_epoch steps and its log counts samples.
        0 (the default): evals fall at epochs, as the config's epoch fields say."""
        return 0

    def initial_params(self, cfg, abstract_params) -> Any | None:
        """Host (NumPy) params to start from instead of the random init, e.g. a reference
        checkpoint; shaped like abstract_params. Loaded before run_start, as MLPerf's
        rules count checkpoint loading as initialization. None: the random init."""
        return None

    def artifacts(self, cfg) -> dict[str, str]:
        """Files a run depends on (name in the workdir -> path), copied into its workdir
        so that the run can be reproduced from the workdir alone (e.g. a vocabulary)."""
        return {}

    # ----- data ----------------------------------------------------------
    @abc.abstractmethod
    def batch_spec(self, cfg, split: str, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one batch: used for AOT compilation and synthetic data."""

    @abc.abstractmethod
    def data_info(self, cfg, data_dir: str | None) -> DataInfo:
        """Example counts of the configured dataset; raises UserError if it is missing."""

    @abc.abstractmethod
    def train_batches(
        self, cfg, data_dir: str | None, *, local_batch_size: int, process_index: int,
        process_count: int, seed: int,
    ) -> Iterator[Batch]:
        """Infinite iterator of this process's share of each global batch.

        Called before run_start: build the pipeline here, but read no data until the
        first next() (MLPerf's clock must cover every read of the data).
        """

    @abc.abstractmethod
    def eval_batches(
        self, cfg, data_dir: str | None, *, local_batch_size: int, process_index: int,
        process_count: int,
    ) -> Iterator[Batch]:
        """One pass over the eval split; every process yields the same number of batches."""

    def synthetic_data_info(self, cfg) -> DataInfo:
        """What a --data=synthetic run stands in for: the config's example counts."""
        return DataInfo(cfg.train_examples, cfg.eval_examples, "synthetic")

    def synthetic_high(self, cfg) -> dict[str, np.ndarray]:
        """Exclusive upper bounds of integer batch fields in synthetic data; default 2.
        Lookup-bound models say how far ids spread, so throughput runs gather like real ones."""
        return {}

    # ----- reporting -----------------------------------------------------
    @abc.abstractmethod
    def mllog_hparams(self, cfg, steps_per_epoch: int) -> dict[str, Any]:
        """Hyperparameters the benchmark's ruleset requires, keyed by mllog constants;
        a value is plain or a Logged(value, metadata)."""

    def check_closed(self, cfg) -> None:
        """Closed-division rules beyond which fields may change (UserError if broken)."""
        return None

    def config_from_hparams(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """Closed-tunable config values recovered from another run's logged hparams."""
        raise UserError(f"--borrow_hparams is not supported for {self.name} yet")

    @abc.abstractmethod
    def flops_per_example(self, cfg) -> float:
        """Training FLOPs of one example (forward + backward), from a hand-written formula."""
