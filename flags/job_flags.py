"""Flags of `python -m tools.tpu_job` (read only there). suite.main's own flags follow `--`
on its command line and pass through verbatim."""

from absl import flags

SCHEDULER = flags.DEFINE_enum(
    "scheduler", "tpu_vm", ["tpu_vm", "slurm", "gke"],
    "tpu_vm: a Cloud TPU slice driven with gcloud (queued, used, deleted); slurm: an sbatch "
    "script; gke: a Kubernetes JobSet on a GKE TPU node pool.")
TPU_TYPE = flags.DEFINE_string(
    "tpu_type", None, "Accelerator type of the slice, e.g. v5litepod-16, v4-8, v5p-32, v6e-8 "
    "(tpu_vm, gke).")
ZONE = flags.DEFINE_string(
    "zone", None, "Cloud TPU zone (tpu_vm). Default: $CLOUDSDK_COMPUTE_ZONE.")
PROJECT = flags.DEFINE_string(
    "project", None, "Google Cloud project (tpu_vm). Default: $CLOUDSDK_CORE_PROJECT.")
BUCKET = flags.DEFINE_string(
    "bucket", None, "gs://bucket[/prefix] holding the job's code archive, workdir and logs, "
    "under <bucket>/jaxperf/<name>/ (tpu_vm, gke).")
NAME = flags.DEFINE_string(
    "name", None, "Job name: the queued resource and TPU node, JobSet or SLURM job. "
    "Default: jaxperf-<workload>-<date>-<time>.")
OUT = flags.DEFINE_string(
    "out", None, "Local folder for the code archive, rendered files and the results copied "
    "back. Default: jobs/<name>.")
RUNTIME_VERSION = flags.DEFINE_string(
    "runtime_version", None, "TPU software version. Default: the generation's (e.g. "
    "v2-alpha-tpuv5-lite for v5e, tpu-ubuntu2204-base for v4).")
SPOT = flags.DEFINE_bool("spot", False, "Spot capacity (preemptible; tpu_vm, gke).")
RESERVED = flags.DEFINE_bool("reserved", False, "Reserved capacity (tpu_vm).")
KEEP = flags.DEFINE_bool("keep", False, "Keep the slice at the end (tpu_vm).")
DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Print the commands and files the job would run and write; run nothing.")
ALLOW_DIRTY = flags.DEFINE_bool(
    "allow_dirty", False, "Run HEAD's commit although the checkout has uncommitted changes "
    "(which the job does not see).")
NODES = flags.DEFINE_integer(
    "nodes", 1, "Hosts of the SLURM job: one process each, or one a GPU with --gpus_per_node "
    "(slurm).")
PARTITION = flags.DEFINE_string("partition", None, "SLURM partition (slurm).")
TIME_LIMIT = flags.DEFINE_string("time_limit", None, "SLURM --time, e.g. 04:00:00 (slurm).")
GPUS_PER_NODE = flags.DEFINE_integer(
    "gpus_per_node", 0, "SLURM --gpus-per-node; the job then runs a process per GPU, as "
    "jax.distributed expects under SLURM (slurm).")
IMAGE = flags.DEFINE_string(
    "image", "python:3.11", "Container image the pods run jaxperf in; it installs the "
    "archived commit with pip (gke).")
SERVICE_ACCOUNT = flags.DEFINE_string(
    "service_account", "default", "Kubernetes service account of the pods, bound through "
    "Workload Identity to a Google service account that can use the bucket (gke).")
