"""When a run evaluates: its blocks of training, and the unit its MLPerf log counts in.

A workload returns one Schedule for a config and its data (Workload.schedule); the
lifecycle and the loops only ask it. Three kinds exist: whole epochs with an offset first
block (ResNet: evals at epochs 3, 7, 11, ...), several evals inside every epoch (DLRM: every
0.05 epoch), and evals every so many samples trained (BERT), whose log counts samples.
"""

import abc
import dataclasses

from common.errors import UserError

EPOCHS, SAMPLES = "epochs", "samples"


@dataclasses.dataclass(frozen=True)
class Block:
    """The training between two evals, in steps, and how the MLPerf log names it."""

    first_epoch: int  # 1-based epoch the block starts in: block_start's first_epoch_num
    epoch_count: int | float  # epochs it spans; a fraction where evals fall inside an epoch
    start_step: int
    end_step: int  # exclusive
    # Where training stands at the eval after it: eval_accuracy's epoch_num. Epochs
    # completed, or samples trained where the schedule counts samples.
    eval_epoch: int | float
    samples: int | None = None  # samples trained in the block, where the schedule counts them

    def start_metadata(self) -> dict:
        if self.samples is not None:
            return {"samples_count": self.samples}
        return {"first_epoch_num": self.first_epoch, "epoch_count": self.epoch_count}

    def stop_metadata(self) -> dict:
        if self.samples is not None:
            return {"samples_count": self.samples}
        return {"first_epoch_num": self.first_epoch}


class Schedule(abc.ABC):
    unit: str  # EPOCHS or SAMPLES: what eval_accuracy's epoch_num counts

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch
        self.blocks = self._blocks()

    @abc.abstractmethod
    def _blocks(self) -> list[Block]:
        """Every block of the budget, in order, each followed by an eval."""

    def remaining(self, step: int) -> list[tuple[Block, int]]:
        """(block, its first step still to train) of every block not done at `step`. A run
        preempted inside a block resumes there: its block_start (and the epoch_start of a
        partly trained epoch) is in the log already."""
        return [(b, max(b.start_step, step)) for b in self.blocks if b.end_step > step]

    @property
    def logs_epochs(self) -> bool:
        """Whether the log carries epoch_start/epoch_stop (not where it counts samples)."""
        return self.unit == EPOCHS

    def position(self, value, last=None) -> str:
        """'epoch 7/14' or '19,200 samples/32,000': where a run stands, for people."""
        if self.unit == SAMPLES:
            return f"{value:,} samples" + (f"/{last:,}" if last is not None else "")
        return f"epoch {value:g}" + (f"/{last:g}" if last is not None else "")

    def budget(self) -> str:
        """What the whole schedule trains, for the reason of a run that did not converge."""
        last = self.blocks[-1].eval_epoch
        return f"{last:,} samples" if self.unit == SAMPLES else f"{last:g} epochs"


def positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"--config.{name} must be a positive integer, got {value!r}")
    return value


class EpochBlocks(Schedule):
    """Whole-epoch blocks; the first is offset_epochs long, so that evals land where the
    rules put them (ResNet: epochs 3, 7, 11, ...)."""

    unit = EPOCHS

    def __init__(self, steps_per_epoch: int, *, max_epochs: int, epochs_per_block: int,
                 offset_epochs: int):
        self.max_epochs = positive_int("max_epochs", max_epochs)
        self.epochs_per_block = positive_int("epochs_per_block", epochs_per_block)
        self.offset_epochs = positive_int("eval_offset_epochs", offset_epochs)
        if offset_epochs > epochs_per_block:
            raise UserError("--config.eval_offset_epochs must not exceed "
                            "--config.epochs_per_block")
        super().__init__(steps_per_epoch)

    def _blocks(self) -> list[Block]:
        spe, blocks = self.steps_per_epoch, []
        epoch, length = 1, self.offset_epochs
        while epoch <= self.max_epochs:
            count = min(length, self.max_epochs - epoch + 1)
            last = epoch + count - 1
            blocks.append(Block(epoch, count, (epoch - 1) * spe, last * spe, last))
            epoch += count
            length = self.epochs_per_block
        return blocks


class EvalsPerEpoch(Schedule):
    """Every epoch split into `evals` blocks of (nearly) equal steps; the log's epochs are
    fractions (DLRM: an eval every 0.05 epoch)."""

    unit = EPOCHS

    def __init__(self, steps_per_epoch: int, *, max_epochs: int, evals: int):
        self.max_epochs = positive_int("max_epochs", max_epochs)
        self.evals = positive_int("evals_per_epoch", evals)
        super().__init__(steps_per_epoch)

    def _blocks(self) -> list[Block]:
        spe, blocks = self.steps_per_epoch, []
        for epoch in range(1, self.max_epochs + 1):
            base = (epoch - 1) * spe
            cuts = sorted({round(k * spe / self.evals) for k in range(self.evals + 1)})
            for lo, hi in zip(cuts, cuts[1:], strict=False):
                # Rounded for the log's sake; the steps stay exact.
                blocks.append(Block(epoch, round((hi - lo) / spe, 6), base + lo, base + hi,
                                    round((base + hi) / spe, 6)))
        return blocks


class SampleBlocks(Schedule):
    """total_steps of training, evaluated after the first step at which another `every`
    samples have been trained; the log counts samples, not epochs (BERT)."""

    unit = SAMPLES

    def __init__(self, steps_per_epoch: int, *, global_batch_size: int, total_steps: int,
                 every: int):
        self.batch = positive_int("global_batch_size", global_batch_size)
        self.total_steps = positive_int("training steps", total_steps)
        self.every = positive_int("eval_every_samples", every)
        super().__init__(steps_per_epoch)

    def _blocks(self) -> list[Block]:
        blocks, start, k = [], 0, 1
        while start < self.total_steps:
            # MLPerf BERT: eval once samples trained reach k * every (rounded up to a step).
            end = min(-(-k * self.every // self.batch), self.total_steps)
            k += 1
            if end > start:
                blocks.append(Block(1, (end - start) / self.total_steps, start, end,
                                    end * self.batch, samples=(end - start) * self.batch))
                start = end
        return blocks
