"""The jaxperf_energy_j events of a run's MLPerf log, in words: for the run's last line and
the submission package's notes. Reads files only (no JAX), so the package tools stay light.
"""

import json
import os

KEY = "jaxperf_energy_j"


def from_log(path: str) -> list[dict]:
    """The jaxperf_energy_j events of an MLPerf log, in order; [] without a log."""
    if not os.path.isfile(path):
        return []
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            if f'"key": "{KEY}"' in line and ":::MLLOG " in line:
                events.append(json.loads(line.split(":::MLLOG ", 1)[1]))
    return events


def _joules(j: float) -> str:
    return f"{j:,.0f}" if j >= 100 else f"{j:.1f}"


def describe(events: list[dict]) -> str | None:
    """'12,345 J (nvml, 8 GPUs)', one per source joined by ' + ', from a run's events
    (several where it was resumed); None where the run measured none."""
    parts = []
    for source, unit in (("nvml", "GPU"), ("rapl", "CPU package")):
        mine = [e for e in events if e["metadata"].get("source") == source]
        if not mine:
            continue
        last = mine[-1]["metadata"]
        n = last.get("devices", last.get("domains"))
        what = f"{source}, {n} {unit}{'s' if n != 1 else ''}"
        if last.get("hosts", 1) > 1:
            what += f" on {last['hosts']} hosts"
        if mine[0]["metadata"].get("partial"):
            what += "; resumed: what ran before the resume is not counted"
        elif len(mine) > 1:
            what += f"; resumed {len(mine) - 1}x: the time it was stopped is not counted"
        parts.append(f"{_joules(sum(e['value'] for e in mine))} J ({what})")
    return " + ".join(parts) or None
