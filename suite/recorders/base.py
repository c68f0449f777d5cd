"""The recorder protocol: hooks the lifecycle calls, no-ops unless a recorder needs them."""

import dataclasses

from suite.loops.base import BlockReport


@dataclasses.dataclass(frozen=True)
class BlockRecord:
    """One finished block as the lifecycle saw it."""

    index: int  # 1-based, counted over the whole run (a resumed run goes on counting)
    report: BlockReport
    mfu: float | None  # model FLOPs utilisation, None where the peak is unknown
    unit: str  # what report.position counts: "epochs" or "samples"


class Recorder:
    """Every hook runs on every process; a recorder that writes files checks
    jax.process_index() itself (a multi-host job keeps one copy, process 0's)."""

    def started(self, run_start_ms: int, resumed: bool) -> None:
        """run_start was logged (resumed: the run goes on from a checkpoint)."""

    def block(self, record: BlockRecord) -> None:
        """A block was trained and evaluated (its progress line printed)."""

    def stopping(self, log) -> None:
        """Just before run_stop: the last point to log events into the MLPerf log
        (suite.mlperf_log.MLPerfLog); also called before a pause or preemption ends it."""

    def closed(self, status: str) -> None:
        """After the log is closed, whatever the run's end ("success", "aborted", "paused",
        "preempted", "error"): flush and release what the recorder holds."""
