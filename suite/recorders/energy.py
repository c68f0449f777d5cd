"""Energy to train, where the platform exposes it: the GPUs' NVML counters and the CPU
packages' RAPL counters, read at run_start (or the resume) and just before run_stop,
logged as jaxperf_energy_j, one event per source.

Each process reads its own GPUs and its host's packages; process 0 logs the job's total,
each GPU and each host's packages counted once. A run stopped and resumed (a pause, a
preemption, a kill) logs one event per process that ran it, each covering the time that
process ran: the energy of the time no process ran is not measured, and what a killed
process used is lost with it (its `partial` successor says so). Summing the events is the
reader's job, not the checkpoint's: each figure stays beside what it measured.
"""

import json
import sys
import time

import jax
import numpy as np

from suite.energy_log import KEY
from suite.loops.base import Abort, Preempted
from suite.recorders import counters
from suite.recorders.base import Recorder

_BLOB = 8192  # bytes of one process's readings in the gather (UUIDs, ~60 bytes a GPU)


def _say(line: str) -> None:
    if jax.process_index() == 0:
        print(line, flush=True)


class EnergyRecorder(Recorder):
    """gpu_ids: this process's GPUs (CUDA ordinals), None when the run has none."""

    def __init__(self, gpu_ids: list[int] | None, powercap_root: str | None = None):
        # Opened before the run: NVML's start-up is no part of the timed run.
        self._nvml, nvml_why = (counters.open_nvml(gpu_ids) if gpu_ids
                                else (None, "no NVML device"))
        self._rapl, rapl_why = counters.open_rapl(powercap_root or counters.powercap_root())
        self._why = f"{nvml_why}, {rapl_why}"
        self._since_ms: int | None = None
        self._resumed = False

    def started(self, run_start_ms: int, resumed: bool) -> None:
        self._since_ms = int(time.time() * 1e3) if resumed else run_start_ms
        self._resumed = resumed
        if self._nvml is None and self._rapl is None:
            _say(f"energy: not measured ({self._why})")
        for source, meter in (("nvml", self._nvml), ("rapl", self._rapl)):
            if meter is None:
                continue
            try:
                meter.start()
            except Exception as e:  # readable when opened, not now: this run goes without
                _say(f"energy: {source} not measured: {type(e).__name__}: {e}")
                meter.close()
                setattr(self, f"_{source}", None)

    def stopping(self, log) -> None:
        if self._since_ms is None:
            return  # not started, or logged already
        local = {"host": counters.host_id()}
        for source, meter in (("nvml", self._nvml), ("rapl", self._rapl)):
            if meter is None:
                continue
            try:
                local[source] = meter.stop()
            except Exception as e:  # a counter gone away mid-run: say so, guess nothing
                _say(f"energy: {source} not measured: {type(e).__name__}: {e}")
        readings = [local]
        if jax.process_count() > 1 and _every_process_stops_here():
            readings = _gather(local)
        for source, total in merge(readings).items():
            count = "devices" if source == "nvml" else "domains"
            log.event(KEY, round(total["joules"], 3), source=source,
                      **{count: total["devices"]}, hosts=total["hosts"],
                      processes=len(readings), since_ms=self._since_ms,
                      partial=self._resumed)
        self._since_ms = None

    def closed(self, status: str) -> None:
        for meter in (self._nvml, self._rapl):
            if meter is not None:
                meter.close()
        self._nvml = self._rapl = None


def for_run() -> EnergyRecorder:
    """The recorder of a run on this process's devices (NVML only where they are GPUs)."""
    devices = jax.local_devices()
    gpus = [d.local_hardware_id for d in devices if d.platform == "gpu"]
    return EnergyRecorder(gpus or None)


def _every_process_stops_here() -> bool:
    """Whether this stop is one every process reaches at the same point (a collective is
    safe): the run's own ends, a pause, a preemption, an abort on a global value. An error
    in one process is not: a gather there would hang the others' last collective."""
    handling = sys.exc_info()[1]  # the exception the lifecycle is ending the run on, if any
    return handling is None or isinstance(handling, (Abort, Preempted))


def _gather(local: dict) -> list[dict]:
    """Every process's readings, on every process (one small all-gather)."""
    from jax.experimental import multihost_utils

    blob = json.dumps(local).encode()
    if len(blob) > _BLOB:  # more GPUs than anyone has: keep the gather's fixed shape
        blob = json.dumps({"host": local["host"]}).encode()
    row = np.zeros(_BLOB, np.uint8)
    row[:len(blob)] = np.frombuffer(blob, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(row))
    return [json.loads(bytes(r).rstrip(b"\0")) for r in rows]


def merge(readings: list[dict]) -> dict[str, dict]:
    """{source: {"joules", "devices", "hosts"}} over the processes' readings: a GPU (by UUID)
    or a host's CPU package seen by several processes counts once."""
    seen: dict[str, dict] = {"nvml": {}, "rapl": {}}
    for r in readings:
        for uuid, joules in r.get("nvml", {}).items():
            seen["nvml"].setdefault(uuid, (r["host"], joules))
        for name, joules in r.get("rapl", {}).items():
            seen["rapl"].setdefault((r["host"], name), (r["host"], joules))
    return {source: {"joules": sum(j for _, j in found.values()), "devices": len(found),
                     "hosts": len({host for host, _ in found.values()})}
            for source, found in seen.items() if found}
