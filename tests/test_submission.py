"""A submission package built from real tiny-preset runs, judged by the official MLPerf tools."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from common.errors import UserError
from suite import submission
from suite.mlperf_log import MLPerfLog
from tests.helpers import read_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLATFORM = "1xcpu"  # the runs' submission_platform and the package's system name
RUNS = 5  # what benchmark_meta asks of resnet


@pytest.fixture(scope="session")
def run_dirs(tiny_benchmark) -> list[str]:
    """The five real tiny-preset runs (seeds 0-4) of the shared benchmark fixture."""
    workdir, _, _ = tiny_benchmark
    return [os.path.join(workdir, f"run_{seed}") for seed in range(RUNS)]


@pytest.fixture(scope="session")
def system() -> dict:
    return submission.detect_system(division="open", status="research", org="jaxperf",
                                    system_name=PLATFORM, overrides={"cooling": "air"})


@pytest.fixture(scope="session")
def package(run_dirs, system, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("package")
    return submission.write_package(str(out), log_paths=run_dirs, benchmark="resnet",
                                    system=system)


def test_package_has_the_official_layout_and_passes_the_official_checkers(package, run_dirs):
    results = os.path.join(package, "results", PLATFORM, "resnet")
    assert sorted(os.listdir(results)) == [f"result_{i}.txt" for i in range(RUNS)]
    for i, run in enumerate(run_dirs):
        with open(os.path.join(results, f"result_{i}.txt")) as a, \
                open(os.path.join(run, "mlperf_log.txt")) as b:
            assert a.read() == b.read()
    impl = os.path.join(package, "benchmarks", "resnet", "implementations", "jax")
    assert sorted(os.listdir(os.path.join(impl, "run_configs"))) == [
        f"result_{i}.json" for i in range(RUNS)]
    with open(os.path.join(impl, "README.md")) as f:
        readme = f.read()
    for seed in range(RUNS):  # the exact command of every run
        assert (f"python -m suite.main --workload=resnet --preset=tiny --division=open "
                f"--seed={seed} --submission_org=jaxperf --submission_platform={PLATFORM}"
                in readme)
    verdict = submission.check_package(package, "4.0.0")
    assert verdict.passed, verdict.output
    assert not [r for r in verdict.reasons if not r.startswith("warning:")], verdict.reasons


def test_summarizer_score_is_the_olympic_mean_of_the_logs_in_minutes(package, run_dirs):
    minutes = []
    for run in run_dirs:
        stamps = {e["key"]: e["time_ms"] for e in read_log(os.path.join(run, "mlperf_log.txt"))}
        minutes.append((stamps["run_stop"] - stamps["run_start"]) / 60 / 1000)
    olympic = sum(sorted(minutes)[1:-1]) / (RUNS - 2)  # drop the fastest and the slowest
    scores = submission.summarize(package, "4.0.0")
    assert scores["by_system"] == {PLATFORM: {"resnet": scores["resnet"]}}
    # Full precision: the summarizer's CSV keeps every digit, and it sums in this order.
    assert scores["resnet"] == pytest.approx(olympic, rel=1e-12, abs=0)


def test_system_description_is_detected_and_passes_the_official_checker(system, tmp_path):
    assert set(system) == set(submission.SYSTEM_FIELDS)
    assert all(isinstance(v, str) for v in system.values())  # the checker joins them
    with open("/proc/cpuinfo") as f:
        vcpus = sum(line.startswith("processor") for line in f)
    assert system["host_processor_vcpu_count"] == str(vcpus)
    assert int(system["host_processor_core_count"]) >= 1
    assert system["host_processor_model_name"] and system["host_memory_capacity"].endswith("iB")
    assert (system["accelerators_per_node"], system["accelerator_model_name"]) == ("0", "N/A")
    assert re.fullmatch(r"JAX \S+, Flax \S+", system["framework"])
    assert system["status"] == "Research, Development, or Internal (RDI)"
    assert (system["division"], system["submitter"], system["cooling"]) == ("open", "jaxperf",
                                                                             "air")
    assert re.fullmatch(r"\d+xcpu", submission.detect_system(
        division="closed", status="onprem", org="x")["system_name"])
    path = tmp_path / "system.json"
    path.write_text(json.dumps(system))
    out = subprocess.run([sys.executable, "-m", "mlperf_logging.system_desc_checker", str(path),
                          "training", "4.0.0", "--log_output", str(tmp_path / "log")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert "System description checker passed" in out.stdout + out.stderr, out.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"status": "sometimes"}, "submission status 'sometimes' is not valid"),
    ({"overrides": {"colour": "red"}}, "unknown system field 'colour'"),
    ({"system_name": "my box"}, "cannot name a package directory"),
])
def test_bad_system_input_is_refused(kwargs, message):
    args = {"division": "open", "status": "research", "org": "jaxperf", **kwargs}
    with pytest.raises(UserError, match=message):
        submission.detect_system(**args)


@pytest.mark.parametrize("key, value, message", [
    ("submission_benchmark", "bert", "has submission_benchmark 'bert' where the package has "
                                     "'resnet'"),
    ("submission_division", "closed", "has submission_division 'closed'"),
    ("seed", 3, "both use seed 3"),
])
def test_refuses_logs_that_do_not_belong_together(run_dirs, system, tmp_path, key, value,
                                                  message):
    edited = tmp_path / "edited.txt"
    lines = []
    for line in open(os.path.join(run_dirs[0], "mlperf_log.txt")):
        event = json.loads(line[len(":::MLLOG "):]) if line.startswith(":::MLLOG ") else None
        if event and event["key"] == key:
            line = ":::MLLOG " + json.dumps({**event, "value": value}) + "\n"
        lines.append(line)
    edited.write_text("".join(lines))
    with pytest.raises(UserError, match=message):
        submission.write_package(str(tmp_path / "out"), log_paths=[str(edited), *run_dirs[1:]],
                                 benchmark="resnet", system=system)
    assert not os.path.exists(tmp_path / "out")  # refused before writing anything


def test_refuses_too_few_logs_and_an_existing_package(run_dirs, system, package, tmp_path):
    with pytest.raises(UserError, match="resnet needs exactly 5 run logs, got 4; run 1 more"):
        submission.write_package(str(tmp_path), log_paths=run_dirs[:4], benchmark="resnet",
                                 system=system)
    with pytest.raises(UserError, match="already holds results"):
        submission.write_package(os.path.dirname(package), log_paths=run_dirs,
                                 benchmark="resnet", system=system)


def test_checker_reasons_name_the_problem(package, tmp_path):
    broken = shutil.copytree(package, tmp_path / "jaxperf")
    os.remove(broken / "results" / PLATFORM / "resnet" / "result_4.txt")
    verdict = submission.check_package(str(broken), "4.0.0")
    assert not verdict.passed
    assert any("found 4, expected 5" in r for r in verdict.reasons), verdict.reasons


def test_rcp_checker_has_no_reference_point_for_tiny_batches(package):
    before = sorted(os.listdir(os.path.join(package, "results", PLATFORM, "resnet")))
    verdict = submission.rcp_check(package, "4.0.0", "resnet")
    # Tiny runs use batch 128 and converge in ~10 epochs; the smallest resnet RCP is batch
    # 1632 at ~35 epochs, so the checker asks for an RCP at this batch size.
    assert not verdict.passed
    assert "Missing RCP, please submit RCP with BS = 128" in verdict.reasons[0]
    assert sorted(os.listdir(os.path.join(package, "results", PLATFORM, "resnet"))) == before
    assert submission.rcp_check(package, "4.1.0", "resnet") is None  # resnet left in 4.1


def test_cli_prints_the_verdict_and_the_score(package, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tools.submission", "check", *args],
                              cwd=ROOT, capture_output=True, text=True)

    ok = cli(package, "--ruleset", "4.0.0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS" in ok.stdout
    assert re.search(rf"score {PLATFORM}/resnet: \d+\.\d{{4}} minutes", ok.stdout)
    missing = cli(str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no submission package" in missing.stderr


def test_package_notes_each_runs_energy(run_dirs, system, tmp_path):
    """The implementation README's table gives each run's energy to train from its log:
    the tiny runs trained where nothing was measured; one is given a measured figure."""
    scratch = MLPerfLog(str(tmp_path), echo=False)  # the event as the recorder logs it
    scratch.event("jaxperf_energy_j", 7.0, source="rapl", domains=1, hosts=1, processes=1,
                  since_ms=0, partial=False)
    scratch.close()
    energy_line = open(scratch.path).read()
    measured = tmp_path / "measured" / "mlperf_log.txt"
    measured.parent.mkdir()
    lines = open(os.path.join(run_dirs[0], "mlperf_log.txt")).readlines()
    stop = next(i for i, line in enumerate(lines) if '"key": "run_stop"' in line)
    measured.write_text("".join(lines[:stop] + [energy_line] + lines[stop:]))
    org = submission.write_package(str(tmp_path / "out"), log_paths=[str(measured),
                                   *run_dirs[1:]], benchmark="resnet", system=system)
    with open(os.path.join(org, "benchmarks", "resnet", "implementations", "jax",
                           "README.md")) as f:
        rows = [line for line in f if line.startswith("| `result_")]
    assert len(rows) == RUNS
    assert "| 7.0 J (rapl, 1 CPU package) |" in rows[0]
    assert all("| not measured |" in row for row in rows[1:]), rows
