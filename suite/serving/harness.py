"""suite.infer's work: weights, samples, user.conf, then one process per scenario.

<workdir>/samples/       the eval split, preprocessed once (suite.serving.samples)
<workdir>/user.conf      what LoadGen reads after its embedded mlperf.conf (each scenario's
                         process adds the number its tuning found)
<workdir>/<Scenario>/      its process's request.json and output.txt
<workdir>/<Scenario>/tune/     short runs that found its number (suite.serving.tune)
<workdir>/<Scenario>/<mode>/   LoadGen's logs and result.json, one folder per run
<workdir>/<Scenario>/TEST0x/   a compliance test's audit.config, run and verify_*.txt
<workdir>/results.json   the table's rows
"""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np

from common.errors import UserError
from suite import system_desc, weights
from suite import workdir as workdir_lib
from suite.lifecycle import say
from suite.serving import child as child_lib
from suite.serving import compliance as compliance_lib
from suite.serving import samples as samples_lib


@dataclasses.dataclass(frozen=True)
class InferOptions:
    workload: str
    checkpoint: str | None
    scenarios: tuple[str, ...]
    modes: tuple[str, ...]
    precision: str
    workdir: str
    data_dir: str | None
    calibration_list: str | None
    division: str
    allow_unconverged: bool
    max_batch: int
    server_max_batch: int
    server_wait_ms: float
    compliance: bool = False  # TEST01 and TEST04 after each scenario's runs


def weights_cache() -> str:
    return workdir_lib.cache_dir("weights")


def newest_tiny_run(workload) -> str | None:
    """The newest successful tiny training run of workload under $JAXPERF_CACHE/weights."""
    found = []
    for meta_path in glob.glob(os.path.join(weights_cache(), "*", weights.META)):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("workload") == workload.name and meta.get("preset") == "tiny" \
                and meta.get("reached_target"):
            found.append((os.path.getmtime(meta_path), os.path.dirname(meta_path)))
    return max(found)[1] if found else None


def train_tiny(workload) -> str:
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = os.path.join(weights_cache(), f"{workload.name}-tiny-{stamp}")
    say(f"No --checkpoint given and no tiny {workload.name} weights in {weights_cache()}: "
        f"training them first (python -m suite.main --workload={workload.name}, {workdir}).")
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "train_output.txt")
    with open(log_path, "w") as log:
        rc = subprocess.call([sys.executable, "-m", "suite.main", f"--workload={workload.name}",
                              f"--workdir={workdir}"], stdout=log, stderr=subprocess.STDOUT)
    if rc != 0 or not os.path.exists(os.path.join(workdir, weights.META)):
        raise UserError(f"training the tiny {workload.name} failed (exit {rc}); see {log_path}")
    return workdir


def checkpoint_for(workload, path: str | None, expected_cfg, *,
                   allow_unconverged: bool) -> weights.Checkpoint:
    """The checkpoint to serve (the newest tiny run, trained first if need be, where path
    is None), refused in one line if it does not fit expected_cfg or never converged."""
    if path is None:
        path = newest_tiny_run(workload)
        if path is None:
            path = train_tiny(workload)
        else:
            say(f"No --checkpoint given: serving the newest tiny {workload.name} weights, {path}.")
    checkpoint = weights.Checkpoint(path)
    checkpoint.check(workload, workload.model_fields(expected_cfg))
    if not checkpoint.converged:
        if not allow_unconverged:
            raise UserError(
                f"--checkpoint {path} never reached its target ({checkpoint.meta['reason']}); "
                "serve a converged run, or pass --division=open --allow_unconverged")
    return checkpoint


def served_config(workload, checkpoint: weights.Checkpoint, data_dir: str | None):
    """(config, data facts) of the checkpoint's run: its data unless data_dir says where."""
    import ml_collections

    cfg = ml_collections.ConfigDict(checkpoint.config)
    data_dir = data_dir or checkpoint.options.get("data_dir")
    return cfg, dataclasses.replace(workload.data_info(cfg, data_dir), data_dir=data_dir)


