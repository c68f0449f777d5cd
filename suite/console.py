"""The console a person reads: inside a long block (an ImageNet block is thousands of steps
on an accelerator), a live bar of the block's steps, its samples/s and the block's ETA.

Only on an interactive terminal, on process 0, and without --mllog_stdout (whose lines the
bar would cut through); elsewhere the block's progress line is all there is. The loop tells
the bar each step as it dispatches it (a Python call, no device sync), so its rate is the
dispatch rate: the device's own pace once the host waits on it, a little ahead before.
"""

import shutil
import sys
from typing import TextIO

import jax
from tqdm import tqdm

from suite.config import RunOptions
from suite.schedule import Schedule

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps " \
             "[{elapsed}<{remaining}, {samples_rate}]"


class _StepsBar(tqdm):
    """tqdm counting steps, showing samples/s (steps/s x the global batch)."""

    def __init__(self, *args, samples_per_step: int, **kwargs):
        self._samples_per_step = samples_per_step  # before tqdm's first draw reads it
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):
        d = super().format_dict
        rate = d.get("rate")
        d["samples_rate"] = ("? samples/s" if not rate else
                             f"{rate * self._samples_per_step:,.1f} samples/s")
        return d


def live(opts: RunOptions, stream: TextIO | None = None) -> bool:
    """Whether this process draws a live bar on its stdout."""
    stream = stream or sys.stdout
    return jax.process_index() == 0 and not opts.mllog_stdout and stream.isatty()


class BlockBar:
    """tick(steps_done) after each step's dispatch; a bar per block, opened at the block's
    first tick (part-way for a run resumed inside it) and closed at its last."""

    def __init__(self, schedule: Schedule, samples_per_step: int, *, enabled: bool,
                 stream: TextIO | None = None):
        self._blocks = schedule.blocks
        self._samples_per_step = samples_per_step
        self._stream = stream or sys.stdout
        self._bar: _StepsBar | None = None
        self._index = 0  # of the block the last tick fell in
        self.tick = self._tick if enabled else _nothing

    def _tick(self, steps_done: int) -> None:
        if self._bar is None:
            self._open(steps_done)
        else:
            self._bar.update(1)
        if steps_done >= self._blocks[self._index].end_step:
            self.close()

    def _open(self, steps_done: int) -> None:
        while self._blocks[self._index].end_step < steps_done:
            self._index += 1
        block = self._blocks[self._index]
        # A terminal that reports no size (0x0: some pseudo-terminals) would make tqdm draw
        # nothing; shutil falls back to $COLUMNS/$LINES, then 80x24.
        size = shutil.get_terminal_size()
        self._bar = _StepsBar(
            total=block.end_step - block.start_step, initial=steps_done - block.start_step,
            desc=f"block {self._index + 1}/{len(self._blocks)}", file=self._stream,
            leave=False, bar_format=BAR_FORMAT, ncols=size.columns - 1, nrows=size.lines,
            samples_per_step=self._samples_per_step)

    def close(self) -> None:
        """Clears the bar (the block's progress line takes its place); safe to repeat."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _nothing(steps_done: int) -> None:
    del steps_done
