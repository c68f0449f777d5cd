"""The same job for a batch scheduler: an sbatch script for SLURM, a JobSet for GKE.

Both run suite.main with --multihost on every host (on SLURM GPU nodes, a process per
GPU); jax.distributed.initialize() reads SLURM's variables, or the TPU_WORKER_* variables
GKE gives the pods of a TPU slice, to find process 0 and its peers. The tool writes the
file and submits it; the scheduler runs the job, so nothing here waits, streams or deletes.
"""

import shlex

import yaml

from suite.jobs.plan import Plan, Step
from suite.jobs.spec import JobSpec
from suite.jobs.tpu_vm import archive_steps

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
GCLOUD_IMAGE = "gcr.io/google.com/cloudsdktool/google-cloud-cli:slim"


def sbatch_script(spec: JobSpec) -> str:
    src = f"{spec.out}/src"
    # Under SLURM, jax.distributed gives each process one GPU, the one of its SLURM_LOCALID
    # (its default for managed clusters, TPUs aside), so a GPU node runs a process per GPU,
    # each seeing all of them; a host without GPUs runs one.
    tasks = max(spec.gpus_per_node, 1)
    options = [f"--job-name={spec.name}", f"--nodes={spec.nodes}", f"--ntasks-per-node={tasks}"]
    options += [f"--gpus-per-node={spec.gpus_per_node}"] * (spec.gpus_per_node > 0)
    options += [f"--partition={spec.partition}"] * bool(spec.partition)
    options += [f"--time={spec.time_limit}"] * bool(spec.time_limit)
    options += [f"--output={spec.out}/slurm-%j.out"]
    main = " ".join(shlex.quote(a) for a in spec.main_argv(spec.python))
    return "\n".join([
        "#!/bin/bash",
        *(f"#SBATCH {o}" for o in options),
        f"# jaxperf {spec.commit}: python -m suite.main on {spec.nodes} host"
        f"{'s' * (spec.nodes > 1)}, " + ("one process a host." if tasks == 1 else
                                           f"{tasks} processes a host (one a GPU)."),
        "set -euo pipefail",
        "# The commit unpacked once on the shared filesystem: the job runs it even if the",
        "# checkout has moved on by the time the job starts.",
        f"rm -rf {src} && mkdir -p {src}",
        f"tar -xzf {spec.out}/{spec.archive_name} -C {src}",
        f"cd {src}",
        "export PYTHONPATH=$PWD PYTHONUNBUFFERED=1",
        "# srun starts the allocation's tasks; if one fails, it ends the others, which would",
        "# otherwise wait in a collective for it.",
        f"srun --kill-on-bad-exit=1 {main}",
    ]) + "\n"


def slurm_plan(spec: JobSpec) -> Plan:
    path = f"{spec.out}/{spec.name}.sbatch"
    return Plan(
        steps=(archive_steps(spec)[0], Step("Submit the job", ("sbatch", path))),
        files=((path, sbatch_script(spec)),),
        notes=(f"jaxperf {spec.commit} as a SLURM job on {spec.nodes} node"
               f"{'s' * (spec.nodes > 1)}; "
               f"workdir {spec.workdir}",
               f"Follow it: squeue --name={spec.name}; tail -f {spec.out}/slurm-<job id>.out"))


class _Dumper(yaml.SafeDumper):
    pass


# Scripts as literal blocks, so that the file reads like the shell script it holds.
_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def jobset(spec: JobSpec) -> dict:
    tpu = spec.slice
    selector = {"cloud.google.com/gke-tpu-accelerator": tpu.generation.gke_accelerator,
                "cloud.google.com/gke-tpu-topology": tpu.topology}
    if spec.spot:
        selector["cloud.google.com/gke-spot"] = "true"
    script = "\n".join([
        "set -euo pipefail",
        "mkdir -p /jaxperf && tar -xzf /src/jaxperf.tar.gz -C /jaxperf",
        "cd /jaxperf",
        'pip install --quiet -e ".[tpu]"',
        "exec " + " ".join(shlex.quote(a) for a in spec.main_argv("python")),
    ]) + "\n"
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": spec.service_account,
        "nodeSelector": selector,
        # The image that runs jaxperf need not hold gcloud: an init container fetches the
        # archive with the same Workload Identity the run uses for its gs:// workdir.
        "initContainers": [{
            "name": "fetch-jaxperf", "image": GCLOUD_IMAGE,
            "command": ["gcloud", "storage", "cp", f"{spec.job_url}/{spec.archive_name}",
                        "/src/jaxperf.tar.gz"],
            "volumeMounts": [{"name": "src", "mountPath": "/src"}]}],
        "containers": [{
            "name": "jaxperf", "image": spec.image, "command": ["bash", "-c", script],
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
            "resources": {"limits": {"google.com/tpu": tpu.chips_per_host}},
            "volumeMounts": [{"name": "src", "mountPath": "/src"}]}],
        "volumes": [{"name": "src", "emptyDir": {}}],
    }
    return {
        "apiVersion": JOBSET_API,
        "kind": "JobSet",
        # One slice per node pool: the pods of the job land on the hosts of one slice.
        "metadata": {"name": spec.name, "annotations": {
            "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}},
        "spec": {
            # A failed or preempted host fails the job; with maxRestarts > 0 JobSet would
            # restart every pod and the run would resume from its last checkpoint.
            "failurePolicy": {"maxRestarts": 0},
            "replicatedJobs": [{"name": "slice", "replicas": 1, "template": {"spec": {
                "parallelism": tpu.hosts, "completions": tpu.hosts, "backoffLimit": 0,
                "completionMode": "Indexed",  # pod i is TPU worker i
                "template": {"spec": pod}}}}],
        },
    }


def gke_plan(spec: JobSpec) -> Plan:
    path = f"{spec.out}/{spec.name}.jobset.yaml"
    tpu = spec.slice
    text = yaml.dump(jobset(spec), Dumper=_Dumper, sort_keys=False, width=100)
    worker0 = (f"jobset.sigs.k8s.io/jobset-name={spec.name},"
               "batch.kubernetes.io/job-completion-index=0")
    return Plan(
        steps=(*archive_steps(spec), Step("Submit the JobSet", ("kubectl", "apply", "-f", path))),
        files=((path, text),),
        notes=(f"jaxperf {spec.commit} as a JobSet on a GKE {tpu.tpu_type} slice "
               f"({tpu.hosts} pods, topology {tpu.topology}); workdir {spec.workdir}",
               "Needs: the JobSet controller, a TPU node pool of that type and topology, and "
               f"Workload Identity for service account {spec.service_account} on the bucket.",
               f"Follow worker 0: kubectl logs -f -l {worker0}",
               f"Afterwards: gcloud storage cp --recursive {spec.workdir} {spec.out}; "
               f"kubectl delete jobset {spec.name}"))