def read_calibration_list(path: str | None) -> list[str] | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise UserError(f"--calibration_list {path}: {e.strerror}; pass a readable file "
                        "of image file names (MLPerf's calibration list)") from e
    if not names:
        raise UserError(f"--calibration_list {path} names no files; pass the calibration list")
    return [n.split("/")[-1] for n in names]


class Harness:
    def __init__(self, workload, opts: InferOptions, checkpoint: weights.Checkpoint, cfg,
                 data):
        self.workload, self.opts, self.checkpoint, self.cfg, self.data = (
            workload, opts, checkpoint, cfg, data)
        self.model = workload.inference_model
        self.samples_dir = os.path.join(opts.workdir, "samples")
        self.conf = os.path.join(opts.workdir, "user.conf")
        self.calibration_path = os.path.join(opts.workdir, "calibration.npz")
        self.calibration_note = ""

    def request(self, outdir: str, **fields) -> dict:
        o = self.opts
        return {"workload": self.workload.name, "model": self.model,
                "checkpoint": os.path.abspath(self.checkpoint.workdir),
                "precision": o.precision, "data_dir": self.data.data_dir,
                "calibration": self.calibration_path if o.precision == "int8" else None,
                "samples_dir": self.samples_dir, "conf": self.conf, "outdir": outdir,
                "max_batch": o.max_batch, "server_max_batch": o.server_max_batch,
                "server_wait_ms": o.server_wait_ms, **fields}

    def spawn(self, req: dict) -> dict:
        os.makedirs(req["outdir"], exist_ok=True)
        path = os.path.join(req["outdir"], "request.json")
        with open(path, "w") as f:
            json.dump(req, f, indent=1)
        out_path = os.path.join(req["outdir"], "output.txt")
        # The child runs in its outdir (nothing of LoadGen's lands elsewhere) and imports
        # this same copy of jaxperf, installed or not.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        with open(out_path, "w") as out:
            rc = subprocess.call([sys.executable, "-m", "suite.serving.child", path],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=req["outdir"],
                                 env=env)
        if rc != 0:
            with open(out_path) as f:
                lines = [line.strip() for line in f if line.strip()]
            last = lines[-1] if lines else f"exit {rc}"
            raise UserError(f"the {req['scenario']} process failed: {last[:300]} (see "
                            f"{out_path})")
        with open(os.path.join(req["outdir"], child_lib.RESULT)) as f:
            return json.load(f)

    def prepare(self) -> None:
        samples_lib.write(self.workload, self.cfg, self.data, self.samples_dir)
        self.preset = self.checkpoint.meta.get("preset", "tiny")
        self.tuned = {"found": {}}  # merged over the scenarios, for results.json

    def _record_tuning(self, tuned: dict) -> None:
        for key, value in sorted(tuned["found"].items()):
            say(f"user.conf: {self.model}.{key} = {value:.6g} (measured)")
        # One scenario's details (Server's trials, ...) beside the others'; the numbers
        # user.conf records merge, as the next scenario's process writes them all again.
        self.tuned.update({**tuned, "found": {**self.tuned["found"], **tuned["found"]}})

    def scenario(self, scenario: str) -> dict[str, dict]:
        """The scenario in one process: the tuning runs that find its user.conf number,
        then performance, (with --compliance) TEST04 and TEST01, each a performance run
        under its audit.config compared with the first one, then accuracy; results by run
        name."""
        workdir = self.opts.workdir

        def normal(mode):
            return {"name": mode, "mode": mode, "outdir": os.path.join(workdir, scenario, mode),
                    "audit": None}

        runs = [normal("performance")] if "performance" in self.opts.modes else []
        if self.opts.compliance:
            for test in sorted(compliance_lib.TESTS, reverse=True):  # TEST04 nearest
                base, run_dir = self._test_dirs(scenario, test)
                runs.append({"name": test, "mode": "performance", "outdir": run_dir,
                             "audit": compliance_lib.write_audit(
                                 test, os.path.join(base, "audit.config"))})
        if "accuracy" in self.opts.modes:
            runs.append(normal("accuracy"))
        out = self.spawn(self.request(os.path.join(workdir, scenario),
                                      scenario=scenario, runs=runs, tune=True,
                                      preset=self.preset, found=self.tuned["found"]))
        self._record_tuning(out["tune"])
        return {run["name"]: res for run, res in zip(runs, out["runs"], strict=True)}

    def _test_dirs(self, scenario: str, test: str) -> tuple[str, str]:
        """(the compliance test's folder, its performance run's), as the package lays out."""
        base = os.path.join(self.opts.workdir, scenario, test)
        return base, os.path.join(base, "performance", "run_1")

    def verify_compliance(self, scenario: str, reference: dict) -> dict[str, bool]:
        """TEST01 and TEST04 of one scenario verified against its normal runs; True where
        it passed (verify_*.txt beside each test's logs say why)."""
        workdir, passed = self.opts.workdir, {}
        for test in compliance_lib.TESTS:
            base, run_dir = self._test_dirs(scenario, test)
            if test == "TEST01":
                passed[test] = compliance_lib.verify_test01(
                    scenario, os.path.join(workdir, scenario, "accuracy"), reference,
                    run_dir, self.workload.answer_dtype, self.data.eval_examples, base)
            else:
                passed[test] = compliance_lib.verify_test04(scenario, reference, run_dir, base)
        return passed


