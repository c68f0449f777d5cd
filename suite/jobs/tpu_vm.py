"""A job on a Cloud TPU slice, as gcloud commands: queue the slice, install this commit on
every worker, run suite.main on all of them, copy the results back, delete the slice."""

import shlex

from suite.jobs.plan import Plan, Step
from suite.jobs.spec import JobSpec, flag_value

# jax.distributed finds its peers on a Cloud TPU VM through this metadata attribute; the
# job's run command reads it too, to tell worker 0 from the others.
WORKER_NUMBER_URL = ("http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
                     "agent-worker-number")
POLL_SECONDS = 30


def archive_steps(spec: JobSpec) -> list[Step]:
    """The commit as a tarball in --out, uploaded to the job's folder in the bucket: the
    job runs exactly this commit, and its archive stays beside the results."""
    local = f"{spec.out}/{spec.archive_name}"
    return [
        Step(f"Archive commit {spec.commit[:12]} (git archive: committed files only)",
             ("git", "-C", spec.source_dir, "archive", "--format=tar.gz", f"--output={local}",
              spec.commit)),
        Step("Upload it to the job's folder in the bucket",
             ("gcloud", "storage", "cp", local, f"{spec.job_url}/{spec.archive_name}")),
    ]


def _where(spec: JobSpec) -> tuple[str, ...]:
    return (f"--zone={spec.zone}", f"--project={spec.project}")


def _ssh(spec: JobSpec, script: str) -> tuple[str, ...]:
    return ("gcloud", "compute", "tpus", "tpu-vm", "ssh", spec.name, *_where(spec),
            "--worker=all", f"--command={script}")


def install_script(spec: JobSpec) -> str:
    # The runtime images are Ubuntu 22.04 with Python 3.10; jaxperf needs 3.11. uv installs
    # a standalone CPython 3.11 without apt (whose lock a freshly booted VM often holds).
    return "\n".join([
        "set -euo pipefail",
        "python3 -m pip install --user --quiet uv",
        "rm -rf $HOME/jaxperf && mkdir -p $HOME/jaxperf",
        f"gcloud storage cp {spec.job_url}/{spec.archive_name} $HOME/jaxperf.tar.gz",
        "tar -xzf $HOME/jaxperf.tar.gz -C $HOME/jaxperf",
        "cd $HOME/jaxperf",
        "$HOME/.local/bin/uv venv --python 3.11 .venv",
        '$HOME/.local/bin/uv pip install --python .venv/bin/python -e ".[tpu]"',
    ])


def run_script(spec: JobSpec) -> str:
    # One `ssh --worker=all` runs every worker: gcloud waits for all of them and exits
    # non-zero when any worker's command does. Its output would interleave every worker's
    # lines unlabelled, so only worker 0 (the process that logs) prints; the others write
    # to a file. Each worker's log goes to the bucket before the command ends.
    # PYTHONUNBUFFERED: progress lines reach the pipe as they are printed.
    main = " ".join(shlex.quote(a) for a in spec.main_argv(".venv/bin/python"))
    return "\n".join([
        "set -uo pipefail",
        "cd $HOME/jaxperf",
        f"W=$(curl -sf -H Metadata-Flavor:Google {WORKER_NUMBER_URL}) || "
        '{ echo "cannot read agent-worker-number from the metadata server" >&2; exit 1; }',
        "LOG=$HOME/jaxperf-worker-$W.log",
        f"run() {{ PYTHONUNBUFFERED=1 {main}; }}",
        'if [ "$W" = 0 ]; then run 2>&1 | tee $LOG; else run >$LOG 2>&1; fi',
        "STATUS=$?",
        f"gcloud storage cp $LOG {spec.job_url}/logs/worker-$W.log",
        "exit $STATUS",
    ])


def plan(spec: JobSpec, keep: bool = False) -> Plan:
    tpu = spec.slice
    runtime = spec.runtime_version or tpu.generation.runtime
    tier = ("--spot",) if spec.spot else ("--reserved",) if spec.reserved else ()
    create = Step(
        f"Queue a {tpu.tpu_type} slice ({tpu.hosts} host{'s' * (tpu.hosts > 1)} of "
        f"{tpu.chips_per_host} chips, runtime {runtime})",
        ("gcloud", "compute", "tpus", "queued-resources", "create", spec.name,
         f"--node-id={spec.name}", f"--accelerator-type={tpu.tpu_type}",
         f"--runtime-version={runtime}", *_where(spec), *tier),
        role="create", counts_if_failed=False)
    wait = Step(
        f"Wait for the slice: every {POLL_SECONDS} s until its state is ACTIVE",
        ("gcloud", "compute", "tpus", "queued-resources", "describe", spec.name, *_where(spec),
         "--format=value(state.state)"),
        until="ACTIVE", fail_on=("FAILED", "SUSPENDING", "SUSPENDED"))
    delete = Step(
        "Delete the slice (--force: its TPU VMs too; --async: billing stops without waiting)",
        ("gcloud", "compute", "tpus", "queued-resources", "delete", spec.name, *_where(spec),
         "--force", "--async", "--quiet"))
    package = flag_value(spec.run_args, "submission_dir")
    copy_back = Step(
        f"Copy back the workdir{', the package' if package else ''} and the workers' logs",
        ("gcloud", "storage", "cp", "--recursive", spec.workdir, f"{spec.job_url}/logs",
         *([package] if package else []), spec.out))
    cleanup = [("create", delete)] if not keep else []
    notes = [f"jaxperf {spec.commit} on a Cloud TPU {tpu.tpu_type} in {spec.zone}: "
             f"python -m suite.main on {'all ' * (tpu.hosts > 1)}{tpu.hosts} "
             f"host{'s' * (tpu.hosts > 1)}, workdir {spec.workdir}",
             "Before a run: `gcloud auth login`, and `ssh-add ~/.ssh/google_compute_engine` "
             "(gcloud needs the key in ssh-agent to reach several workers at once)."]
    if keep:
        notes.append(f"--keep: the slice stays; delete it with `{shlex.join(delete.argv)}`")
    return Plan(
        steps=(*archive_steps(spec), create, wait,
               Step("Install this commit with its [tpu] extra on every worker",
                    _ssh(spec, install_script(spec))),
               Step("Run the benchmark on every worker; worker 0's output streams here",
                    _ssh(spec, run_script(spec)), role="run")),
        cleanup=(*cleanup, ("run", copy_back)),
        notes=tuple(notes))
