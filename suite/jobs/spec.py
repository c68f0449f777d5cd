"""What a batch job is: the slice it runs on, the commit it runs, where its files go.

The Cloud TPU facts jaxperf needs live in one table, GENERATIONS: which TPU software
version (runtime) fits each generation, how the accelerator type's number counts, how many
chips one host holds, and the labels GKE gives its TPU nodes.
"""

import dataclasses
import re

from common.errors import UserError

# A multi-host slice of every generation below has 4 chips per host (VM or GKE node).
CHIPS_PER_HOST = 4


@dataclasses.dataclass(frozen=True)
class Generation:
    runtime: str  # Cloud TPU's software version for JAX on this generation
    gke_accelerator: str  # GKE's node label cloud.google.com/gke-tpu-accelerator
    cores_per_chip: int  # v4-8 and v5p-8 count TensorCores (2 a chip); v5e and v6e count chips
    single_host_chips: tuple[int, ...]  # slice sizes (chips) that fit one host
    topology_dims: int  # 2 (v5e, v6e: AxB) or 3 (v4, v5p: AxBxC)


# Runtimes from Cloud TPU's "TPU software versions" page (PyTorch and JAX): one image per
# generation from v5 on, the plain Ubuntu 22.04 base for v4. jax[tpu] brings libtpu itself.
GENERATIONS = {
    "v4": Generation("tpu-ubuntu2204-base", "tpu-v4-podslice", 2, (4,), 3),
    "v5litepod": Generation("v2-alpha-tpuv5-lite", "tpu-v5-lite-podslice", 1, (1, 4, 8), 2),
    "v5p": Generation("v2-alpha-tpuv5", "tpu-v5p-slice", 2, (4,), 3),
    "v6e": Generation("v2-alpha-tpuv6e", "tpu-v6e-slice", 1, (1, 4, 8), 2),
}


@dataclasses.dataclass(frozen=True)
class Slice:
    tpu_type: str  # the accelerator type, e.g. v5litepod-16
    generation: Generation
    chips: int
    hosts: int
    chips_per_host: int

    @property
    def topology(self) -> str:
        """GKE's default topology for this many chips (cloud.google.com/gke-tpu-topology)."""
        chips, dims = self.chips, self.generation.topology_dims
        if chips & (chips - 1) or (dims == 3 and chips < 4):
            raise UserError(f"{self.tpu_type}: no default GKE topology for {chips} chips; "
                            "use a slice whose chip count is a power of two")
        # Grow from the smallest shape by doubling the shortest side (the last of equals):
        # v5e 8 -> 2x4, 16 -> 4x4; v4/v5p 4 -> 2x2x1, 16 -> 2x2x4, 64 -> 4x4x4.
        shape = [1, 1] if dims == 2 else [2, 2, 1]
        while _product(shape) < chips:
            shortest = min(shape)
            last = max(i for i, side in enumerate(shape) if side == shortest)
            shape[last] *= 2
        return "x".join(map(str, shape))


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result


def tpu_slice(tpu_type: str) -> Slice:
    """The slice an accelerator type names: v5litepod-16 -> 16 chips on 4 hosts."""
    known = ", ".join(GENERATIONS)
    match = re.fullmatch(r"([a-z0-9]+)-(\d+)", tpu_type or "")
    if not match or match.group(1) not in GENERATIONS:
        raise UserError(f"unknown --tpu_type={tpu_type}: pass <generation>-<size>, e.g. "
                        f"v5litepod-16, v4-8, v5p-32 or v6e-8 (generations: {known})")
    generation = GENERATIONS[match.group(1)]
    size = int(match.group(2))
    chips, odd = divmod(size, generation.cores_per_chip)
    if chips in generation.single_host_chips and not odd:
        return Slice(tpu_type, generation, chips, 1, chips)
    two_d_ok = generation.topology_dims == 3 or not chips & (chips - 1)
    if odd or chips <= max(generation.single_host_chips) or chips % CHIPS_PER_HOST \
            or not two_d_ok:
        raise UserError(f"--tpu_type={tpu_type} is not a slice Cloud TPU offers; see "
                        "`gcloud compute tpus accelerator-types list --zone=<zone>`")
    return Slice(tpu_type, generation, chips, chips // CHIPS_PER_HOST, CHIPS_PER_HOST)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job, fully resolved: rendering it needs nothing else (so it is testable)."""

    name: str  # queued resource and node id, JobSet or SLURM job name
    commit: str  # the jaxperf commit that runs (git rev-parse HEAD)
    source_dir: str  # the local checkout the commit is archived from
    out: str  # local folder: the archive, rendered files, results copied back
    run_args: tuple[str, ...]  # suite.main's flags, verbatim (what followed --)
    bucket: str = ""  # gs://bucket[/prefix]: code, workdir and logs (Cloud TPU and GKE)
    tpu_type: str = ""
    zone: str = ""
    project: str = ""
    runtime_version: str = ""  # "" = the generation's runtime from GENERATIONS
    spot: bool = False
    reserved: bool = False
    # SLURM
    nodes: int = 1
    gpus_per_node: int = 0  # > 0: a process per GPU (jax.distributed's SLURM layout)
    python: str = "python3"  # the interpreter of the environment that has jaxperf's deps
    partition: str = ""
    time_limit: str = ""
    # GKE
    image: str = "python:3.11"
    service_account: str = "default"

    @property
    def slice(self) -> Slice:
        return tpu_slice(self.tpu_type)

    @property
    def archive_name(self) -> str:
        return f"jaxperf-{self.commit[:12]}.tar.gz"

    @property
    def job_url(self) -> str:
        """The job's folder in the bucket: the code archive, the workdir, worker logs."""
        return f"{self.bucket.rstrip('/')}/jaxperf/{self.name}"

    @property
    def workdir(self) -> str:
        """The run's --workdir: the user's, else the job's folder in the bucket (on SLURM
        a folder under --out, which a cluster's shared filesystem holds)."""
        given = flag_value(self.run_args, "workdir")
        if given:
            return given
        return f"{self.out}/workdir" if not self.bucket else f"{self.job_url}/workdir"

    def main_argv(self, python: str) -> list[str]:
        """suite.main's command line on every host: --multihost, then the user's flags."""
        argv = [python, "-m", "suite.main", "--multihost", *self.run_args]
        if not flag_value(self.run_args, "workdir"):
            argv.append(f"--workdir={self.workdir}")
        return argv


def flag_value(args: tuple[str, ...] | list[str], name: str) -> str | None:
    """The value absl would give --name among args (--name=v or --name v; the last wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def check_name(name: str) -> str:
    """Queued resource, TPU node and JobSet names: lowercase letters, digits and hyphens."""
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):
        raise UserError(f"--name={name} cannot name a TPU slice or a JobSet: use 1 to 40 "
                        "lowercase letters, digits and hyphens, starting with a letter")
    return name


def default_name(workload: str, stamp: str) -> str:
    """jaxperf-<workload>-<stamp>, made a valid name (dlrm_dcnv2 -> dlrm-dcnv2)."""
    word = re.sub(r"[^a-z0-9]+", "-", workload.lower().rsplit(":", 1)[-1]).strip("-")
    return check_name(f"jaxperf-{word[:16].strip('-')}-{stamp}")
