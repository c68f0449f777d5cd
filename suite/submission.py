"""N run logs -> an MLPerf training submission package, judged by the official checkers.

The library behind `python -m tools.submission` and `suite.main --submission_dir`.

Layout: <org>/systems/<system>.json, <org>/results/<system>/<benchmark>/result_<i>.txt and
<org>/benchmarks/<benchmark>/implementations/<impl>/README.md (+ run_configs/). The official
tools run as subprocesses: they configure the root logger, keep module globals and drop
log files in their cwd, none of which should reach a training process.
"""

import csv
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import mlperf_logging
from mlperf_logging.benchmark_meta import get_allowed_benchmarks, get_result_file_counts

from common.errors import UserError
from suite import energy_log
from suite.mlperf_log import LOG_NAME
from suite.system_desc import (
    STATUS,
    SYSTEM_FIELDS,
    check_name,
    code_version,
    detect_system,
    version,
)

__all__ = ["detect_system", "write_package", "check_package", "summarize", "rcp_check"]

USAGE = "training"
DEFAULT_RULESET = "4.0.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TOOLS = os.path.dirname(mlperf_logging.__file__)
_LOG_KEYS = ("submission_benchmark", "submission_division", "submission_org",
             "submission_status", "submission_platform", "seed", "run_start", "run_stop")
_TOKEN = ":::MLLOG "


# ----------------------------------------------------------------------------- package
def write_package(out_dir: str, *, log_paths: list[str], benchmark: str, system: dict,
                  implementation: str = "jax") -> str:
    """Writes one system's package of one benchmark from logs or run workdirs; returns
    <out_dir>/<org>. All is validated before the first write: a refusal leaves nothing."""
    counts = get_result_file_counts(USAGE)
    if benchmark not in counts:
        raise UserError(f"{benchmark!r} is no MLPerf training benchmark; use one of "
                        f"{', '.join(sorted(counts))}")
    missing = [f for f in SYSTEM_FIELDS if f not in system]
    if missing:
        raise UserError(f"system description lacks {', '.join(missing)}; use detect_system()")
    org, name = system["submitter"], system["system_name"]
    for what, value in (("org", org), ("system name", name), ("implementation", implementation)):
        check_name(what, value)
    logs, need = [_read_log(p) for p in log_paths], counts[benchmark]
    if len(logs) != need:  # the package checker wants exactly this many result files
        fix = (f"run {need - len(logs)} more with different --seed values" if len(logs) < need
               else f"pass {need} of them")
        raise UserError(f"{benchmark} needs exactly {need} run logs, got {len(logs)}; {fix}")
    _check_logs_agree(logs, benchmark, system)

    results = os.path.join(out_dir, org, "results", name, benchmark)
    if os.path.isdir(results) and os.listdir(results):
        raise UserError(f"{results} already holds results; remove it or pick another directory")
    system_file = os.path.join(out_dir, org, "systems", f"{name}.json")
    if os.path.exists(system_file) and _load_json(system_file) != system:
        raise UserError(f"{system_file} describes another system; remove it or rename the system")
    impl = os.path.join(out_dir, org, "benchmarks", benchmark, "implementations", implementation)
    for d in (results, os.path.dirname(system_file), os.path.join(impl, "run_configs")):
        os.makedirs(d, exist_ok=True)
    with open(system_file, "w") as f:
        f.write(json.dumps(system, indent=2) + "\n")
    for i, log in enumerate(logs):
        shutil.copyfile(log["path"], os.path.join(results, f"result_{i}.txt"))
        if log["config"]:
            shutil.copyfile(log["config"], os.path.join(impl, "run_configs", f"result_{i}.json"))
    with open(os.path.join(impl, "README.md"), "w") as f:
        f.write(_readme(logs, benchmark, system))
    return os.path.join(out_dir, org)


