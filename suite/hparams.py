"""A workload's logged hyperparameters as one table: config field <-> MLPerf key <-> conversion.

Both directions come from the same rows: what a run logs (Workload.mllog_hparams) and what
--borrow_hparams takes back from another run's log (Workload.config_from_hparams).
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class Logged:
    """A logged value that carries metadata (e.g. max_sequence_length's method)."""

    value: Any
    metadata: dict


@dataclasses.dataclass(frozen=True)
class Hparam:
    """One logged hyperparameter.

    key: the mllog constant. field: the config field it shows (None: a fixed value of the
    benchmark, or a quantity derived from several fields). log(cfg, steps_per_epoch): the
    logged value (default cfg[field]). borrow(value, logged) -> {field: value}: what another
    run's logged value means for this config (default {field: value}, typed like the
    default); None for a row nothing is taken from. must_match: a fixed value another log
    must share before anything is borrowed from it (the optimizer's name).
    """

    key: str
    field: str | None = None
    log: Callable[[Any, int], Any] | None = None
    borrow: Callable[[Any, dict], dict] | None = None
    must_match: bool = False

    def value(self, cfg, steps_per_epoch: int):
        return self.log(cfg, steps_per_epoch) if self.log else cfg[self.field]


def fixed(key: str, value, *, must_match: bool = False) -> Hparam:
    """A value the benchmark fixes (logged as the checker requires, never borrowed)."""
    return Hparam(key, log=lambda cfg, spe: value, must_match=must_match)


def mllog_values(table: Sequence[Hparam], cfg, steps_per_epoch: int) -> dict[str, Any]:
    return {row.key: row.value(cfg, steps_per_epoch) for row in table}


def borrowed_values(table: Sequence[Hparam], cfg, logged: dict, tunable: frozenset[str],
                    workload: str) -> dict[str, Any]:
    """Config values for the closed-tunable rows of the table, read from another log."""
    for row in table:
        if row.must_match:
            ours = row.value(cfg, 1)
            if logged.get(row.key) != ours:
                raise UserError(f"the log's {row.key} is {logged.get(row.key)!r}; jaxperf's "
                                f"{workload} borrows from {ours} logs only")
    values = {}
    for row in table:
        if row.key not in logged or (row.field is None and row.borrow is None):
            continue
        if row.borrow is not None:
            taken = row.borrow(logged[row.key], logged)
        else:
            default = cfg[row.field]
            taken = {row.field: type(default)(logged[row.key]) if isinstance(
                default, int | float) and not isinstance(default, bool) else logged[row.key]}
        values.update({k: v for k, v in taken.items() if k in tunable})
    return values
