"""What every loop gives the lifecycle: compiled state to checkpoint, and blocks reported."""

import abc
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from suite import perf
from suite.config import RunOptions
from suite.mlperf_log import MLPerfLog
from suite.schedule import Schedule
from suite.workload import DataInfo, Workload


class Abort(Exception):
    """Ends the run with run_stop status=aborted and this one-line reason."""

    def __init__(self, reason: str, position: int | float):
        super().__init__(reason)
        self.position = position


class Preempted(Exception):
    """A preemption notice stopped the loop before step `step` (that many steps done);
    state is the train state there, for the lifecycle to checkpoint."""

    def __init__(self, step: int, state: Any):
        super().__init__(f"preempted at step {step}")
        self.step, self.state = step, state


@dataclasses.dataclass(frozen=True)
class BlockReport:
    """One block trained and evaluated, as the lifecycle prints, checks and checkpoints it."""

    step: int  # training steps done after it
    position: int | float  # where the eval after it stands, in the schedule's unit
    losses: np.ndarray  # the block's training losses, step by step
    stats: perf.BlockStats
    metrics: dict  # the eval's
    eta_s: float  # to the end of the schedule at this block's pace
    state: Any  # the train state after it (what a checkpoint saves)


class Loop(abc.ABC):
    """Trains one workload under the lifecycle: compiles in __init__ (before init_stop),
    builds its inputs in prepare (before run_start), then trains in blocks."""

    def __init__(self, workload: Workload, cfg, opts: RunOptions, data: DataInfo, mesh):
        self.workload, self.cfg, self.opts, self.data, self.mesh = (
            workload, cfg, opts, data, mesh)
        self.schedule: Schedule = workload.schedule(cfg, data)

    @property
    @abc.abstractmethod
    def abstract_state(self) -> Any:
        """The state's shapes and dtypes, to restore a checkpoint into."""

    @property
    @abc.abstractmethod
    def state_shardings(self) -> Any: ...

    @abc.abstractmethod
    def init_state(self, seed: int) -> Any:
        """A fresh state (with the workload's initial params, if any) on the devices."""

    def resume_point(self, progress: dict) -> tuple[Any, dict]:
        """(value, metadata) of the jaxperf_resume event for a run resumed at progress:
        the epoch it resumes in, and the step."""
        step = progress["step"]
        return step // self.schedule.steps_per_epoch + 1, {"step": step}

    def describe_input(self) -> str | None:
        """One line on what a step moves from host to devices, or None (no input batches)."""
        return None

    @abc.abstractmethod
    def prepare(self, progress: dict) -> Any:
        """The inputs (pipelines) for a run that stands at progress, built but unread."""

    @abc.abstractmethod
    def blocks(self, state, progress: dict, inputs, log: MLPerfLog, notice,
               tick: Callable[[int], None]) -> Iterator[BlockReport]:
        """Trains and evaluates block after block from progress (which may stand inside a
        block), logging the loop's own MLPerf events (blocks, epochs, evals); raises Abort
        to end the run early, and Preempted where notice.reached(steps done) says so at a
        step boundary (suite.preemption.Notice: ask at every step). tick(steps done) after
        each step is dispatched, without waiting for it (the live bar, suite.console)."""

    @abc.abstractmethod
    def final_weights(self, state) -> Any:
        """What inference needs of a finished state (suite.weights saves it)."""
