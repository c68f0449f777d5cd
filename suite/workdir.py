"""The run directory: created only after all input checks passed, refused when it can't be used."""

import os
import tempfile

from common.errors import UserError
from suite import config as config_lib
from suite.mlperf_log import LOG_NAME, has_run_stop

# Options that only steer this invocation, not what is computed.
RESUME_MAY_CHANGE = frozenset({"stop_after_blocks", "checkpoint_every_blocks",
                               "checkpoint_every_minutes", "restart"})


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
    # --restart starts over only where nothing can resume: the same command, rerun after a
    # preemption, must go on from the checkpoint it made.
    if resolved.get("options", {}).get("restart") and not has_checkpoint:
        aside = _set_aside(workdir)
        if aside:
            print(f"--restart: the unfinished run's files moved to {aside}; starting over",
                  flush=True)
        return False
    if previous is None:
        if os.path.exists(os.path.join(workdir, LOG_NAME)):
            raise UserError(f"--workdir {workdir} holds a log but no config; pass a new --workdir")
        return False
    changed = _changed(previous, resolved)
    if changed:
        raise UserError(
            f"--workdir {workdir} holds a paused run with other settings ({', '.join(changed)}); "
            "rerun with the same flags to resume, or pass a new --workdir"
        )
    if not has_checkpoint:
        raise UserError(
            f"--workdir {workdir} holds an interrupted run without a checkpoint; start it "
            "over with --restart (its log is kept), or pass a new --workdir"
        )
    return True


# What a run leaves in its workdir, moved aside as a whole by --restart.
RUN_FILES = (LOG_NAME, config_lib.CONFIG_NAME, "eval_metrics.jsonl", "checkpoints")


def _set_aside(workdir: str) -> str | None:
    """Moves an unfinished run's files to <workdir>/restarted-<k>/ (its log is kept there,
    beside the new run's); returns that folder, or None where there was nothing."""
    present = [n for n in RUN_FILES if os.path.exists(os.path.join(workdir, n))]
    if not present:
        return None
    k = 0
    while os.path.exists(aside := os.path.join(workdir, f"restarted-{k}")):
        k += 1
    os.makedirs(aside)
    for name in present:
        os.rename(os.path.join(workdir, name), os.path.join(aside, name))
    return aside


def _changed(previous: dict, resolved: dict) -> list[str]:
    """The settings that differ between a run's resolved config and an earlier one's."""
    def differs(part: str, key: str) -> bool:
        return previous.get(part, {}).get(key) != resolved.get(part, {}).get(key)

    return sorted(
        k for part in ("options", "config", "data")
        for k in set(previous.get(part, {})) | set(resolved.get(part, {}))
        if k not in RESUME_MAY_CHANGE and differs(part, k)
    )


def finished_with(workdir: str, resolved: dict) -> bool:
    """Whether workdir holds a finished run (run_stop logged) of exactly these settings."""
    previous = config_lib.read(workdir) if os.path.isdir(workdir) else None
    return (previous is not None and has_run_stop(os.path.join(workdir, LOG_NAME))
            and not _changed(previous, resolved))