@dataclasses.dataclass(frozen=True)
class Package:
    root: str
    system: dict
    command: str


def run(workload, opts: InferOptions, expected_cfg, package: Package | None = None) -> list[dict]:
    if opts.division == "closed":
        raise UserError("our own trained weights make an open-division result; closed needs "
                        "MLCommons' reference weights (not supported yet): pass --division=open")
    # Paths first: a default checkpoint may mean a minute of training before the rest.
    workdir_lib.check_writable(opts.workdir)
    if os.path.exists(os.path.join(opts.workdir, "results.json")):
        raise UserError(f"--workdir {opts.workdir} already holds an inference run; pass a new "
                        "--workdir")
    if package is not None:
        workdir_lib.check_writable(package.root)
    if workload.inference_model is None and opts.checkpoint is None:
        raise UserError(f"{workload.name} cannot be served yet; suite.infer serves resnet")
    checkpoint = checkpoint_for(workload, opts.checkpoint, expected_cfg,
                                allow_unconverged=opts.allow_unconverged)
    if workload.inference_model is None:
        raise UserError(f"{workload.name} cannot be served yet; suite.infer serves resnet")
    cfg, data = served_config(workload, checkpoint, opts.data_dir)
    if opts.compliance and set(opts.modes) != {"performance", "accuracy"}:
        raise UserError("compliance tests compare with both the performance and the accuracy "
                        "run: pass --mode=both")
    calibration = None
    if opts.precision == "int8":  # read once here; every scenario's process loads it
        names = read_calibration_list(opts.calibration_list)
        calibration = workload.calibration_inputs(cfg, data, names)
        calibration_note = (
            f"The {len(names)} images of the {cfg.eval_split!r} split listed in "
            f"{opts.calibration_list} (MLPerf's calibration list), at eval preprocessing."
            if names else workload.default_calibration_note(cfg))
    elif opts.calibration_list:
        raise UserError("--calibration_list is for --precision=int8; drop it or pass int8")
    try:
        os.makedirs(opts.workdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --workdir {opts.workdir} ({e.strerror}); pick another "
                        "path") from e
    harness = Harness(workload, opts, checkpoint, cfg, data)
    if calibration is not None:
        np.savez(harness.calibration_path, **calibration)
        harness.calibration_note = calibration_note
    say(f"serving {workload.name} ({opts.precision}) from {checkpoint.workdir} "
        f"(trained: {checkpoint.meta['reason']}), {opts.division} division, workdir "
        f"{opts.workdir}")
    harness.prepare()
    rows = []
    for scenario in opts.scenarios:
        row = {"scenario": scenario}
        ran = harness.scenario(scenario)
        for mode in opts.modes:
            row[mode] = ran[mode]
            say(f"{scenario} {mode}: " + _describe(ran[mode], workload))
        if opts.compliance:
            row["compliance"] = harness.verify_compliance(scenario, row["performance"])
            say(f"{scenario} compliance: " + ", ".join(
                f"{t} {'PASS' if ok else 'FAIL'}" for t, ok in row["compliance"].items()))
        rows.append(row)
    with open(os.path.join(opts.workdir, "results.json"), "w") as f:
        json.dump({"precision": opts.precision, "checkpoint": checkpoint.workdir,
                   "tune": harness.tuned, "rows": rows}, f, indent=1)
    failed = [f"{r['scenario']} {t}" for r in rows for t, ok in r.get("compliance", {}).items()
              if not ok]
    if failed:
        say(f"compliance FAILED: {', '.join(failed)} (see the verify_*.txt files under "
            f"{opts.workdir}); a closed-division package needs them to pass")
    if package is not None:
        org_dir = write_package(harness, package, rows)
        say(f"inference submission package: {org_dir}")
    return rows