def _read_log(path: str) -> dict:
    path = os.path.join(path, LOG_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise UserError(f"no MLPerf log at {path}; pass run workdirs or their {LOG_NAME}")
    first: dict = {}
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            try:
                event = json.loads(line.split(_TOKEN, 1)[1]) if _TOKEN in line else {}
            except json.JSONDecodeError:
                raise UserError(f"{path} line {n} is no MLPerf record; pass unedited logs") \
                    from None
            first.setdefault(event.get("key"), event)
    for key in _LOG_KEYS:
        if key not in first:
            raise UserError(f"{path} has no {key} record; pass complete logs of finished runs")
    config = os.path.join(os.path.dirname(path), "config.json")
    return {"path": path, "config": config if os.path.isfile(config) else None,
            **{k: first[k]["value"] for k in _LOG_KEYS[:6]},
            "status": first["run_stop"]["metadata"].get("status"),
            "energy": energy_log.describe(energy_log.from_log(path)) or "not measured"}


def _check_logs_agree(logs: list[dict], benchmark: str, system: dict) -> None:
    # (log key, the value every log must have, the fix). The package checker reads the
    # division from the system JSON alone, so logs and JSON must agree.
    rules = (("submission_benchmark", benchmark, "package each benchmark's logs on their own"),
             ("submission_division", system["division"], "package runs of one division, "
              "with a system description of that division"),
             ("submission_org", system["submitter"], "describe the system with that org"),
             ("submission_status", system["status"], "describe the system with that status"),
             ("submission_platform", logs[0]["submission_platform"], "a package holds the "
              "runs of one system"))
    for key, want, fix in rules:
        for log in logs:
            if STATUS.get(log[key], log[key]) != want:
                raise UserError(f"{log['path']} has {key} {log[key]!r} where the package has "
                                f"{want!r}; {fix}")
    seeds: dict = {}
    for log in logs:
        if log["seed"] in seeds:
            raise UserError(f"{log['path']} and {seeds[log['seed']]} both use seed "
                            f"{log['seed']}; every run needs its own --seed")
        seeds[log["seed"]] = log["path"]


def _readme(logs: list[dict], benchmark: str, system: dict) -> str:
    rows = []
    for i, log in enumerate(logs):
        opts = _load_json(log["config"]).get("options", {}) if log["config"] else {}
        flags = {"workload": opts.get("workload", benchmark), "preset": opts.get("preset"),
                 "data": opts.get("data") if opts.get("data") != "real" else None,
                 "data_dir": opts.get("data_dir"), "division": log["submission_division"],
                 "seed": log["seed"], "submission_org": log["submission_org"],
                 "submission_platform": opts.get("submission_platform"),
                 "submission_status": log["submission_status"]}
        cmd = " ".join(f"--{k}={v}" for k, v in flags.items() if v not in (None, ""))
        rows.append(f"| `result_{i}.txt` | {log['status']} | {log['energy']} | "
                    f"`python -m suite.main {cmd}` |")
    return (
        f"# {benchmark}: the jaxperf implementation\n\nCode: jaxperf ({code_version()}), "
        "MLPerf-style time-to-train benchmarks in JAX/Flax. This directory points at that code "
        f"rather than copying it: the workload is `suite/workloads/{benchmark}.py`, the run "
        "lifecycle `suite/lifecycle.py`, its loop `suite/loops/`, the entry point "
        "`suite/main.py`.\n\n"
        f"System `{system['system_name']}` ({system['framework']}), {system['division']} "
        "division.\n\n## Runs\n\nEach run was started in a jaxperf checkout with the command "
        "shown; `run_configs/result_<i>.json` is its resolved config where its workdir had "
        "one. Energy to train is jaxperf's `jaxperf_energy_j` (NVML, RAPL), not MLPerf's "
        "power measurement, which needs an external power analyser.\n\n"
        "| result | run_stop | energy to train | command |\n|---|---|---|---|\n"
        + "\n".join(rows) + "\n")


def _load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- checkers
@dataclasses.dataclass(frozen=True)
class CheckResult:
    passed: bool
    reasons: tuple[str, ...]  # errors, each result file's findings, then 'warning: ...'
    output: str  # the tools' full output, for bug reports

    def summary(self) -> str:
        return ("PASS" if self.passed else "FAIL") + "".join(f"\n  {r}" for r in self.reasons)


def check_package(package_dir: str, ruleset: str = DEFAULT_RULESET) -> CheckResult:
    """The official package checker and repo checker on the <org> directory package_dir."""
    org_dir = _org_dir(package_dir, ruleset)
    pkg = _official("package_checker", org_dir, USAGE, ruleset)
    repo = _official("repo_checker", org_dir, USAGE, ruleset)  # exits 0 whatever it finds
    notes = []
    if "invalid choice" in repo:
        # The repo checker starts at training 2.0.0; older rulesets (the Transformer's
        # 0.7.0) have only the package checker.
        notes.append(f"note: the official repo_checker has no {USAGE} {ruleset} ruleset; "
                     "the package checker alone judged this package")
        repo = "ALL CHECKS PASSED (not applicable)"
    passed = ("PACKAGE CHECKER FOUND NO ERRORS" in pkg and "ALL CHECKS PASSED" in repo
              and "Traceback" not in pkg + repo)
    # The summarizer drops only runs that fail compliance; in the open division an aborted
    # run passes compliance, so its time is scored as if it had converged.
    aborted = []
    for path in sorted(glob.glob(os.path.join(org_dir, "results", "*", "*", "result_*.txt"))):
        try:
            status = _read_log(path)["status"]
        except UserError:
            continue  # the package checker has said what is wrong with it
        if status != "success":
            aborted.append(f"warning: {os.path.relpath(path, org_dir)}: run_stop {status}; it "
                           "did not converge, yet the summarizer scores its time")
    return CheckResult(passed, _reasons(pkg + repo) + tuple(aborted + notes), pkg + repo)


def rcp_check(package_dir: str, ruleset: str, benchmark: str) -> CheckResult | None:
    """The official RCP checker on each system's <benchmark> results; None without RCPs.

    The package checker applies it to the closed division only; this runs it regardless,
    without set_scaling, so it never writes scaling.json into the package.
    """
    org_dir = _org_dir(package_dir, ruleset)
    dirs = sorted(glob.glob(os.path.join(org_dir, "results", "*", benchmark)))
    if not dirs or not os.path.isfile(
            os.path.join(_TOOLS, "rcp_checker", f"{USAGE}_{ruleset}", f"rcps_{benchmark}.json")):
        return None
    passed, reasons, output = True, [], ""
    for d in dirs:
        out = _official("rcp_checker", d, "--rcp_usage", USAGE, "--rcp_version", ruleset)
        verdict = re.search(r"- +(.*), RCP test (PASSED|FAILED)", out)
        passed = passed and bool(verdict) and verdict.group(2) == "PASSED"
        why = verdict.group(1) if verdict else "no verdict"
        # In words: the fewest epochs the compared RCP allows before a run is too fast.
        rcp = re.search(r"RCP Record: .*?'BS': (\d+).*'Min Epochs': (?:np.float64\()?([\d.]+)",
                        out)
        mean = re.search(r"Submission mean epochs: ([\d.]+)", out)
        if rcp and mean:
            why += (f" (olympic mean {mean.group(1)} epochs to converge; the RCP at batch "
                    f"{rcp.group(1)} allows no fewer than {float(rcp.group(2)):.2f})")
        reasons.append(f"{os.path.basename(os.path.dirname(d))}/{benchmark}: {why}")
        output += out
    warnings = [r for r in _reasons(output) if r.startswith("warning:")]
    return CheckResult(passed, tuple(reasons + warnings), output)


def summarize(package_dir: str, ruleset: str = DEFAULT_RULESET) -> dict:
    """The official result summarizer's scores, in minutes.

    {benchmark: minutes} when the package has one system, always 'by_system' ({system:
    {benchmark: minutes}}) and 'output' (its text). The tool prints no numbers;
    the scores come from the CSV it writes, at full float precision.
    """
    org_dir, rows = _org_dir(package_dir, ruleset), []
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, "summary.csv")
        output = _official("result_summarizer", org_dir, USAGE, ruleset, "--csv", table, cwd=tmp)
        if os.path.isfile(table):
            with open(table) as f:
                rows = list(csv.DictReader(f))
    by_system: dict[str, dict[str, float]] = {}
    for row in rows:
        for bench in get_allowed_benchmarks(USAGE, ruleset):
            if row.get(bench) not in (None, "", "nan"):
                by_system.setdefault(row["system"], {})[bench] = float(row[bench])
    only = list(by_system.values())[0] if len(by_system) == 1 else {}
    return {**only, "by_system": by_system, "output": output}


