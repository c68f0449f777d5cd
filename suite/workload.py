"""The Workload contract: everything benchmark-specific, nothing about *how* it runs.

A workload never calls jax.jit, jax.devices() or the MLPerf logger; the runner
(suite.loop) owns devices, compilation, timing and logging. Steps are pure
functions the runner jits with shardings of its choosing.
"""

import abc
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from suite.errors import UserError
from suite.target import Target

Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Facts the runner needs about the data a config trains on."""

    train_examples: int
    eval_examples: int
    source: str  # printed and logged: "imagenet2012 from /data", "synthetic", ...


class Workload(abc.ABC):
    name: str  # registry key: --workload=<name>
    benchmark: str  # MLPerf submission_benchmark
    ruleset: str  # compliance checker ruleset version, e.g. "4.0.0"
    target: Target  # the closed-division target
    presets: tuple[str, ...] = ("reference", "tiny")
    # Config fields (dotted) a closed-division run may change: the rules' tunable
    # hyperparameters. Everything else is fixed by the reference.
    closed_tunable: frozenset[str] = frozenset()

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
        """Per-batch sums (e.g. correct, count) that finalize_eval turns into metrics."""

    @abc.abstractmethod
    def finalize_eval(self, cfg, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from the sums over the whole eval set; must include target.metric."""

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

    # ----- reporting -----------------------------------------------------
    @abc.abstractmethod
    def mllog_hparams(self, cfg, steps_per_epoch: int) -> dict[str, Any]:
        """Hyperparameters the benchmark's ruleset requires, keyed by mllog constants."""

    def config_from_hparams(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """Closed-tunable config values recovered from another run's logged hparams."""
        raise UserError(f"--borrow_hparams is not supported for {self.name} yet")

    @abc.abstractmethod
    def flops_per_example(self, cfg) -> float:
        """Training FLOPs of one example (forward + backward), from a hand-written formula."""
