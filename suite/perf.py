"""Throughput, MFU and ETA from hand-written FLOP counts (never XLA's cost analysis,
which misses the cuDNN/cuBLAS custom calls that do most of the work on GPUs)."""

import dataclasses

# Dense bf16 peak FLOP/s of one device, from the vendors' data sheets.
# Matched in order against jax.Device.device_kind, so specific names come first.
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("V100", 125e12),
    ("TPU v6 lite", 918e12),
    ("TPU v6e", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
)


def peak_flops(device_kind: str) -> float | None:
    """bf16 peak of one device, or None where unknown (e.g. CPUs)."""
    for name, flops in PEAK_BF16_FLOPS:
        if name.lower() in device_kind.lower():
            return flops
    return None


@dataclasses.dataclass(frozen=True)
class BlockStats:
    samples: int
    steps: int
    seconds: float
    # Host time spent reading and placing input (suite.staging); None where a loop reads
    # no batches (self-play makes its own data on the devices).
    input_s: float | None = None

    @property
    def host_overhead(self) -> float | None:
        """The share of the block the host spent waiting for input."""
        if self.input_s is None or self.seconds <= 0:
            return None
        return self.input_s / self.seconds

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def step_ms(self) -> float:
        return 1e3 * self.seconds / self.steps if self.steps else 0.0


def mfu(flops_per_example: float, samples_per_s: float, device_peak: float | None,
        num_devices: int) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' combined peak."""
    if not device_peak or num_devices <= 0:
        return None
    return flops_per_example * samples_per_s / (device_peak * num_devices)


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
