"""The quality a run must reach: the only place a target is compared."""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Target:
    metric: str  # key in the metrics dict that finalize_eval returns
    value: float
    mode: str = "max"  # "max": reached at >= value; "min": reached at <= value

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"Target mode must be 'max' or 'min', got {self.mode!r}")

    def reached(self, metrics: dict[str, float]) -> bool:
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            return False
        return value >= self.value if self.mode == "max" else value <= self.value

    def describe(self) -> str:
        op = ">=" if self.mode == "max" else "<="
        return f"{self.metric} {op} {self.value}"
