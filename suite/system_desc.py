"""The system description of an MLPerf submission, detected from this machine.

Every value is a string: the official system_desc checker joins several fields with ",".join
and its summarizer int()s others, so numbers as JSON numbers crash one or the other.
"""

import glob
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata

from common.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Log submission_status -> system "status": from 4.0.0 on the system_desc checker accepts
# only these availability strings, not the log's short words.
STATUS = {"onprem": "Available on-premise", "cloud": "Available cloud", "preview": "Preview",
          "research": "Research, Development, or Internal (RDI)"}
# Every field system_desc_checker requires (it keeps its list inside a function).
SYSTEM_FIELDS = (
    "submitter", "division", "status", "system_name", "number_of_nodes",
    "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_processor_vcpu_count", "host_processor_frequency", "host_processor_caches",
    "host_processor_interconnect", "host_memory_capacity", "host_storage_type",
    "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
    "other_software_stack", "operating_system", "sw_notes",
)
_CACHE_KIND = {"Data": "d", "Instruction": "i"}

def detect_system(*, division: str, status: str, org: str, system_name: str | None = None,
                  overrides: dict | None = None) -> dict:
    """The system description JSON, detected from this machine; overrides win.

    Every value is a string: the official tools join them and int() the counts. What no
    program can see (cooling, interconnects, DIMM layout) stays '' for an override.
    """
    import jax  # lazily: importing this module must not start a JAX backend

    dev = jax.devices()
    try:
        stats = dev[0].memory_stats() or {}
    except Exception:  # backends without memory stats: the capacity is left for an override
        stats = {}
    na = "N/A" if dev[0].platform == "cpu" else ""
    desc = {f: na if f.startswith("accelerator") else "" for f in SYSTEM_FIELDS}
    desc.update(_host())
    desc.update({
        "submitter": org, "division": division, "status": status,
        # The log's default submission_platform '<count>x<kind>', made path-safe.
        "system_name": system_name or re.sub(r"[^\w.+-]+", "_", f"{len(dev)}x{dev[0].device_kind}"),
        "number_of_nodes": str(jax.process_count()),
        # MLPerf CPU-only systems report 0 accelerators; the summarizer int()s this field.
        "accelerators_per_node": "0" if na else str(jax.local_device_count()),
        "accelerator_model_name": na or dev[0].device_kind,
        "accelerator_memory_capacity": na or (_bytes(stats["bytes_limit"])
                                              if "bytes_limit" in stats else ""),
        "framework": f"JAX {jax.__version__}, Flax {version('flax')}",
        "sw_notes": f"jaxperf {code_version()}",
    })
    for field, value in (overrides or {}).items():
        if field not in desc:
            raise UserError(f"unknown system field {field!r}; known: {', '.join(SYSTEM_FIELDS)}")
        desc[field] = str(value)
    if desc["status"] not in STATUS.values():
        if desc["status"].lower() not in STATUS:
            raise UserError(f"submission status {desc['status']!r} is not valid; use one of "
                            f"{', '.join(STATUS)}")
        desc["status"] = STATUS[desc["status"].lower()]
    if desc["division"] not in ("closed", "open"):
        raise UserError(f"division {desc['division']!r} is not valid; use closed or open")
    check_name("submission org", desc["submitter"])
    check_name("system name", desc["system_name"])
    return desc


def _host() -> dict:
    cpu: dict[str, list[str]] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        cpu.setdefault(key.strip(), []).append(value.strip())
    vcpus = len(cpu.get("processor", [])) or os.cpu_count() or 1
    sockets = len(set(cpu.get("physical id", []))) or 1
    # The rated maximum clock where the kernel knows it; "cpu MHz" is the current one.
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    mhz = int(khz) / 1000 if khz.isdigit() else float(cpu.get("cpu MHz", ["0"])[0])
    caches = [[_read(f"{i}/{n}").strip() for n in ("level", "type", "size")]
              for i in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"))]
    mem = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        os_name = platform.system()
    stack = [f"{d} {version(d)}" for d in ("jaxlib", "jax-cuda12-plugin", "libtpu", "optax",
                                            "orbax-checkpoint", "mlperf-logging") if version(d)]
    return {
        "host_processors_per_node": str(sockets),
        "host_processor_model_name": (cpu.get("model name") or [platform.machine()])[0],
        "host_processor_core_count": cpu.get("cpu cores", [str(vcpus // sockets)])[0],
        "host_processor_vcpu_count": str(vcpus),
        "host_processor_frequency": f"{mhz:.0f} MHz" if mhz else "",
        # Named as lscpu does: L1d, L1i, L2, L3.
        "host_processor_caches": ", ".join(f"L{lv}{_CACHE_KIND.get(k, '')} {size}"
                                           for lv, k, size in caches),
        "host_memory_capacity": _bytes(int(mem.group(1)) * 1024) if mem else "",
        "host_storage_capacity": _bytes(shutil.disk_usage("/").total),
        "operating_system": f"{os_name}, kernel {platform.release()}",
        "other_software_stack": ", ".join([f"Python {platform.python_version()}", *stack]),
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # not Linux, or no such sysfs entry: the field stays unknown
        return ""


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def code_version() -> str:
    # A read-only git query: the commit that produced the runs, else the installed version.
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        out = None
    if out and out.returncode == 0:
        return f"commit {out.stdout.strip()}"
    return f"version {version('jaxperf') or 'unknown'}"


def check_name(what: str, name: str) -> None:
    # Names become directories; the repo checker rejects spaces and leading dots.
    if not name or name.startswith(".") or re.search(r"[\s/\\]", name):
        raise UserError(f"{what} {name!r} cannot name a package directory; use one without "
                        "spaces or slashes that does not start with '.'")
