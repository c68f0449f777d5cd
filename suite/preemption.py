"""Preemption notices (SIGTERM: Cloud TPU maintenance events and spot VMs, SLURM,
Kubernetes): the training loop asks at every step boundary whether to stop there, and the
run then checkpoints that step and exits with EXIT_CODE; the same command resumes it.

One process: a Python SIGTERM handler sets a flag. Several processes (jax.distributed):
JAX's own preemption service, which already listens for SIGTERM in every process, tells
the others, and agrees on one step that all of them stop at
(multihost_utils.reached_preemption_sync_point). A Python handler there would take the
signal from it, so none is installed.
"""

import signal

import jax

# EX_TEMPFAIL from sysexits.h: "temporary failure, the user is invited to retry". Distinct
# from 1 (no result) and 2 (bad input), so a job script or scheduler can requeue on it.
EXIT_CODE = 75
SIGNAL_NAME = "SIGTERM"


class Notice:
    """Whether a preemption notice has arrived; ask with reached(step) at each step."""

    def __init__(self):
        self.received = False
        self._previous = None
        self._distributed = jax.process_count() > 1

    def __enter__(self) -> "Notice":
        if not self._distributed:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.received = True

    def reached(self, steps_done: int) -> bool:
        """True where the run should checkpoint steps_done and stop. Every process of a job
        must call it at every step with the same count (JAX's sync point requires it)."""
        if self._distributed:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(steps_done)
        return self.received
