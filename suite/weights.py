"""A finished run's final weights: what inference serves.

<workdir>/final_weights/ holds the weights eval scored (the EMA where kept) and the
untrained variables eval needs (batch statistics), as an orbax checkpoint;
<workdir>/final_weights.json says whose they are and whether the run reached its target.
The JSON is written last, so a weights folder without it is an unfinished save. The
resolved config sits beside them in config.json, as every run writes it.
"""

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from common.errors import UserError
from suite import config as config_lib

FOLDER, META = "final_weights", "final_weights.json"


def save(workdir: str, files_root: str, weights: Any, meta: dict) -> str:
    """Every process calls this (orbax saves sharded arrays collectively). The weights go
    under files_root (a remote workdir: suite.remote_workdir), the JSON into workdir."""
    path = os.path.join(_absolute(files_root), FOLDER)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, weights)
    checkpointer.wait_until_finished()
    checkpointer.close()
    if jax.process_index() == 0:
        with open(os.path.join(workdir, META), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
    return path


def _absolute(path: str) -> str:
    """Orbax wants absolute paths; a URL (gs://) is one already."""
    return path if "://" in path else os.path.abspath(path)


class Checkpoint:
    """A training workdir's final weights, checked before anything is restored."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        meta_path = os.path.join(workdir, META)
        if "://" in workdir:
            raise UserError(f"--checkpoint {workdir}: serving reads a workdir on this "
                            "machine; copy it down first (gcloud storage cp -r) and pass that")
        if not os.path.isdir(workdir):
            raise UserError(f"--checkpoint {workdir} does not exist; pass the workdir of a "
                            "finished training run (python -m suite.main --workdir=...)")
        if not os.path.isfile(meta_path):
            raise UserError(f"--checkpoint {workdir} holds no final weights ({META} is "
                            "missing); pass the workdir of a training run that finished")
        with open(meta_path) as f:
            self.meta = json.load(f)
        recorded = config_lib.read(workdir)
        if recorded is None:
            raise UserError(f"--checkpoint {workdir} has no config.json; pass the workdir "
                            "of a training run as suite.main wrote it")
        self.options, self.config = recorded["options"], recorded["config"]
        self.data = recorded.get("data", {})

    @property
    def workload(self) -> str:
        return self.meta["workload"]

    @property
    def converged(self) -> bool:
        return bool(self.meta["reached_target"])

    def check(self, workload, model_fields: dict) -> None:
        """One line refusing weights of another workload or model size."""
        if self.workload != workload.name:
            raise UserError(f"--checkpoint {self.workdir} holds {self.workload} weights, not "
                            f"{workload.name}; pass a {workload.name} training workdir")
        for field, want in model_fields.items():
            have = self.config.get(field)
            if have != want:
                raise UserError(
                    f"--checkpoint {self.workdir} was trained with {field}={have!r}, this "
                    f"config needs {want!r}; pass a matching --preset/--config.{field} or "
                    "another checkpoint")

    def restore(self, abstract: Any) -> Any:
        """The weights as host-local arrays shaped like abstract (ShapeDtypeStructs)."""
        try:
            return ocp.StandardCheckpointer().restore(
                os.path.join(os.path.abspath(self.workdir), FOLDER), abstract)
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"--checkpoint {self.workdir}: its weights do not fit this "
                            f"model ({type(e).__name__}); pass a checkpoint of the same "
                            "model") from e
