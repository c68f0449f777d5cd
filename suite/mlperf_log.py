"""All MLPerf logging: official mllog, process 0 only, to <workdir>/mlperf_log.txt (and to
stdout with --mllog_stdout: the console a person reads shows progress lines instead)."""

import logging
import os
import sys
from typing import Any

from mlperf_logging.mllog import constants as C
from mlperf_logging.mllog import mllog

LOG_NAME = "mlperf_log.txt"


class MLPerfLog:
    """Thin owner of one mllog.MLLogger; silent on processes other than 0.

    Each run gets its own Python logger (not mllog's shared global one), so
    several runs in one process - tests, sweeps - never write into each other's files.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, echo: bool = False):
        self.path = os.path.join(workdir, LOG_NAME)
        self.enabled = enabled
        self._logger = None
        if not enabled:
            return
        self._py_logger = logging.getLogger(f"jaxperf.mllog.{os.path.abspath(self.path)}")
        self._py_logger.propagate = False
        self._py_logger.setLevel(logging.INFO)
        for h in list(self._py_logger.handlers):
            self._py_logger.removeHandler(h)
            h.close()
        self._py_logger.addHandler(logging.FileHandler(self.path, mode="a"))
        if echo:
            self._py_logger.addHandler(logging.StreamHandler(sys.stdout))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._logger = mllog.MLLogger(logger=self._py_logger, root_dir=root)

    def event(self, key: str, value: Any = None, time_ms: int | None = None, **metadata):
        if self._logger:
            self._logger.event(key, value, metadata=metadata or None, time_ms=time_ms,
                             stack_offset=2)

    def start(self, key: str, value: Any = None, time_ms: int | None = None, **metadata):
        if self._logger:
            self._logger.start(key, value, metadata=metadata or None, time_ms=time_ms,
                             stack_offset=2)

    def end(self, key: str, value: Any = None, time_ms: int | None = None, **metadata):
        if self._logger:
            self._logger.end(key, value, metadata=metadata or None, time_ms=time_ms,
                             stack_offset=2)

    def size(self) -> int:
        """Bytes written so far (each event is flushed as it is logged); 0 off process 0."""
        if not self.enabled or not os.path.exists(self.path):
            return 0
        return os.path.getsize(self.path)

    def cut(self, size: int) -> tuple[int, str | None]:
        """Moves what the log holds past its first `size` bytes to a file beside it and
        truncates it there: (events moved, that file), (0, None) when nothing was past.
        Events a run logged after its last checkpoint, before it died, would otherwise be
        logged twice once the resumed run trains those steps again."""
        if not self.enabled or self.size() <= size:
            return 0, None
        with open(self.path, "rb") as f:
            f.seek(size)
            tail = f.read()
        keys = [line.split(b'"key": "', 1)[1].split(b'"', 1)[0]
                for line in tail.splitlines() if line.startswith(b":::MLLOG")]
        # A notice that arrived just after a block end's checkpoint finds it saved already,
        # and logs the preemption past it; a pause logs the energy its process used past
        # its checkpoint: those lines describe the stop, nothing to undo.
        if all(key in (b"jaxperf_preempted", b"jaxperf_energy_j") for key in keys):
            return 0, None
        k = 0
        while os.path.exists(lost := f"{self.path[:-len('.txt')]}.lost-{k}.txt"):
            k += 1
        with open(lost, "wb") as f:
            f.write(tail)
        # The handler appends (O_APPEND): its next event goes to the new end.
        os.truncate(self.path, size)
        return tail.count(b":::MLLOG"), lost

    def close(self):
        if self._logger:
            for h in list(self._py_logger.handlers):
                self._py_logger.removeHandler(h)
                h.close()
            self._logger = None


def submission_events(log: MLPerfLog, *, benchmark: str, org: str, division: str,
                      status: str, platform: str):
    log.event(C.SUBMISSION_BENCHMARK, benchmark)
    log.event(C.SUBMISSION_ORG, org)
    log.event(C.SUBMISSION_DIVISION, division)
    log.event(C.SUBMISSION_STATUS, status)
    log.event(C.SUBMISSION_PLATFORM, platform)


def has_run_stop(path: str) -> bool:
    """Whether a log already holds a finished run (so a workdir must not be reused)."""
    if not os.path.exists(path):
        return False
    with open(path, errors="replace") as f:
        return any(f'"key": "{C.RUN_STOP}"' in line for line in f)