def write_package(harness: "Harness", package: Package, rows: list[dict]) -> str:
    from suite.serving import package as package_lib

    workload, opts, checkpoint = harness.workload, harness.opts, harness.checkpoint
    measurements = {
        "input_data_types": "fp32",
        "retraining": "no",
        "starting_weights_filename": f"{os.path.abspath(checkpoint.workdir)}/"
                                     f"{weights.FOLDER} (jaxperf {workload.name} training run, "
                                     f"{checkpoint.meta.get('preset')} preset)",
        "weight_data_types": {"fp32": "fp32", "bf16": "fp32 (bf16 compute)",
                              "int8": "int8"}[opts.precision],
        "weight_transformations": workload.weight_transformations(opts.precision),
    }
    readme = "\n".join([
        f"# {workload.inference_model}: jaxperf, {opts.precision}",
        "",
        "Open division: the weights come from jaxperf's own training run, not MLCommons' "
        "reference weights.",
        "" if checkpoint.meta.get("preset") == "reference" else
        "Tiny preset: a small model, a small dataset and seconds-long runs that check the "
        "harness; not a valid MLPerf result.",
        "",
        "Reproduce:",
        "",
        f"    {package.command}",
        "",
        f"Checkpoint: {os.path.abspath(checkpoint.workdir)} (trained: {checkpoint.meta['reason']})",
        f"Code: jaxperf {system_desc.code_version()}",
        "",
    ])
    calibration_md = None
    if opts.precision == "int8":
        from suite.serving import quantize

        calibration_md = "\n".join([
            "# Calibration and quantization (int8)", "",
            "## Calibration set", "",
            harness.calibration_note, "",
            "## Method", "", quantize.__doc__.split("\n", 2)[2].strip(), ""])
    return package_lib.write(package.root, workdir=opts.workdir, rows=rows, workload=workload,
                             system_json=package.system, measurements=measurements,
                             readme=readme, calibration_md=calibration_md)


def _describe(result: dict, workload) -> str:
    if result["mode"] == "performance":
        missed = "".join(f"; before it, {_missed(r)}" for r in result.get("retries", []))
        return (f"{'VALID' if result['valid'] else 'INVALID'} {result['metric']:.4g} "
                f"{result['unit']}" + (f" ({result['reason']})" if result["reason"] else "")
                + missed)
    metric = workload.target.metric
    return f"{metric} {result[metric]:.4f} over {result['answered']} samples"


def _missed(retry: dict) -> str:
    """One run a performance result was repeated after (suite.serving.child)."""
    if retry["kind"] == "min duration":  # Offline
        return (f"a run expecting {retry['expected_qps']:.4g} samples/s was INVALID (it ran "
                f"at {retry['achieved_qps']:.4g}: {retry['reason']})")
    return (f"a run at {retry['target_qps']:.4g} qps was INVALID (p99 {retry['p99_ms']:.3g} ms; "
            f"{retry['reason']})")
