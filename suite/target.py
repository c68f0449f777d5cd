"""The quality a run must reach: the only place a target is compared."""

import dataclasses
import math
import re


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
        """'top1 >= 0.759': how logs (jaxperf_target) and output state the target."""
        op = ">=" if self.mode == "max" else "<="
        return f"{self.metric} {op} {self.value}"

    @classmethod
    def parse(cls, text: str) -> "Target | None":
        """The inverse of describe(); None for text that is not a target."""
        m = re.fullmatch(r"\s*(\S+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*", text)
        if not m:
            return None
        return cls(m[1], float(m[3]), "max" if m[2] == ">=" else "min")
