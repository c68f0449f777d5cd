"""Batch jobs (tools.tpu_job): the rendered commands and scripts against golden files read
by eye, the Cloud TPU slice table, and the runner's cleanup after a failure or Ctrl-C.

No cloud can be reached from here, so the runner is run for real against a `gcloud` on PATH
that records its arguments: a stand-in for an external command line, not for our code.
Regenerate the golden files after an intended change with JAXPERF_UPDATE_GOLDENS=1.
"""

import dataclasses
import difflib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from suite.jobs import batch, runner, spec, tpu_vm
from suite.jobs.plan import format_plan
from tests.helpers import ROOT, one_line_error

GOLDEN_DIR = os.path.join(ROOT, "tests", "data", "jobs")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESNET = ("--workload=resnet", "--data_dir=gs://my-bucket/tfds", "--checkpoint_every_blocks=1")
BASE = spec.JobSpec(name="jaxperf-resnet-test", commit=COMMIT, source_dir="/home/me/jaxperf",
                    out="/home/me/jobs/jaxperf-resnet-test", run_args=RESNET,
                    bucket="gs://my-bucket", project="my-project",
                    python="/home/me/venv/bin/python")
CASES = {
    "tpu_vm-v5litepod-16": (tpu_vm.plan, dict(tpu_type="v5litepod-16", zone="us-west4-a")),
    # Five runs packaged: the package comes back too; spot capacity.
    "tpu_vm-v4-8": (tpu_vm.plan, dict(
        tpu_type="v4-8", zone="us-central2-b", spot=True,
        run_args=(*RESNET, "--runs=5", "--submission_dir=gs://my-bucket/package"))),
    "gke-v5litepod-16": (batch.gke_plan, dict(tpu_type="v5litepod-16")),
    "gke-v5p-32": (batch.gke_plan, dict(tpu_type="v5p-32", spot=True)),
    "slurm-4-nodes": (batch.slurm_plan, dict(
        bucket="", nodes=4, gpus_per_node=8, partition="a3", time_limit="04:00:00",
        run_args=("--workload=bert", "--data_dir=/shared/bert_wiki", "--config.mesh.fsdp=8"))),
    "slurm-1-node": (batch.slurm_plan, dict(bucket="", nodes=1, run_args=RESNET[:1])),
}