def _org_dir(package_dir: str, ruleset: str) -> str:
    if not os.path.isdir(package_dir):
        raise UserError(f"no submission package at {package_dir}; pass the <org> directory")
    for sub in ("results", "systems"):
        if not os.path.isdir(os.path.join(package_dir, sub)):
            raise UserError(f"{package_dir} has no {sub}/ folder; pass the <org> directory of "
                            "a submission package")
    if not os.path.isdir(os.path.join(_TOOLS, "compliance_checker", f"{USAGE}_{ruleset}")):
        raise UserError(f"mlperf-logging {version('mlperf-logging')} has no {USAGE} ruleset "
                        f"{ruleset!r}; pass one like {DEFAULT_RULESET}")
    return os.path.abspath(package_dir)


def _official(tool: str, *args: str, cwd: str | None = None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        log = [] if tool == "result_summarizer" else ["--log_output", f"{tmp}/{tool}.log"]
        proc = subprocess.run([sys.executable, "-m", f"mlperf_logging.{tool}", *args, *log],
                              capture_output=True, text=True, cwd=cwd or tmp)
    return proc.stdout + proc.stderr


def _reasons(output: str) -> tuple[str, ...]:
    """ERROR lines, then each result file's compliance findings, then other warnings."""
    errors, findings, warnings, run = [], [], [], ""
    for line in output.splitlines():
        m = re.match(r"(ERROR|WARNING|INFO) - +(.*)", line)
        text = (m.group(2) if m else line).strip()
        if m and text.startswith("Running compliance on file:"):
            run = os.path.basename(text.split(":", 1)[1].strip())
        elif m and m.group(1) == "ERROR":
            errors.append(text)
        elif run and re.match(r"CHECK for .* failed in line \d+|failed test: |Required ", text):
            findings.append(f"{run}: {' '.join(text.rstrip(':').split())}")
        elif m and m.group(1) == "WARNING":
            warnings.append(f"warning: {text}")
    if "Traceback" in output:
        errors.append(f"checker crashed: {output.strip().splitlines()[-1]}")
    return tuple(dict.fromkeys(errors + findings + warnings))
