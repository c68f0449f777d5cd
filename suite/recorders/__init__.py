"""What a run records besides its MLPerf log, each a Recorder the lifecycle calls at the
same points (run start, each block, just before run_stop, after the log closes).

The lifecycle knows only this list; a new kind of record (TensorBoard scalars, energy, a
copy of the workdir elsewhere) is one module here and one line in `for_run`.
"""

from suite.recorders import energy, remote_copy, tensorboard
from suite.recorders.base import BlockRecord, Recorder


def for_run(workload, cfg, opts, data) -> list[Recorder]:
    """The recorders of one run, in the order they are called (data: its DataInfo); each
    decides from them whether it applies."""
    return [
        energy.for_run(),
        *tensorboard.for_run(workload, cfg, opts, data),
        # Last: it copies up what the recorders before it wrote.
        *remote_copy.for_run(opts),
    ]


__all__ = ["BlockRecord", "Recorder", "for_run"]
