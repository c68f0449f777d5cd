"""Run options and config resolution: presets, runtime facts, validation, the resolved file."""

import dataclasses
import json
import math
import os

import jax
import ml_collections

from common.errors import UserError
from suite import mesh as mesh_lib

CONFIG_NAME = "config.json"
DATA_CHOICES = ("real", "synthetic")
DIVISIONS = ("closed", "open")
STATUSES = ("onprem", "cloud", "preview", "research")
# Fields every workload has that change how a run executes, not what it computes: free in
# either division. (MLPerf lets closed submissions choose numerics, parallelism and gradient
# accumulation; the epoch budget and the dataset's true sizes are not hyperparameters.)
# Workloads add their own in Workload.runtime_fields.
RUNTIME_FIELDS = frozenset({"compute_dtype", "mesh.fsdp", "mesh.model", "max_epochs",
                            "train_examples", "eval_examples", "grad_accum_steps"})


def base_config(target_value: float) -> ml_collections.ConfigDict:
    """The fields every workload shares; a workload's reference_config adds its own."""
    c = ml_collections.ConfigDict()
    c.compute_dtype = "auto"  # bfloat16 on accelerators, float32 on CPU
    c.target_value = target_value
    c.global_batch_size = 0  # set by every workload
    c.train_examples = c.eval_examples = 0  # the dataset's sizes; data_info reads the truth
    # The epoch schedule (suite.schedule.EpochBlocks); the run stops at the target or here.
    c.train_epochs = c.max_epochs = 1
    c.epochs_per_block = c.eval_offset_epochs = 1
    # Each step's global batch runs as this many micro-batches, their gradients averaged.
    c.grad_accum_steps = 1
    # > 0: eval scores an exponential moving average of the params with this decay.
    c.ema_decay = 0.0
    c.mesh = ml_collections.ConfigDict({"fsdp": 1, "model": 1})  # axis -> size; data: the rest
    return c


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything about one run that is not a model/optimizer hyperparameter."""

    workload: str
    preset: str
    workdir: str
    data: str = "real"
    data_dir: str | None = None
    seed: int = 0
    division: str = "open"
    submission_org: str = "jaxperf"
    submission_platform: str = ""  # empty: "<count>x<device kind>" of this machine
    submission_status: str = "research"
    checkpoint_every_blocks: int = 0  # 0: never
    checkpoint_every_minutes: float = 0.0  # 0: never; else at the first block end past it
    stop_after_blocks: int = 0  # 0: run to the end; k: pause after k blocks (resumable)
    # None: no trace; k: an XProf trace of block k (1-based, counted across resumes).
    profile_block: int | None = None
    restart: bool = False  # an unfinished run in workdir is set aside, not resumed
    mllog_stdout: bool = False  # echo the MLPerf log's lines on stdout too
    borrow_hparams: str | None = None  # result log whose tunable hparams this run uses
    # --workdir=gs://... (suite.remote_workdir): orbax writes there, and `workdir` is the
    # local staging copy of everything else, copied up as the run goes.
    remote_workdir: str | None = None


def validate_options(workload, opts: RunOptions) -> None:
    if opts.data not in DATA_CHOICES:
        raise UserError(f"--data must be one of {', '.join(DATA_CHOICES)}, got {opts.data!r}")
    if opts.division not in DIVISIONS:
        raise UserError(f"--division must be closed or open, got {opts.division!r}")
    if opts.submission_status not in STATUSES:
        raise UserError(
            f"--submission_status must be one of {', '.join(STATUSES)}, "
            f"got {opts.submission_status!r}"
        )
    if opts.checkpoint_every_blocks < 0 or opts.stop_after_blocks < 0:
        raise UserError("--checkpoint_every_blocks and --stop_after_blocks must be >= 0")
    if opts.profile_block is not None and opts.profile_block < 1:
        raise UserError(f"--profile_block must be >= 1 (blocks count from 1), "
                        f"got {opts.profile_block}")
    if not opts.checkpoint_every_minutes >= 0:  # NaN too
        raise UserError(f"--checkpoint_every_minutes must be >= 0, got "
                        f"{opts.checkpoint_every_minutes}")
    if opts.division == "closed" and opts.preset != "reference":
        raise UserError(
            f"the {opts.preset} preset changes the model, data and target, so it is open "
            "division only; pass --division=open or --preset=reference"
        )
    if opts.division == "closed" and opts.data == "synthetic":
        raise UserError("synthetic data is never a closed-division result; pass --division=open")
    if opts.data_dir is not None and not os.path.isdir(opts.data_dir):
        raise UserError(
            f"--data_dir {opts.data_dir} does not exist; pass {workload.data_dir_help}"
        )
    if (opts.preset == "reference" and opts.data == "real" and opts.data_dir is None
            and workload.data_dir_required):
        raise UserError(
            f"the reference preset trains on the real dataset: pass --data_dir (with "
            f"{workload.data_dir_help}), or --data=synthetic for a throughput-only run"
        )


def check_profile_block(opts: RunOptions, blocks: int) -> None:
    """--profile_block against the run's schedule (known once the data's size is)."""
    if opts.profile_block is not None and opts.profile_block > blocks:
        raise UserError(f"--profile_block={opts.profile_block} is past the run's last block: "
                        f"it has {blocks}; pass 1 to {blocks}")


def _positive_int(cfg, field: str) -> None:
    value = cfg[field]
    if not isinstance(value, int) or value < 1:
        raise UserError(f"--config.{field} must be a positive integer, got {value!r}")


def resolve(workload, cfg: ml_collections.ConfigDict, num_devices: int,
            backend: str) -> ml_collections.ConfigDict:
    """Fills runtime choices into a copy of cfg and checks it: the fields every workload
    shares here, the rest in the workload's validate hook. Before any workdir exists."""
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    for field in ("global_batch_size", "train_epochs", "grad_accum_steps"):
        _positive_int(cfg, field)
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"--config.ema_decay must be in [0, 1), got {cfg.ema_decay!r}")
    if cfg.compute_dtype == "auto":
        cfg.compute_dtype = "float32" if backend == "cpu" else "bfloat16"
    if cfg.compute_dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(
            f"--config.compute_dtype must be auto, float32, bfloat16 or float16, "
            f"got {cfg.compute_dtype!r}"
        )
    mesh_lib.check_shape(num_devices, cfg.mesh.fsdp, cfg.mesh.model)
    sizes = mesh_lib.axis_sizes(num_devices, cfg.mesh.fsdp, cfg.mesh.model)
    data_parallel = math.prod(sizes[a] for a in mesh_lib.batch_axes(
        workload.logical_axis_rules(cfg)))
    batches = [("global_batch_size", cfg.global_batch_size)]
    if cfg.get("eval_batch_size"):
        _positive_int(cfg, "eval_batch_size")
        batches.append(("eval_batch_size", cfg.eval_batch_size))
    for field, size in batches:
        if size % data_parallel or size % jax.process_count():
            raise UserError(
                f"--config.{field}={size} must divide evenly over {data_parallel} "
                f"data-parallel devices and {jax.process_count()} processes")
    micro = cfg.global_batch_size // cfg.grad_accum_steps
    if cfg.global_batch_size % cfg.grad_accum_steps or micro % data_parallel:
        raise UserError(
            f"--config.grad_accum_steps={cfg.grad_accum_steps} must split the global batch "
            f"{cfg.global_batch_size} into micro-batches that divide over {data_parallel} "
            "data-parallel devices")
    workload.validate(cfg, sizes)
    return cfg


def resolved(cfg: ml_collections.ConfigDict, opts: RunOptions, data) -> dict:
    """What config.json records: the options, the config, and the data's facts (its true
    sizes and the files it resolved, e.g. a vocabulary), which never enter the config."""
    facts = {"train_examples": data.train_examples, "eval_examples": data.eval_examples,
             "source": data.source, **data.facts}
    return {"options": dataclasses.asdict(opts), "config": cfg.to_dict(), "data": facts}


def write(cfg: ml_collections.ConfigDict, opts: RunOptions, data, workdir: str) -> str:
    path = os.path.join(workdir, CONFIG_NAME)
    with open(path, "w") as f:
        json.dump(resolved(cfg, opts, data), f, indent=2, sort_keys=True)
    return path


def read(workdir: str) -> dict | None:
    path = os.path.join(workdir, CONFIG_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
