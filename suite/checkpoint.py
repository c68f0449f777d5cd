"""Orbax checkpoints of the train state at block boundaries, and resume from the last one."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from common.errors import UserError


class Checkpointer:
    """Saves {state, progress} under <workdir>/checkpoints/<step>.

    Orbax keys on the number of training steps done, which is exact where evals (and so
    checkpoints) fall inside epochs, so the newest committed checkpoint says where a
    resumed run picks up.
    """

    def __init__(self, workdir: str, max_to_keep: int = 2):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
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

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, progress: dict) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)
            ),
        )

    def restore(self, step: int, abstract_state: Any, shardings: Any) -> tuple[Any, dict]:
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state,
            shardings,
        )
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(
                f"checkpoint {self.directory}/{step} does not fit this config "
                f"({type(e).__name__}); "
                "resume with the same flags or pass a new --workdir"
            ) from e
        return restored["state"], restored["progress"]

    def wait(self) -> None:
        if self._created is not None:
            self._created.wait_until_finished()

    def close(self) -> None:
        if self._created is not None:
            self._created.close()
