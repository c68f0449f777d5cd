"""Orbax checkpoints of the train state at block boundaries, and resume from the last one."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from common.errors import UserError


def committed_steps(directory: str) -> list[int]:
    """The steps orbax committed in a checkpoints folder, by its own rule for the storage
    (a renamed folder, or a commit file in a bucket)."""
    return ocp.path.step.checkpoint_steps(directory)


class Checkpointer:
    """Saves {state, progress} under <workdir>/checkpoints/<step>.

    Orbax keys on the number of training steps done, which is exact where evals (and so
    checkpoints) fall inside epochs, so the newest committed checkpoint says where a
    resumed run picks up.
    """

    def __init__(self, workdir: str, max_to_keep: int = 2):
        # A URL (gs://: a remote workdir, suite.remote_workdir) is absolute already, and
        # orbax writes there through tensorstore.
        root = workdir if "://" in workdir else os.path.abspath(workdir)
        self.directory = f"{root.rstrip('/')}/checkpoints"
        self._max_to_keep = max_to_keep
        self._created = None  # made on first use: runs without checkpoints leave no folder

    @property
    def _manager(self) -> ocp.CheckpointManager:
        if self._created is None:
            self._created = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True),
            )
        return self._created

    def uncommitted(self) -> list[str]:
        """Checkpoints orbax began but never committed (on a file system it writes into a
        temporary folder and renames it when done; in a gs:// bucket it writes the step's
        folder in place and commit_success.txt last): what a process killed mid-write
        leaves. Orbax never restores them; they are listed to say so."""
        folder = epath.Path(self.directory)
        if not folder.is_dir():
            return []
        committed = {str(step) for step in committed_steps(self.directory)}
        return sorted(p.name for p in folder.iterdir() if p.name not in committed
                      and (p.name.isdigit() or ".orbax-checkpoint-tmp" in p.name))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        """Committed checkpoints, newest first."""
        return sorted(self._manager.all_steps(), reverse=True)

    def restore_newest_readable(self, abstract_state: Any, shardings: Any,
                                warn) -> tuple[int, Any, dict]:
        """(step, state, progress) of the newest committed checkpoint that restores; each
        one that does not (truncated or corrupted files) is named by warn(line). None
        readable: one UserError line."""
        steps = self.steps()
        for k, step in enumerate(steps):
            try:
                state, progress = self._restore(step, abstract_state, shardings)
            except Exception as e:  # noqa: BLE001 - tensorstore, orbax, OS: all mean damage
                # (A checkpoint of other settings never gets here: the workdir's config
                # was compared with this run's first, suite.workdir.prepare.)
                cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                if k + 1 == len(steps):
                    raise UserError(
                        f"no checkpoint in {self.directory} can be restored (the oldest, "
                        f"{step}: {cause}); start over with --restart or a new --workdir"
                    ) from e
                warn(f"warning: checkpoint {self.directory}/{step} is damaged ({cause}); "
                     f"resuming from {steps[k + 1]} instead")
                continue
            for damaged in steps[:k]:  # the resumed run saves those steps again
                self._manager.delete(damaged)
            return step, state, progress
        raise UserError(f"{self.directory} holds no committed checkpoint; start over with "
                        "--restart or a new --workdir")

    def save(self, step: int, state: Any, progress: dict) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)
            ),
        )

    def _restore(self, step: int, abstract_state: Any, shardings: Any) -> tuple[Any, dict]:
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state,
            shardings,
        )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["progress"]

    def restore(self, step: int, abstract_state: Any, shardings: Any) -> tuple[Any, dict]:
        try:
            return self._restore(step, abstract_state, shardings)
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(
                f"checkpoint {self.directory}/{step} does not fit this config "
                f"({type(e).__name__}); "
                "resume with the same flags or pass a new --workdir"
            ) from e

    def wait(self) -> None:
        if self._created is not None:
            self._created.wait_until_finished()

    def close(self) -> None:
        if self._created is not None:
            self._created.close()
