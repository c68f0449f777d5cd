"""Energy to train: RAPL read from a powercap tree in sysfs's layout, NVML as this machine
has it (no driver), the recorder writing into a real MLPerf log, and how a log's events
read in words. The end-to-end runs are in test_end_to_end.py and test_multiprocess.py."""

import os
import threading

import pynvml

from suite import energy_log
from suite.mlperf_log import MLPerfLog
from suite.recorders import counters, energy
from tests.helpers import read_log

MAX_UJ = 262143328850  # a real package's max_energy_range_uj (61 uJ units, 32 bits)
NOT_MEASURED = "energy: not measured (no NVML device, no readable RAPL counters)"


def write_zone(root, zone: str, name: str, energy_uj: int) -> None:
    """One powercap zone as sysfs shows it: <root>/<zone>/{name,energy_uj,max_energy_range_uj}."""
    path = os.path.join(root, zone)
    os.makedirs(path, exist_ok=True)
    for file, value in (("name", name), ("energy_uj", energy_uj),
                        ("max_energy_range_uj", MAX_UJ)):
        with open(os.path.join(path, file), "w") as f:
            f.write(f"{value}\n")


def set_energy(root, zone: str, energy_uj: int) -> None:
    """The counter moves; written to a new file and renamed, so no reader sees it half
    written."""
    path = os.path.join(root, zone, "energy_uj")
    with open(path + ".new", "w") as f:
        f.write(f"{energy_uj}\n")
    os.replace(path + ".new", path)


def fake_powercap(root, package_uj: dict[int, int]) -> None:
    """A two-level RAPL tree: packages, their sub-domains (flat at the top, as in
    /sys/class/powercap, and nested), a psys zone, an -mmio twin of package 0, and the
    control-type directory."""
    os.makedirs(os.path.join(root, "intel-rapl"), exist_ok=True)
    with open(os.path.join(root, "intel-rapl", "enabled"), "w") as f:
        f.write("1\n")
    for k, uj in package_uj.items():
        write_zone(root, f"intel-rapl:{k}", f"package-{k}", uj)
        write_zone(root, f"intel-rapl:{k}:0", "core", 5)
        write_zone(root, os.path.join(f"intel-rapl:{k}", f"intel-rapl:{k}:0"), "core", 5)
    write_zone(root, "intel-rapl:9", "psys", 10**9)
    write_zone(root, "intel-rapl-mmio:0", "package-0", 77)


def bump_when(log_path: str, root, zone: str, new_uj: int, after: str) -> threading.Event:
    """In the background: once the log holds `after` (a run's training has begun, so its
    start reading is taken), the zone's counter becomes new_uj. Set the returned event
    once the run is over, to end the watch where it never came."""
    done = threading.Event()
    start = os.path.getsize(log_path) if os.path.exists(log_path) else 0

    def watch():
        while not done.wait(0.01):
            if os.path.exists(log_path):
                with open(log_path) as f:
                    f.seek(start)
                    if after in f.read():
                        set_energy(root, zone, new_uj)
                        return

    threading.Thread(target=watch, daemon=True).start()
    return done


