"""The MLPerf inference submission layout (v6.x), from one suite.infer workdir.

<root>/open/<org>/systems/<system>.json
<root>/open/<org>/src/jaxperf/                the code that produced the results
<root>/open/<org>/documentation/calibration.md   int8 only: how it was quantized
<root>/open/<org>/results/<system>/<model>/<Scenario>/
    measurements.json  user.conf  README.md
    performance/run_1/{mlperf_log_detail.txt, mlperf_log_summary.txt}
    accuracy/{mlperf_log_detail.txt, mlperf_log_summary.txt, mlperf_log_accuracy.json,
              accuracy.txt}
    TEST01/{verify_accuracy.txt, verify_performance.txt, accuracy/, performance/run_1/}
    TEST04/{verify_performance.txt, performance/run_1/}

The accuracy log is kept whole only as its sha256 (in accuracy.txt): the package holds its
first and last 4,096 characters, as MLPerf's truncation rule has it. Everything is written
into a temporary folder beside the package and moved into place at the end, so a refusal
or a crash leaves nothing half-written.
"""

import hashlib
import json
import os
import shutil
import tempfile

from common.errors import UserError
from suite import system_desc
from suite.serving import results

KEEP_CHARS = 4096
LOGS = ("mlperf_log_detail.txt", "mlperf_log_summary.txt")
# Log availability words -> the inference system description's status.
STATUS = {"Available on-premise": "available", "Available cloud": "available",
          "Preview": "preview", "Research, Development, or Internal (RDI)": "rdi"}
INFERENCE_FIELDS = ("system_type", "system_type_detail", "host_network_card_count")
CODE = ("common", "flags", "input_pipelines", "metrics", "models", "suite", "tools")


def system(*, org: str, system_name: str | None, scenarios, overrides: dict) -> dict:
    """The training system description plus the inference fields; what no program can
    see is 'N/A' (the checker wants every field it requires to say something)."""
    base = {k: v for k, v in overrides.items() if k not in INFERENCE_FIELDS}
    desc = system_desc.detect_system(division="open", status="research", org=org,
                                     system_name=system_name, overrides=base)
    desc["status"] = STATUS[desc["status"]]
    edge = {"SingleStream", "MultiStream", "Offline"}
    desc["system_type"] = ("datacenter,edge" if "Server" in scenarios and set(scenarios) & edge
                           else "datacenter" if "Server" in scenarios else "edge")
    desc["system_type_detail"] = "N/A"
    desc["host_network_card_count"] = "0"
    for field in INFERENCE_FIELDS:
        if field in overrides:
            desc[field] = str(overrides[field])
    return {k: (v if v not in ("", None) else "N/A") for k, v in desc.items()}


def truncate_accuracy_log(source: str, dest: str) -> str:
    """Copies the first and last KEEP_CHARS characters; returns the whole file's sha256."""
    with open(source, "rb") as f:
        whole = f.read()
    text = whole.decode()
    with open(dest, "w") as f:
        f.write(text if len(text) <= 2 * KEEP_CHARS
                else text[:KEEP_CHARS] + "\n\n...\n\n" + text[-KEEP_CHARS:])
    return hashlib.sha256(whole).hexdigest()


def _copy_logs(source: str, dest: str, extra=()) -> None:
    os.makedirs(dest, exist_ok=True)
    for name in (*LOGS, *extra):
        shutil.copyfile(os.path.join(source, name), os.path.join(dest, name))


