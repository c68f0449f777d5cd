"""Run options and config resolution: presets, runtime facts, validation, the resolved file."""

import dataclasses
import json
import math
import os

import jax
import ml_collections

from suite import mesh as mesh_lib
from suite.errors import UserError
from suite.workload import Workload

CONFIG_NAME = "config.json"
DATA_CHOICES = ("real", "synthetic")
DIVISIONS = ("closed", "open")
STATUSES = ("onprem", "cloud", "preview", "research")


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
    stop_after_blocks: int = 0  # 0: run to the end; k: pause after k blocks (resumable)
    borrow_hparams: str | None = None  # result log whose tunable hparams this run uses


def validate_options(workload: Workload, opts: RunOptions) -> None:
    if opts.preset not in workload.presets:
        raise UserError(
            f"unknown preset {opts.preset!r} for {workload.name}; "
            f"choose one of: {', '.join(workload.presets)}"
        )
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
    if opts.preset == "reference" and opts.data == "real" and opts.data_dir is None:
        raise UserError(
            f"the reference preset trains on the real dataset: pass --data_dir (with "
            f"{workload.data_dir_help}), or --data=synthetic for a throughput-only run"
        )


def _positive_int(cfg, field: str) -> None:
    value = cfg[field]
    if not isinstance(value, int) or value < 1:
        raise UserError(f"--config.{field} must be a positive integer, got {value!r}")


def resolve(workload: Workload, cfg: ml_collections.ConfigDict, num_devices: int,
            backend: str) -> ml_collections.ConfigDict:
    """Fills runtime choices into a copy of cfg and checks the fields the runner relies on."""
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    for field in ("global_batch_size", "max_epochs", "train_epochs", "epochs_per_block",
                  "eval_offset_epochs"):
        _positive_int(cfg, field)
    if cfg.eval_offset_epochs > cfg.epochs_per_block:
        raise UserError("--config.eval_offset_epochs must not exceed --config.epochs_per_block")
    evals = cfg.get("evals_per_epoch", 1)
    if not isinstance(evals, int) or evals < 1:
        raise UserError(f"--config.evals_per_epoch must be a positive integer, got {evals!r}")
    if evals > 1 and (cfg.epochs_per_block, cfg.eval_offset_epochs) != (1, 1):
        raise UserError("--config.evals_per_epoch > 1 evaluates inside every epoch: it needs "
                        "--config.epochs_per_block=1 and --config.eval_offset_epochs=1")
    if cfg.compute_dtype == "auto":
        cfg.compute_dtype = "float32" if backend == "cpu" else "bfloat16"
    if cfg.compute_dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(
            f"--config.compute_dtype must be auto, float32, bfloat16 or float16, "
            f"got {cfg.compute_dtype!r}"
        )
    # Here, before any workdir exists; the runner builds the mesh only later.
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
    return cfg


@dataclasses.dataclass(frozen=True)
class Block:
    """The training between two evals, in steps, and how the MLPerf log names it."""

    first_epoch: int  # 1-based epoch the block starts in: block_start's first_epoch_num
    epoch_count: int | float  # epochs it spans; a fraction where evals fall inside an epoch
    start_step: int
    end_step: int  # exclusive
    # Where training stands at the eval after it: eval_accuracy's epoch_num. Epochs
    # completed, or samples trained where the rules count in samples (BERT).
    eval_epoch: int | float
    samples: int | None = None  # samples trained in the block, where the rules count samples

    def start_metadata(self) -> dict:
        if self.samples is not None:
            return {"samples_count": self.samples}
        return {"first_epoch_num": self.first_epoch, "epoch_count": self.epoch_count}

    def stop_metadata(self) -> dict:
        if self.samples is not None:
            return {"samples_count": self.samples}
        return {"first_epoch_num": self.first_epoch}


def block_schedule(cfg, steps_per_epoch: int, eval_every_samples: int = 0) -> list[Block]:
    """Blocks of training, each followed by an eval.

    Whole-epoch blocks by default: the first is eval_offset_epochs long so that evals land
    where the benchmark's rules put them (ResNet: epochs 3, 7, 11, ...). With
    evals_per_epoch = k > 1 every epoch splits into k blocks of (nearly) equal steps, and
    evals log fractional epochs (DLRM: every 0.05 epoch). With eval_every_samples = n > 0
    the run is max_epochs * steps_per_epoch steps, evaluated after the first step at which
    another n samples have been trained, and the log counts samples, not epochs (BERT).
    """
    spe = steps_per_epoch
    if eval_every_samples > 0:
        return _sample_blocks(cfg.global_batch_size, cfg.max_epochs * spe, eval_every_samples)
    evals = cfg.get("evals_per_epoch", 1)
    blocks = []
    if evals > 1:
        for epoch in range(1, cfg.max_epochs + 1):
            base = (epoch - 1) * spe
            cuts = sorted({round(k * spe / evals) for k in range(evals + 1)})
            for lo, hi in zip(cuts, cuts[1:], strict=False):
                # Rounded for the log's sake; the steps stay exact.
                blocks.append(Block(epoch, round((hi - lo) / spe, 6), base + lo, base + hi,
                                    round((base + hi) / spe, 6)))
        return blocks
    epoch, length = 1, cfg.eval_offset_epochs
    while epoch <= cfg.max_epochs:
        count = min(length, cfg.max_epochs - epoch + 1)
        last = epoch + count - 1
        blocks.append(Block(epoch, count, (epoch - 1) * spe, last * spe, last))
        epoch += count
        length = cfg.epochs_per_block
    return blocks


def _sample_blocks(batch: int, total_steps: int, every: int) -> list[Block]:
    blocks, start, k = [], 0, 1
    while start < total_steps:
        # MLPerf BERT: eval once samples trained reach k * every (rounded up to a step).
        end = min(-(-k * every // batch), total_steps)
        k += 1
        if end > start:
            blocks.append(Block(1, (end - start) / total_steps, start, end, end * batch,
                                samples=(end - start) * batch))
            start = end
    return blocks


def write(cfg: ml_collections.ConfigDict, opts: RunOptions, workdir: str) -> str:
    path = os.path.join(workdir, CONFIG_NAME)
    with open(path, "w") as f:
        json.dump({"options": dataclasses.asdict(opts), "config": cfg.to_dict()}, f, indent=2,
                  sort_keys=True)
    return path


def read(workdir: str) -> dict | None:
    path = os.path.join(workdir, CONFIG_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
