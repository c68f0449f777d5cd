"""MLPerf scoring of several runs, read back from their logs, and how far to trust it.

The score is the olympic mean of time-to-train: drop the fastest and the slowest
run, average the rest. A run that did not converge counts as infinitely slow, so
one such run can be the dropped slowest one; a second makes the score infinite.
"""

import dataclasses
import json
import math

import numpy as np
from mlperf_logging.mllog import constants as C


@dataclasses.dataclass(frozen=True)
class RunRecord:
    path: str
    benchmark: str
    division: str
    seed: int | None
    status: str  # run_stop status: "success" or "aborted"
    seconds: float  # run_start -> run_stop; inf where the run did not converge
    epochs: int | None
    evals: tuple[tuple[float, int, float], ...]  # (seconds since run_start, epoch, value)
    # ("epochs", first epoch, epoch count, seconds), or where the log counts samples
    # (BERT) ("samples", samples trained before, samples in the block, seconds).
    blocks: tuple[tuple[str, int, int | float, float], ...]
    train_samples: int | None
    hparams: dict  # every logged POINT_IN_TIME value before run_start, by key

    @property
    def converged(self) -> bool:
        return self.status == C.SUCCESS

    @property
    def counts_samples(self) -> bool:
        """Whether the log counts samples trained, not epochs (BERT's rules)."""
        return any(unit == "samples" for unit, *_ in self.blocks)

    def block_throughput(self) -> list[tuple[int, float]]:
        """(where the block ends: last epoch or samples trained, samples/s), from the
        block_start/block_stop timestamps."""
        points = []
        for unit, first, count, s in self.blocks:
            if s <= 0:
                continue
            if unit == "samples":
                points.append((first + count, count / s))
            elif self.train_samples:
                points.append((first + count - 1, count * self.train_samples / s))
        return points


def read_events(path: str) -> list[dict]:
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            if ":::MLLOG" in line:
                try:
                    events.append(json.loads(line.split(":::MLLOG", 1)[1]))
                except json.JSONDecodeError:
                    continue  # the checker reports malformed lines; scoring skips them
    return events


def read_run(path: str) -> RunRecord:
    events = read_events(path)
    first = {}
    hparams = {}
    start_ms = stop_ms = None
    status, epochs = C.ABORTED, None
    evals, blocks, open_blocks, trained = [], [], {}, 0
    for e in events:
        key, meta, t = e["key"], e.get("metadata", {}), e["time_ms"]
        first.setdefault(key, e["value"])
        if key == C.RUN_START:
            start_ms = t
        elif start_ms is None and e["event_type"] == "POINT_IN_TIME":
            hparams[key] = e["value"]
        elif key == C.RUN_STOP:
            stop_ms, status = t, meta.get("status", C.ABORTED)
            epochs = meta.get("epoch_num", epochs)
        elif key == C.EVAL_ACCURACY and start_ms is not None:
            evals.append(((t - start_ms) / 1e3, meta.get("epoch_num"), float(e["value"])))
            epochs = meta.get("epoch_num", epochs)
        elif key == C.BLOCK_START and C.SAMPLES_COUNT in meta:
            open_blocks["samples"] = (trained, meta[C.SAMPLES_COUNT], t)
        elif key == C.BLOCK_START:
            begin = meta.get("first_epoch_num")
            open_blocks[begin] = (begin, meta.get("epoch_count", 1), t)
        elif key == C.BLOCK_STOP:
            block = "samples" if C.SAMPLES_COUNT in meta else meta.get("first_epoch_num")
            if block in open_blocks:
                begin, count, t0 = open_blocks.pop(block)
                blocks.append(("samples" if block == "samples" else "epochs", begin, count,
                               (t - t0) / 1e3))
                if block == "samples":
                    trained += count
    finished = start_ms is not None and stop_ms is not None and status == C.SUCCESS
    return RunRecord(
        path=path,
        benchmark=first.get(C.SUBMISSION_BENCHMARK, ""),
        division=first.get(C.SUBMISSION_DIVISION, ""),
        seed=first.get(C.SEED),
        status=status if stop_ms is not None else "unfinished",
        seconds=(stop_ms - start_ms) / 1e3 if finished else math.inf,
        epochs=epochs,
        evals=tuple(evals),
        blocks=tuple(blocks),
        train_samples=first.get(C.TRAIN_SAMPLES),
        hparams=hparams,
    )


@dataclasses.dataclass(frozen=True)
class Score:
    seconds: float  # olympic mean; inf when more than one run failed to converge
    kept: tuple[int, ...]  # indices of the runs averaged
    dropped: tuple[int, ...]  # indices of the fastest and slowest run

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0


def olympic(times: list[float]) -> Score:
    """Drops the fastest and the slowest run (an infinite one first) and averages the rest."""
    if len(times) < 3:
        raise ValueError(f"olympic scoring needs at least 3 runs, got {len(times)}")
    order = sorted(range(len(times)), key=lambda i: times[i])
    dropped = (order[0], order[-1])
    kept = tuple(sorted(order[1:-1]))
    values = [times[i] for i in kept]
    seconds = math.inf if any(math.isinf(v) for v in values) else float(np.mean(values))
    return Score(seconds, kept, tuple(sorted(dropped)))


@dataclasses.dataclass(frozen=True)
class Variance:
    cv: float  # coefficient of variation of the converged runs' times
    ci95: tuple[float, float]  # bootstrap 95 % interval of the olympic score, seconds
    runs_for: dict  # {0.02: n, 0.05: n}: runs for a +-2 % / +-5 % interval at this spread


def variance(times: list[float], resamples: int = 10_000, seed: int = 0) -> Variance:
    if len(times) < 3:
        raise ValueError(f"the spread of an olympic score needs at least 3 runs, got {len(times)}")
    finite = np.asarray([t for t in times if math.isfinite(t)], np.float64)
    cv = float(finite.std(ddof=1) / finite.mean()) if len(finite) > 1 else math.nan
    rng = np.random.default_rng(seed)
    arr = np.asarray(times, np.float64)
    samples = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))]
    samples.sort(axis=1)
    # Olympic mean of each resample; a resample with two non-converged runs scores inf.
    scores = samples[:, 1:-1].mean(axis=1)
    # inverted_cdf picks order statistics, so infinite scores stay inf instead of nan.
    low, high = np.quantile(scores, [0.025, 0.975], method="inverted_cdf")
    # Mean of n runs has relative half-width 1.96 * cv / sqrt(n) (normal approximation).
    runs_for = {p: (math.ceil((1.96 * cv / p) ** 2) if math.isfinite(cv) else None)
                for p in (0.02, 0.05)}
    return Variance(cv, (float(low), float(high)), runs_for)
