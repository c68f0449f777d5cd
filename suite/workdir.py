"""The run directory: created only after all input checks passed, refused when it can't be used."""

import os
import tempfile

from common.errors import UserError
from suite import config as config_lib
from suite.mlperf_log import LOG_NAME, has_run_stop

# Options that only steer this invocation, not what is computed.
RESUME_MAY_CHANGE = frozenset({"stop_after_blocks", "checkpoint_every_blocks"})


def cache_dir(*parts: str) -> str:
    """$JAXPERF_CACHE/<parts> (default ~/.cache/jaxperf): prepared built-in datasets and
    vocabularies, shared by every run on this machine."""
    root = os.environ.get("JAXPERF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxperf")
    return os.path.join(root, *parts)


def check_writable(workdir: str) -> None:
    """Fails with one line if workdir cannot be created or written; creates nothing else."""
    parent = workdir
    while not os.path.exists(parent):
        parent = os.path.dirname(parent) or "."
    if not os.path.isdir(parent):
        raise UserError(
            f"--workdir {workdir}: {parent} is a file, not a directory; pick another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--workdir {workdir} is not writable ({parent} denies writes); pick a "
                        "directory you can write to")


def prepare(workdir: str, resolved: dict) -> bool:
    """Creates workdir; returns True when it holds a paused run of the same config to resume."""
    check_writable(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise UserError(
            f"cannot create or write --workdir {workdir} ({e.strerror}); pick another path"
        ) from e
    if has_run_stop(os.path.join(workdir, LOG_NAME)):
        raise UserError(
            f"--workdir {workdir} already holds a finished run; pass a new --workdir"
        )
    previous = config_lib.read(workdir)
    has_checkpoint = os.path.isdir(os.path.join(workdir, "checkpoints")) and any(
        name.isdigit() for name in os.listdir(os.path.join(workdir, "checkpoints"))
    )
    if previous is None:
        if os.path.exists(os.path.join(workdir, LOG_NAME)):
            raise UserError(f"--workdir {workdir} holds a log but no config; pass a new --workdir")
        return False
    def differs(part: str, key: str) -> bool:
        return previous.get(part, {}).get(key) != resolved.get(part, {}).get(key)

    changed = sorted(
        k for part in ("options", "config", "data")
        for k in set(previous.get(part, {})) | set(resolved.get(part, {}))
        if k not in RESUME_MAY_CHANGE and differs(part, k)
    )
    if changed:
        raise UserError(
            f"--workdir {workdir} holds a paused run with other settings ({', '.join(changed)}); "
            "rerun with the same flags to resume, or pass a new --workdir"
        )
    if not has_checkpoint:
        raise UserError(
            f"--workdir {workdir} holds an interrupted run without a checkpoint; pass a new "
            "--workdir (use --checkpoint_every_blocks to make runs resumable)"
        )
    return True
