r"""Runs a jaxperf benchmark as a batch job on a Cloud TPU slice, a SLURM cluster or GKE.

    python -m tools.tpu_job --tpu_type=v5litepod-16 --zone=us-west4-a --project=my-project \
        --bucket=gs://my-bucket -- --workload=resnet --data_dir=gs://my-bucket/tfds
    python -m tools.tpu_job --scheduler=slurm --nodes=4 --gpus_per_node=8 -- --workload=bert
    python -m tools.tpu_job --scheduler=gke --tpu_type=v5p-32 --bucket=gs://b -- --workload=resnet

Everything after `--` is suite.main's command line, passed on verbatim (and checked here
first, with suite.main's own parser). The job runs HEAD's commit of this checkout.
--dry_run prints the commands and files instead of running them.
"""

import os
import shutil
import signal
import sys
import time

from absl import app, flags

from common.errors import UserError
from flags import job_flags as F
from suite.jobs import batch, runner, tpu_vm
from suite.jobs.plan import Plan, format_plan
from suite.jobs.spec import JobSpec, check_name, default_name, flag_value, tpu_slice

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(F)  # so --help lists them
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDS = {"tpu_vm": ("git", "gcloud"), "slurm": ("git", "sbatch"),
         "gke": ("git", "gcloud", "kubectl")}
INSTALL = {
    "git": "install git",
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) and "
              "run `gcloud auth login`",
    "kubectl": "run `gcloud components install kubectl` and `gcloud container clusters "
               "get-credentials <cluster>`",
    "sbatch": "run this on a SLURM login node",
}
# suite.main flags naming paths the hosts read or write: on a Cloud TPU slice or GKE, a
# local path would be on a VM's disk, which goes with the slice.
REMOTE_PATHS = ("workdir", "submission_dir", "data_dir")


def _check_run_args(run_args: tuple[str, ...], scheduler: str) -> str:
    """Parses suite.main's flags as suite.main would (one line and exit 2 when it would
    refuse them); returns the workload's name."""
    tool_flags = {f.name for f in FLAGS.get_flags_for_module(F)}
    for arg in run_args:
        name = arg[2:].split("=", 1)[0]
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r} after --: pass suite.main's flags "
                            "as --name=value")
        if name in tool_flags:
            raise UserError(f"--{name} is a flag of tools.tpu_job: put it before --")
    if scheduler != "slurm":
        for name in REMOTE_PATHS:
            value = flag_value(run_args, name)
            if value and not value.startswith("gs://"):
                raise UserError(f"--{name}={value} is a local path; the TPU hosts reach only "
                                f"their own disks and gs://: pass a gs:// path")
    # suite.main's flags join FLAGS only now, after the tool's own command line was parsed
    # without them: before --, `--workload` is an unknown flag.
    from flags import run_flags  # noqa: F401
    from suite import cli

    cli.parser()(["suite.main", *run_args])
    return cli.workload().name


def build(run_args: tuple[str, ...]) -> tuple[JobSpec, Plan]:
    scheduler = F.SCHEDULER.value
    if not F.DRY_RUN.value:
        for tool in NEEDS[scheduler]:
            if shutil.which(tool) is None:
                raise UserError(f"{tool} is not on PATH: {INSTALL[tool]} (or pass --dry_run "
                                "to print the commands)")
    zone = F.ZONE.value or os.environ.get("CLOUDSDK_COMPUTE_ZONE", "")
    project = F.PROJECT.value or os.environ.get("CLOUDSDK_CORE_PROJECT", "")
    required = {"tpu_vm": {"tpu_type": F.TPU_TYPE.value, "bucket": F.BUCKET.value,
                           "project": project, "zone": zone},
                "gke": {"tpu_type": F.TPU_TYPE.value, "bucket": F.BUCKET.value},
                "slurm": {}}[scheduler]
    hints = {"project": " (or set CLOUDSDK_CORE_PROJECT)",
             "zone": ", a zone that offers the slice (or set CLOUDSDK_COMPUTE_ZONE)"}
    for name, value in required.items():
        if not value:
            raise UserError(f"--{name} is not set: pass --{name}=...{hints.get(name, '')}")
    bucket = F.BUCKET.value or ""
    if bucket and (not bucket.startswith("gs://") or len(bucket.rstrip("/")) <= 5):
        raise UserError(f"--bucket={bucket}: pass a Cloud Storage URL, gs://<bucket>[/prefix]")
    if F.TPU_TYPE.value:
        tpu_slice(F.TPU_TYPE.value)
    if F.SPOT.value and F.RESERVED.value:
        raise UserError("--spot and --reserved exclude each other: pass one")
    if F.NODES.value < 1:
        raise UserError(f"--nodes must be >= 1, got {F.NODES.value}")
    workload = _check_run_args(run_args, scheduler)
    name = check_name(F.NAME.value) if F.NAME.value else default_name(
        workload, time.strftime("%Y%m%d-%H%M%S"))
    spec = JobSpec(
        name=name, commit=runner.head_commit(ROOT, F.ALLOW_DIRTY.value), source_dir=ROOT,
        out=os.path.abspath(F.OUT.value or os.path.join("jobs", name)), run_args=run_args,
        bucket=bucket if scheduler != "slurm" else "", tpu_type=F.TPU_TYPE.value or "",
        zone=zone, project=project, runtime_version=F.RUNTIME_VERSION.value or "",
        spot=F.SPOT.value, reserved=F.RESERVED.value, nodes=F.NODES.value,
        python=sys.executable, partition=F.PARTITION.value or "",
        time_limit=F.TIME_LIMIT.value or "", gpus_per_node=F.GPUS_PER_NODE.value,
        image=F.IMAGE.value, service_account=F.SERVICE_ACCOUNT.value)
    if scheduler == "tpu_vm":
        return spec, tpu_vm.plan(spec, keep=F.KEEP.value)
    return spec, (batch.slurm_plan if scheduler == "slurm" else batch.gke_plan)(spec)


def _interrupt(signum, frame) -> None:
    # SIGTERM (a scheduler ending this launcher) cleans up as Ctrl-C does.
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    # absl stops at `--` and hands back what follows: suite.main's flags.
    try:
        spec, plan = build(tuple(argv[1:]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if F.DRY_RUN.value:
        sys.stdout.write(format_plan(plan))
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    os.makedirs(spec.out, exist_ok=True)
    try:
        status = runner.execute(plan)
    except KeyboardInterrupt:
        print(f"error: job {spec.name} interrupted; its cleanup ran (see above)",
              file=sys.stderr, flush=True)
        return 130
    runner.say(f"\njob {spec.name}: {'done' if status == 0 else f'failed ({status})'}; "
               f"files in {spec.out}")
    return status


def _parse(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}; tools.tpu_job's flags go before --, suite.main's after it",
              file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