def _nvml_here() -> bool:
    """Whether this host has an NVIDIA driver, in pynvml's own words (the test machines
    have none)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_rapl_counts_packages_once_across_wraps(tmp_path):
    fake_powercap(tmp_path, {0: MAX_UJ - 100, 1: 1_000})
    meter, why = counters.open_rapl(str(tmp_path))
    assert why == ""
    # Packages only: not their sub-domains, psys or the -mmio twin of package 0.
    assert meter.domains == {
        f"package-{k}": (str(tmp_path / f"intel-rapl:{k}" / "energy_uj"), MAX_UJ)
        for k in (0, 1)}
    meter.start()
    set_energy(tmp_path, "intel-rapl:0", 50)  # wrapped: 100 to the top, 1 to 0, then 50
    set_energy(tmp_path, "intel-rapl:0:0", 10**12)  # a sub-domain: already in its package
    meter.sample()
    set_energy(tmp_path, "intel-rapl:0", MAX_UJ - 10)  # most of a second lap
    meter.sample()
    set_energy(tmp_path, "intel-rapl:0", 2_000_000)  # and the second wrap
    set_energy(tmp_path, "intel-rapl:1", 3_001_000)
    used = meter.stop()
    assert used == {"package-0": (101 + 50 + (MAX_UJ - 60) + 11 + 2_000_000) / 1e6,
                    "package-1": 3.0}


def test_no_rapl_counters_is_said_not_guessed(tmp_path):
    assert counters.open_rapl(str(tmp_path / "absent")) == (None, "no readable RAPL counters")
    write_zone(tmp_path, "intel-rapl:0", "psys", 5)  # a platform zone, no package
    assert counters.open_rapl(str(tmp_path)) == (None, "no readable RAPL counters")


def test_nvml_without_a_driver_is_unavailable_and_logs_nothing(tmp_path, capsys):
    if _nvml_here():  # an NVIDIA host: the same recorder measures its GPU 0
        meter, why = counters.open_nvml([0])
        assert why == "" and len(meter.handles) == 1
        meter.close()
        return
    assert counters.open_nvml([0, 1]) == (None, "no NVML device")
    # The recorder of a GPU run on such a host, with no RAPL either: one line, no event.
    recorder = energy.EnergyRecorder([0, 1], powercap_root=str(tmp_path / "none"))
    log = MLPerfLog(str(tmp_path), echo=False)
    recorder.started(1_000, resumed=False)
    recorder.stopping(log)
    log.end("run_stop", time_ms=2_000, status="success")
    log.close()
    recorder.closed("success")
    assert capsys.readouterr().out == NOT_MEASURED + "\n"
    assert [e["key"] for e in read_log(log.path)] == ["run_stop"]
    assert energy_log.describe(energy_log.from_log(log.path)) is None


def test_recorder_logs_the_packages_energy_before_run_stop(tmp_path, capsys):
    root = tmp_path / "powercap"
    fake_powercap(root, {0: 5_000_000, 1: MAX_UJ - 1})
    log = MLPerfLog(str(tmp_path), echo=False)

    def segment(run_start_ms: int, resumed: bool, moved: dict[int, int]) -> None:
        recorder = energy.EnergyRecorder(None, powercap_root=str(root))
        recorder.started(run_start_ms, resumed)
        for k, uj in moved.items():
            set_energy(root, f"intel-rapl:{k}", uj)
        recorder.stopping(log)
        recorder.stopping(log)  # an error after run_stop calls it again: logged once
        recorder.closed("paused")

    segment(1_000, False, {0: 17_345_678, 1: 2_000_000})  # 12.345678 J + 2.000002 J (wrap)
    set_energy(root, "intel-rapl:0", 99_000_000)  # while no process ran: not counted
    segment(1_000, True, {0: 99_500_000})
    log.end("run_stop", time_ms=9_000, status="success")
    log.close()
    assert capsys.readouterr().out == ""  # measured: no "not measured" line
    events = read_log(log.path)
    assert [e["key"] for e in events] == ["jaxperf_energy_j"] * 2 + ["run_stop"]
    assert [e["value"] for e in events[:2]] == [14.346, 0.5]
    first, second = events[0]["metadata"], events[1]["metadata"]
    assert {k: first[k] for k in ("source", "domains", "hosts", "processes", "since_ms",
                                  "partial")} == {
        "source": "rapl", "domains": 2, "hosts": 1, "processes": 1, "since_ms": 1_000,
        "partial": False}
    assert second["partial"] is True and second["since_ms"] > 1_000
    assert energy_log.describe(energy_log.from_log(log.path)[:1]) == \
        "14.3 J (rapl, 2 CPU packages)"
    assert energy_log.describe(energy_log.from_log(log.path)) == (
        "14.8 J (rapl, 2 CPU packages; resumed 1x: the time it was stopped is not counted)")
    # A run whose first process was killed before it logged: only the resumed part.
    assert energy_log.describe(energy_log.from_log(log.path)[1:]) == (
        "0.5 J (rapl, 2 CPU packages; resumed: what ran before the resume is not counted)")


def test_gathered_readings_count_each_gpu_and_each_hosts_packages_once():
    """Four processes on two hosts: each reads its own GPU and its host's packages."""
    readings = [
        {"host": "a", "nvml": {"GPU-1": 100.0}, "rapl": {"package-0": 10.0}},
        {"host": "a", "nvml": {"GPU-2": 200.0}, "rapl": {"package-0": 10.5}},
        {"host": "b", "nvml": {"GPU-3": 300.0}, "rapl": {"package-0": 20.0,
                                                         "package-1": 30.0}},
        {"host": "b"},  # a process whose counters were unreadable
    ]
    assert energy.merge(readings) == {
        "nvml": {"joules": 600.0, "devices": 3, "hosts": 2},
        "rapl": {"joules": 60.0, "devices": 3, "hosts": 2}}
    assert energy.merge([{"host": "a"}]) == {}
    events = [{"value": 1234.5, "metadata": {"source": "nvml", "devices": 16, "hosts": 2}},
              {"value": 60.0, "metadata": {"source": "rapl", "domains": 4, "hosts": 2}}]
    assert energy_log.describe(events) == \
        "1,234 J (nvml, 16 GPUs on 2 hosts) + 60.0 J (rapl, 4 CPU packages on 2 hosts)"


def test_a_resume_keeps_the_energy_logged_as_the_run_stopped(tmp_path):
    """A pause logs its energy past its checkpoint, and a preemption right after a block
    end's checkpoint its energy and the notice: they describe the stop and stay on resume;
    a block's events past a checkpoint would be trained and logged again, so they move."""
    log = MLPerfLog(str(tmp_path), echo=False)
    log.event("seed", 0)
    size = log.size()
    log.event(energy_log.KEY, 5.0, source="rapl")
    log.event("jaxperf_preempted", 12)
    assert log.cut(size) == (0, None) and len(read_log(log.path)) == 3
    log.event("epoch_start", epoch_num=2)
    assert log.cut(size)[0] == 3 and [e["key"] for e in read_log(log.path)] == ["seed"]
    log.close()
