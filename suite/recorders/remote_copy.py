"""Copies a remote workdir's staging copy up to it (suite.remote_workdir): at run start,
each block end, before run_stop (or a pause or preemption) and after the log closes.

Each block's copy comes before that block's checkpoint is saved, so the remote's log is
never shorter than a committed checkpoint says it was (a resume cuts what is past it).
"""

import jax

from suite import remote_workdir
from suite.recorders.base import BlockRecord, Recorder


class RemoteCopy(Recorder):
    def __init__(self, staging: str, url: str):
        self._copier = remote_workdir.Copier(staging, url)

    def started(self, run_start_ms: int, resumed: bool) -> None:
        self._push("it is tried again at the first block end")

    def block(self, record: BlockRecord) -> None:
        self._push("it is tried again at the next block end")

    def stopping(self, log) -> None:
        self._push("it is tried again when the log closes")

    def closed(self, status: str) -> None:
        self._push(f"the run's files are in {self._copier.staging}")

    def _push(self, then: str) -> None:
        # A failed copy (a network blip) must not end a run that trains on.
        try:
            self._copier.push()
        except Exception as e:  # noqa: BLE001 - whatever the filesystem library raises
            cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print(f"warning: copying {self._copier.staging} to {self._copier.url} failed "
                  f"({cause}); {then}", flush=True)


def for_run(opts) -> list[Recorder]:
    """Process 0 owns the workdir (the others write no file of it)."""
    if not opts.remote_workdir or jax.process_index() != 0:
        return []
    return [RemoteCopy(opts.workdir, opts.remote_workdir)]