def _render(case: str) -> str:
    make, changes = CASES[case]
    return format_plan(make(dataclasses.replace(BASE, **changes)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_job_matches_its_golden_file(case):
    text = _render(case)
    path = os.path.join(GOLDEN_DIR, f"{case}.txt")
    if os.environ.get("JAXPERF_UPDATE_GOLDENS") == "1":
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        golden = f.read()
    diff = "".join(difflib.unified_diff(golden.splitlines(True), text.splitlines(True),
                                        f"golden {case}.txt", "rendered now"))
    assert not diff, (f"the {case} rendering changed (read the diff; if intended, rerun with "
                      f"JAXPERF_UPDATE_GOLDENS=1 and review the files):\n{diff}")


def test_rendered_scripts_parse_as_bash_and_yaml():
    tpu = dataclasses.replace(BASE, tpu_type="v5litepod-16", zone="us-west4-a")
    scripts = [tpu_vm.install_script(tpu), tpu_vm.run_script(tpu),
               batch.sbatch_script(dataclasses.replace(BASE, bucket="", nodes=2))]
    jobset = yaml.safe_load(batch.gke_plan(tpu).files[0][1])
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    scripts.append(pod["containers"][0]["command"][2])
    for script in scripts:
        done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr + script
    assert pod["containers"][0]["resources"]["limits"]["google.com/tpu"] == 4


# Cloud TPU's documented shapes: chips, hosts, chips a host, runtime, GKE's topology.
@pytest.mark.parametrize("tpu_type, chips, hosts, per_host, runtime, topology", [
    ("v5litepod-16", 16, 4, 4, "v2-alpha-tpuv5-lite", "4x4"),
    ("v5litepod-8", 8, 1, 8, "v2-alpha-tpuv5-lite", "2x4"),
    ("v4-8", 4, 1, 4, "tpu-ubuntu2204-base", "2x2x1"),
    ("v4-32", 16, 4, 4, "tpu-ubuntu2204-base", "2x2x4"),
    ("v5p-32", 16, 4, 4, "v2-alpha-tpuv5", "2x2x4"),
    ("v5p-128", 64, 16, 4, "v2-alpha-tpuv5", "4x4x4"),
    ("v6e-256", 256, 64, 4, "v2-alpha-tpuv6e", "16x16"),
])
def test_slice_table(tpu_type, chips, hosts, per_host, runtime, topology):
    tpu = spec.tpu_slice(tpu_type)
    assert (tpu.chips, tpu.hosts, tpu.chips_per_host) == (chips, hosts, per_host)
    assert (tpu.generation.runtime, tpu.topology) == (runtime, topology)


@pytest.mark.parametrize("tpu_type, needle", [
    ("v5e-16", "unknown --tpu_type=v5e-16"), ("v4-7", "not a slice"),
    ("v5litepod-12", "not a slice"), ("tpu", "e.g. v5litepod-16")])
def test_unknown_slices_are_one_line_errors(tpu_type, needle):
    one_line_error(lambda: spec.tpu_slice(tpu_type), needle)


def test_a_checkout_with_uncommitted_changes_is_refused(tmp_path):
    commit = _git_repo(tmp_path)
    assert runner.head_commit(str(tmp_path), allow_dirty=False) == commit
    (tmp_path / "new.py").write_text("x = 1\n")
    one_line_error(lambda: runner.head_commit(str(tmp_path), allow_dirty=False),
                   "1 uncommitted change(s)", "--allow_dirty")
    assert runner.head_commit(str(tmp_path), allow_dirty=True) == commit


def _git_repo(path) -> str:
    def git(*args):
        return subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c",
                               "user.email=t@example.com", *args], check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (path / "README.md").write_text("jaxperf\n")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    return git("rev-parse", "HEAD")


FAKE_GCLOUD = """#!{python}
# Records each call; `describe` prints the next of FAKE_STATES; a call whose words contain
# FAKE_FAIL exits 3; one containing FAKE_INTERRUPT sends Ctrl-C to its parent, as a
# terminal sends it to the whole foreground job.
import json, os, signal, sys, time
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
words = " ".join(sys.argv[1:])
if "queued-resources describe" in words:
    calls = sum("describe" in line for line in open(log))
    states = os.environ.get("FAKE_STATES", "ACTIVE").split()
    print(states[min(calls, len(states)) - 1])
if os.environ.get("FAKE_INTERRUPT") and os.environ["FAKE_INTERRUPT"] in words:
    os.kill(os.getppid(), signal.SIGINT)
    time.sleep(30)
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in words:
    sys.exit(3)
"""


def _fake_gcloud(tmp_path) -> tuple[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
    (bin_dir / "gcloud").chmod(0o755)
    return str(bin_dir), str(tmp_path / "gcloud_calls.jsonl")


def _calls(log: str) -> list[str]:
    """Each recorded gcloud call, named by what it does."""
    names = []
    for line in open(log) if os.path.exists(log) else []:
        args = json.loads(line)
        words = " ".join(args)
        names.append(
            "upload" if args[:2] == ["storage", "cp"] and "--recursive" not in args else
            "copy back" if args[:2] == ["storage", "cp"] else
            "install" if "ssh" in args and "uv venv" in words else
            "run" if "ssh" in args and "suite.main" in words else
            args[3])  # queued-resources create / describe / delete
    return names


@pytest.mark.parametrize("fail, states, keep, status, calls", [
    # The run fails on a worker: the slice is deleted, what the run wrote comes back.
    ("suite.main", "ACTIVE", False, 3,
     ["upload", "create", "describe", "install", "run", "delete", "copy back"]),
    ("", "ACCEPTED WAITING_FOR_RESOURCES ACTIVE", False, 0,
     ["upload", "create", "describe", "describe", "describe", "install", "run", "delete",
      "copy back"]),
    ("suite.main", "ACTIVE", True, 3,
     ["upload", "create", "describe", "install", "run", "copy back"]),
    # A failed create made nothing this job may delete (the name may be someone else's).
    ("queued-resources create", "ACTIVE", False, 3, ["upload", "create"]),
    ("uv venv", "ACTIVE", False, 3, ["upload", "create", "describe", "install", "delete"]),
    ("", "ACCEPTED FAILED", False, 1, ["upload", "create", "describe", "describe", "delete"]),
])
def test_runner_deletes_the_slice_it_made(tmp_path, monkeypatch, fail, states, keep, status,
                                          calls):
    bin_dir, log = _fake_gcloud(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", log)
    monkeypatch.setenv("FAKE_FAIL", fail)
    monkeypatch.setenv("FAKE_STATES", states)
    repo = tmp_path / "repo"
    repo.mkdir()
    job = dataclasses.replace(BASE, commit=_git_repo(repo), source_dir=str(repo),
                              out=str(tmp_path / "out"), tpu_type="v5litepod-16",
                              zone="us-west4-a")
    os.makedirs(job.out)
    assert runner.execute(tpu_vm.plan(job, keep=keep), poll_seconds=0) == status
    assert _calls(log) == calls
    assert os.path.getsize(os.path.join(job.out, job.archive_name)) > 0  # git archive ran


def _tool(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.tpu_job", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


TPU_FLAGS = ["--tpu_type=v5litepod-16", "--zone=us-west4-a", "--project=my-project",
             "--bucket=gs://my-bucket", "--name=jaxperf-ctrl-c", "--allow_dirty"]


def test_ctrl_c_during_the_run_still_deletes_the_slice(tmp_path):
    bin_dir, log = _fake_gcloud(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=log,
               FAKE_INTERRUPT="suite.main", PYTHONPATH=ROOT)
    proc = _tool([*TPU_FLAGS, f"--out={tmp_path / 'out'}", "--",
                  "--workload=resnet", "--data_dir=gs://my-bucket/tfds"], env)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert _calls(log) == ["upload", "create", "describe", "install", "run", "delete",
                           "copy back"]
    assert "interrupted" in proc.stderr.strip().splitlines()[-1]
    # Each command is echoed before it runs, pass-through flags verbatim.
    assert "--data_dir=gs://my-bucket/tfds --workdir=gs://my-bucket/jaxperf/jaxperf-ctrl-c/" \
           "workdir" in proc.stdout


@pytest.mark.parametrize("args, drop, needle", [
    (TPU_FLAGS + ["--", "--workload=resnet"], "gcloud",
     "error: gcloud is not on PATH: install the Google Cloud CLI"),
    ([f for f in TPU_FLAGS if "project" not in f] + ["--dry_run"], "",
     "error: --project is not set: pass --project=... (or set CLOUDSDK_CORE_PROJECT)"),
    ([f for f in TPU_FLAGS if "zone" not in f] + ["--dry_run"], "",
     "error: --zone is not set"),
    (TPU_FLAGS + ["--dry_run", "--", "--data_dir=/data/tfds"], "",
     "error: --data_dir=/data/tfds is a local path"),
    (TPU_FLAGS + ["--dry_run", "--", "--workload=resnett"], "", "unknown workload 'resnett'"),
    (TPU_FLAGS + ["--dry_run", "--workload=resnet"], "",
     "Unknown command line flag 'workload'; tools.tpu_job's flags go before --, suite.main's"),
])
def test_bad_input_is_one_line(tmp_path, args, drop, needle):
    # A PATH with git alone, where the case is a missing gcloud.
    path = os.environ["PATH"]
    if drop:
        (tmp_path / "git").symlink_to(shutil.which("git"))
        path = str(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    out = tmp_path / "out"
    proc = _tool([f"--out={out}", *args], dict(env, PATH=path, PYTHONPATH=ROOT))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert not out.exists()