def write(root: str, *, workdir: str, rows: list[dict], workload, system_json: dict,
          measurements: dict, readme: str, calibration_md: str | None) -> str:
    """Writes the package of one suite.infer workdir; returns the org directory."""
    org, name, model = system_json["submitter"], system_json["system_name"], \
        workload.inference_model
    results_dir = os.path.join(root, "open", org, "results", name, model)
    if os.path.exists(results_dir):
        raise UserError(f"{results_dir} already exists; remove it or pick another "
                        "--submission_dir")
    for row in rows:
        missing = [m for m in ("performance", "accuracy") if m not in row]
        if missing or "compliance" not in row:
            raise UserError(f"a submission needs --mode=both and the compliance tests for "
                            f"{row['scenario']}; run again with --mode=both")
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".jaxperf-package-", dir=root)
    try:
        org_dir = os.path.join(staging, "open", org)
        _write_org(org_dir, workdir, rows, workload, system_json, measurements, readme,
                   calibration_md)
        _merge(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(root, "open", org)


def _write_org(org_dir, workdir, rows, workload, system_json, measurements, readme,
               calibration_md) -> None:
    name, model = system_json["system_name"], workload.inference_model
    os.makedirs(os.path.join(org_dir, "systems"))
    with open(os.path.join(org_dir, "systems", f"{name}.json"), "w") as f:
        json.dump(system_json, f, indent=2)
    code = os.path.join(org_dir, "src", "jaxperf")
    root = system_desc.ROOT
    for part in CODE:
        shutil.copytree(os.path.join(root, part), os.path.join(code, part),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for part in ("README.md", "pyproject.toml"):
        if os.path.exists(os.path.join(root, part)):
            shutil.copyfile(os.path.join(root, part), os.path.join(code, part))
    if calibration_md:
        os.makedirs(os.path.join(org_dir, "documentation"))
        with open(os.path.join(org_dir, "documentation", "calibration.md"), "w") as f:
            f.write(calibration_md)
    for row in rows:
        scenario = row["scenario"]
        src = os.path.join(workdir, scenario)
        dst = os.path.join(org_dir, "results", name, model, scenario)
        _copy_logs(os.path.join(src, "performance"), os.path.join(dst, "performance", "run_1"))
        _copy_logs(os.path.join(src, "accuracy"), os.path.join(dst, "accuracy"))
        digest = truncate_accuracy_log(
            os.path.join(src, "accuracy", results.ACCURACY),
            os.path.join(dst, "accuracy", results.ACCURACY))
        acc = row["accuracy"]
        good = round(acc["top1"] * acc["answered"])
        with open(os.path.join(dst, "accuracy", "accuracy.txt"), "w") as f:
            f.write(f"accuracy={100 * acc['top1']:.3f}%, good={good}, "
                    f"total={acc['answered']}\n\nhash={digest}\n")
        for test in row["compliance"]:
            t_src, t_dst = os.path.join(src, test), os.path.join(dst, test)
            _copy_logs(os.path.join(t_src, "performance", "run_1"),
                       os.path.join(t_dst, "performance", "run_1"))
            for verify in ("verify_accuracy.txt", "verify_performance.txt"):
                if os.path.exists(os.path.join(t_src, verify)):
                    shutil.copyfile(os.path.join(t_src, verify), os.path.join(t_dst, verify))
            if test == "TEST01":
                os.makedirs(os.path.join(t_dst, "accuracy"))
                truncate_accuracy_log(
                    os.path.join(t_src, "performance", "run_1", results.ACCURACY),
                    os.path.join(t_dst, "accuracy", results.ACCURACY))
        shutil.copyfile(os.path.join(workdir, "user.conf"), os.path.join(dst, "user.conf"))
        with open(os.path.join(dst, "measurements.json"), "w") as f:
            json.dump(measurements, f, indent=2)
        with open(os.path.join(dst, "README.md"), "w") as f:
            f.write(readme)


def _merge(staging: str, root: str) -> None:
    """Moves the staged tree into root, folder by folder (other systems' results stay)."""
    for here, dirs, files in os.walk(staging):
        rel = os.path.relpath(here, staging)
        target = os.path.join(root, rel) if rel != "." else root
        os.makedirs(target, exist_ok=True)
        for d in list(dirs):
            if not os.path.exists(os.path.join(target, d)):
                os.rename(os.path.join(here, d), os.path.join(target, d))
                dirs.remove(d)
        for name in files:
            os.replace(os.path.join(here, name), os.path.join(target, name))


# ----------------------------------------------------------------------------- check
CHECKER_VERSION = "v6.1"  # the rules whose mlperf.conf seeds LoadGen 6.0.17 carries
# What a tiny CPU package cannot meet, by design: MLPerf's minimum test duration and
# ImageNet's 50,000 validation images (the reference preset meets both).
SIZE_RULES = ("Test duration less than 600s", "accurcy run does not cover all dataset",
              "accuracy run does not cover all dataset")
HOW_TO_GET = ("git clone https://github.com/mlcommons/inference (the checker is not on "
              "PyPI; it needs only Python and PyYAML)")


def checker_dir(inference_repo: str | None) -> str:
    where = os.path.join(inference_repo or "", "tools", "submission")
    if not inference_repo or not os.path.isdir(os.path.join(where, "submission_checker")):
        given = f"--inference_repo {inference_repo} has no" if inference_repo else "no"
        raise UserError(f"{given} tools/submission/submission_checker: pass "
                        f"--inference_repo=<a checkout of mlcommons/inference>; get one with "
                        f"{HOW_TO_GET}")
    return where


def check(root: str, inference_repo: str | None) -> dict:
    """The official inference submission checker's verdict on <root> (holding open/):
    {'passed', 'errors', 'size_only' (only the duration/dataset-size rules failed),
    'output'}."""
    import subprocess
    import sys

    where = checker_dir(inference_repo)
    if not os.path.isdir(os.path.join(root, "open")):
        raise UserError(f"{root} holds no open/ folder; pass the --submission_dir of "
                        "python -m suite.infer")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "submission_checker.main", "--input",
             os.path.abspath(root), "--version", CHECKER_VERSION,
             "--csv", os.path.join(tmp, "summary.csv")],
            cwd=where, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    import re

    # Its lines read "[date time file.py:line ERROR] message".
    errors = [m.group(1).strip() for m in
              (re.search(r" ERROR\] (.*)", line) for line in output.splitlines()) if m]
    errors = [e for e in errors if not e.startswith("SUMMARY")]
    # Each failed rule is followed by the checker's own "checks failed for" roll-up lines.
    rules = [e for e in errors if not e.startswith(("Some ", "NoResults"))]
    passed = proc.returncode == 0 and "submission looks OK" in output
    size_only = not passed and bool(rules) and all(
        any(r in e for r in SIZE_RULES) for e in rules)
    return {"passed": passed, "errors": rules, "size_only": size_only, "output": output,
            "returncode": proc.returncode}
