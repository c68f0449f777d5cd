"""The energy counters a host exposes: NVIDIA GPUs through NVML, CPU packages through Linux
RAPL (powercap). Each opener returns a meter, or None and the reason in a few words.

A meter reads at start(), and stop() returns the joules used since, per device. The
readers are plain functions of their inputs (the powercap directory, the GPUs' hardware
ids), so tests point them at a sysfs tree written in a temporary directory.
"""

import os
import re
import threading

POWERCAP_ENV = "JAXPERF_POWERCAP_ROOT"
POWERCAP_ROOT = "/sys/class/powercap"
# Top-level zones only: "intel-rapl:0" is a package, "intel-rapl:0:0" one of its
# sub-domains (core, uncore, dram), counted inside the package already. The -mmio zones
# are a second interface to the same packages on some Intel CPUs.
_ZONE = re.compile(r"intel-rapl(-mmio)?:(\d+)$")
# The counter wraps after max_energy_range_uj; the meter must read it more often than it
# can wrap: a 32-bit counter in 61 uJ units wraps every 262 kJ (under 15 min at 300 W),
# in 15.3 uJ units (older CPUs) every 65 kJ.
SAMPLE_EVERY_S = 10.0


def powercap_root() -> str:
    """Where the RAPL counters are: $JAXPERF_POWERCAP_ROOT (tests; containers that mount the
    host's powercap elsewhere), else /sys/class/powercap."""
    return os.environ.get(POWERCAP_ENV) or POWERCAP_ROOT


def host_id() -> str:
    """This machine, the same for every process and container on it (the kernel's boot id):
    processes sharing a host share its RAPL counters, which must be counted once."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        import socket

        return socket.gethostname()


# ----------------------------------------------------------------------------- RAPL
def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


class RaplMeter:
    """CPU package counters, in microjoules, sampled in a background thread so that no
    wrap-around goes unseen between run_start and run_stop."""

    def __init__(self, domains: dict[str, tuple[str, int]], every_s: float = SAMPLE_EVERY_S):
        self.domains = domains  # name ("package-0") -> (its energy_uj file, its max range)
        self._every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._used_uj: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._last = {name: _read_int(path) for name, (path, _) in self.domains.items()}
            self._used_uj = dict.fromkeys(self.domains, 0)
        self._thread = threading.Thread(target=self._run, name="rapl-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.sample()
            except (OSError, ValueError):  # a counter gone unreadable: stop() will tell
                return

    def sample(self) -> None:
        """Adds what each counter moved since the last sample, across at most one wrap."""
        with self._lock:
            for name, (path, max_uj) in self.domains.items():
                now = _read_int(path)
                # The counter runs 0..max_uj, then starts again from 0.
                self._used_uj[name] += (now - self._last[name]) % (max_uj + 1)
                self._last[name] = now

    def stop(self) -> dict[str, float]:
        """Joules per package since start()."""
        self.close()
        self.sample()
        return {name: uj / 1e6 for name, uj in self._used_uj.items()}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None


def open_rapl(root: str) -> tuple[RaplMeter | None, str]:
    """A meter over the readable package domains under `root`, else (None, why not)."""
    if not os.path.isdir(root):
        return None, "no readable RAPL counters"
    zones = sorted((m.group(1) is not None, int(m.group(2)), entry)
                   for entry in os.listdir(root) if (m := _ZONE.match(entry)))
    domains: dict[str, tuple[str, int]] = {}
    denied = []
    for _, _, entry in zones:  # the MSR interface first, -mmio only for packages it lacks
        zone = os.path.join(root, entry)
        try:
            with open(os.path.join(zone, "name")) as f:
                name = f.read().strip()
            if not name.startswith("package") or name in domains:
                continue  # psys (the whole platform) would count the packages twice
            energy = os.path.join(zone, "energy_uj")
            _read_int(energy)
            domains[name] = (energy, _read_int(os.path.join(zone, "max_energy_range_uj")))
        except PermissionError:
            denied.append(os.path.join(zone, "energy_uj"))
        except (OSError, ValueError):
            continue
    if domains:
        return RaplMeter(domains), ""
    if denied:
        # Kernels since 5.10 let only root read them (a power side channel, CVE-2020-8694).
        return None, (f"RAPL counters not readable ({denied[0]}: permission denied; run as "
                      "root or make energy_uj readable)")
    return None, "no readable RAPL counters"


# ----------------------------------------------------------------------------- NVML
class NvmlMeter:
    """NVIDIA GPUs' total-energy counters (millijoules since the driver loaded, 64 bits:
    no wrap-around in practice), read at start and stop."""

    def __init__(self, pynvml, handles: dict[str, object]):
        self._nvml = pynvml
        self.handles = handles  # GPU UUID -> NVML handle
        self._start: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        return {uuid: self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                for uuid, h in self.handles.items()}

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """Joules per GPU (by UUID) since start()."""
        return {uuid: (mj - self._start[uuid]) / 1e3 for uuid, mj in self._read().items()}

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


def _cuda_order(pynvml) -> list:
    """NVML handles in CUDA's numbering, which CUDA_VISIBLE_DEVICES restricts (indices or
    UUID prefixes; CUDA stops at the first entry it cannot resolve). Indices are NVML's PCI
    order: CUDA's, with CUDA_DEVICE_ORDER=PCI_BUS_ID or identical GPUs."""
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return handles
    uuids = [pynvml.nvmlDeviceGetUUID(h) for h in handles]
    visible = []
    for item in (s.strip() for s in spec.split(",")):
        found = ([int(item)] if item.isdigit() and int(item) < len(handles)
                 else [i for i, u in enumerate(uuids) if item and u.startswith(item)])
        if len(found) != 1:
            break
        visible.append(handles[found[0]])
    return visible


def open_nvml(gpu_ids: list[int]) -> tuple[NvmlMeter | None, str]:
    """A meter over this process's GPUs (their CUDA ordinals, JAX's local_hardware_id),
    else (None, why not). No driver, or no GPU that reports energy: None."""
    import pynvml  # pure Python: it needs the driver's library only at nvmlInit

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None, "no NVML device"
    try:
        order = _cuda_order(pynvml)
        handles = {}
        for gpu in gpu_ids:
            handle = order[gpu]
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # older than Volta: unsupported
            handles[pynvml.nvmlDeviceGetUUID(handle)] = handle
    except (pynvml.NVMLError, IndexError) as e:
        pynvml.nvmlShutdown()
        return None, f"NVML cannot read the GPUs' energy ({e})"
    if not handles:
        pynvml.nvmlShutdown()
        return None, "no NVML device"
    return NvmlMeter(pynvml, handles), ""
