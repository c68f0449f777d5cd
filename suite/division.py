"""Closed vs open division: which config fields a run may change, and borrowed hyperparameters."""

import json
import os
from typing import Any

import ml_collections

from common.errors import UserError
from suite import scoring
from suite.config import RUNTIME_FIELDS
from suite.workload import Workload


def flatten(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changes(reference: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> dict:
    """{field: (reference value, this run's value)} for every field that differs."""
    ref, new = flatten(reference), flatten(cfg)
    return {k: (ref.get(k), new.get(k)) for k in sorted(set(ref) | set(new))
            if ref.get(k) != new.get(k)}


def check_closed(workload: Workload, diff: dict) -> None:
    allowed = workload.closed_tunable | RUNTIME_FIELDS | workload.runtime_fields
    for field, (ref, new) in diff.items():
        if field not in allowed:
            raise UserError(
                f"--division=closed fixes {field} at {ref!r} (got {new!r}); closed runs of "
                f"{workload.name} may change only {', '.join(sorted(workload.closed_tunable))}; "
                "use --division=open to change it"
            )


def borrow(workload: Workload, log_path: str) -> dict[str, Any]:
    """Config values taken from another submission's result log (closed-tunable fields only)."""
    if not os.path.isfile(log_path):
        raise UserError(f"--borrow_hparams {log_path} is not a file; pass a result_*.txt log")
    record = scoring.read_run(log_path)
    if not record.benchmark:
        raise UserError(f"--borrow_hparams {log_path} holds no MLPerf submission_benchmark; "
                        "pass another submission's result log")
    if record.benchmark != workload.benchmark:
        raise UserError(
            f"--borrow_hparams {log_path} is a log of {record.benchmark!r}, not "
            f"{workload.benchmark!r}; borrow from a {workload.benchmark} submission"
        )
    values = workload.config_from_hparams(record.hparams)
    outside = set(values) - workload.closed_tunable
    assert not outside, f"workload maps logged hparams onto fixed fields: {outside}"
    return values


def log_notes(diff: dict, borrowed_from: str | None, borrowed: dict) -> dict[str, str]:
    """Extra MLPerf log events that say how this config differs from the reference."""
    notes = {"jaxperf_config_changes": json.dumps({k: v[1] for k, v in diff.items()},
                                                  sort_keys=True)}
    if borrowed_from:
        notes["jaxperf_borrowed_hparams"] = json.dumps(
            {"from": os.path.abspath(borrowed_from), "values": borrowed}, sort_keys=True)
    return notes
