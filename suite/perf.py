"""Throughput, MFU, rooflines and ETA from hand-written FLOP counts (never XLA's cost
analysis for FLOPs, which misses the cuDNN/cuBLAS custom calls that do most of the work on
GPUs)."""

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


# Peak HBM bandwidth of one device in bytes/s, from the vendors' data sheets (what a
# kernel can approach; the issue measured 4.19e12 on an H200 against its 4.8e12). Matched
# like PEAK_BF16_FLOPS. An unlisted A100 or H100 variant takes its family's lowest figure.
PEAK_HBM_BYTES_PER_S = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM, "NVIDIA H100 80GB HBM3"
    ("B200", 8.0e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),  # 40 GB
    ("L4", 0.3e12),
    ("V100", 0.9e12),
    ("TPU v6 lite", 1.64e12),
    ("TPU v6e", 1.64e12),
    ("TPU v5 lite", 0.819e12),
    ("TPU v5e", 0.819e12),
    ("TPU v5p", 2.765e12),
    ("TPU v5", 2.765e12),
    ("TPU v4", 1.228e12),
)


def _lookup(table, device_kind: str) -> float | None:
    for name, value in table:
        if name.lower() in device_kind.lower():
            return value
    return None


def peak_flops(device_kind: str) -> float | None:
    """bf16 peak of one device, or None where unknown (e.g. CPUs)."""
    return _lookup(PEAK_BF16_FLOPS, device_kind)


def peak_bandwidth(device_kind: str) -> float | None:
    """HBM bytes/s of one device, or None where unknown (e.g. CPUs)."""
    return _lookup(PEAK_HBM_BYTES_PER_S, device_kind)


@dataclasses.dataclass(frozen=True)
class Roofline:
    """One device's step against the roofline: its FLOPs (hand-counted) and bytes (XLA's
    count) per step, and the device's peaks. The step cannot take less than the slower of
    doing its FLOPs at peak and moving its bytes at peak bandwidth."""

    flops: float  # per device per step
    bytes_accessed: float  # per device per step
    peak_flops: float
    peak_bytes_per_s: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte of the step."""
        return self.flops / self.bytes_accessed

    @property
    def ridge(self) -> float:
        """FLOPs per byte above which the device's compute, not its memory, is the limit."""
        return self.peak_flops / self.peak_bytes_per_s

    @property
    def bound(self) -> str:
        return "FLOP" if self.intensity >= self.ridge else "bandwidth"

    @property
    def min_step_s(self) -> float:
        return max(self.flops / self.peak_flops, self.bytes_accessed / self.peak_bytes_per_s)

    @property
    def max_mfu(self) -> float:
        """The MFU a step at min_step_s reaches: 1 when FLOP-bound, intensity / ridge when
        bandwidth-bound. A measured MFU is read against this, not against 100 %."""
        return self.flops / self.peak_flops / self.min_step_s


def roofline(device_kind: str, flops: float, bytes_accessed: float | None) -> Roofline | None:
    """The device's roofline for a step, or None where a peak or the bytes are unknown."""
    top, bandwidth = peak_flops(device_kind), peak_bandwidth(device_kind)
    if not top or not bandwidth or not bytes_accessed or flops <= 0:
        return None
    return Roofline(flops, bytes_accessed, top, bandwidth)


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
