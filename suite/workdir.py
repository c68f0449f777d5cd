"""The run directory: created only after all input checks passed, refused when it can't be used."""

import os
import tempfile

from common.errors import UserError
from suite import config as config_lib
from suite.mlperf_log import LOG_NAME, has_run_stop

# Options that only steer this invocation, not what is computed. A remote workdir's local
# staging copy lives under each machine's own cache, so a new VM may place it elsewhere.
RESUME_MAY_CHANGE = frozenset({"stop_after_blocks", "checkpoint_every_blocks",
                               "checkpoint_every_minutes", "restart", "workdir",
                               "mllog_stdout", "profile_block"})


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


def prepare(workdir: str, resolved: dict, files_root: str | None = None) -> bool:
    """Creates workdir; returns True when it holds a paused run of the same config to resume.

    files_root: where the checkpoints are (a remote workdir, whose staging copy workdir
    is: suite.remote_workdir); workdir itself where None."""
    check_writable(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise UserError(
            f"cannot create or write --workdir {workdir} ({e.strerror}); pick another path"
        ) from e
    remote = files_root if files_root not in (None, workdir) else None
    # As the user named it: the remote's URL rather than its staging copy.
    shown = resolved.get("options", {}).get("remote_workdir") or workdir
    if remote:
        _probe(remote, shown)
    if has_run_stop(os.path.join(workdir, LOG_NAME)):
        raise UserError(
            f"--workdir {shown} already holds a finished run; pass a new --workdir"
        )
    previous = config_lib.read(workdir)
    has_checkpoint = _has_checkpoint(remote or workdir)
    # --restart starts over only where nothing can resume: the same command, rerun after a
    # preemption, must go on from the checkpoint it made.
    if resolved.get("options", {}).get("restart") and not has_checkpoint:
        aside = _set_aside(workdir)
        if remote:  # the staging copy mirrors it: the same restarted-<k>
            _set_aside(remote)
        if aside:
            print(f"--restart: the unfinished run's files moved to {aside}; starting over",
                  flush=True)
        return False
    if previous is None:
        if os.path.exists(os.path.join(workdir, LOG_NAME)):
            raise UserError(f"--workdir {shown} holds a log but no config; pass a new --workdir")
        return False
    changed = _changed(previous, resolved)
    if changed:
        raise UserError(
            f"--workdir {shown} holds a paused run with other settings ({', '.join(changed)}); "
            "rerun with the same flags to resume, or pass a new --workdir"
        )
    if not has_checkpoint:
        raise UserError(
            f"--workdir {shown} holds an interrupted run without a checkpoint; start it "
            "over with --restart (its log is kept), or pass a new --workdir"
        )
    return True


# What a run leaves in its workdir, moved aside as a whole by --restart.
RUN_FILES = (LOG_NAME, config_lib.CONFIG_NAME, "eval_metrics.jsonl", "checkpoints",
             "tensorboard")


def _set_aside(workdir: str) -> str | None:
    """Moves an unfinished run's files to <workdir>/restarted-<k>/ (its log is kept there,
    beside the new run's); returns that folder, or None where there was nothing. A local
    path or a remote one (epath)."""
    from etils import epath

    root = epath.Path(workdir)
    present = [n for n in RUN_FILES if (root / n).exists()]
    if not present:
        return None
    k = 0
    while (aside := root / f"restarted-{k}").exists():
        k += 1
    aside.mkdir(parents=True)
    for name in present:
        (root / name).rename(aside / name)
    return str(aside)


def _has_checkpoint(root: str) -> bool:
    """Whether <root>/checkpoints holds a committed checkpoint (in a bucket an uncommitted
    one has a step's name too)."""
    from suite.checkpoint import committed_steps

    return bool(committed_steps(f"{root.rstrip('/')}/checkpoints"))


def _probe(remote: str, shown: str) -> None:
    """Creates the remote workdir and writes a file into it, so a missing permission is
    one line now rather than a failed checkpoint after the first block."""
    from etils import epath

    root = epath.Path(remote)
    probe = root / f".jaxperf-probe-{os.getpid()}"
    try:
        if "://" not in remote:  # object stores have no folders (gcsfs would make a bucket)
            root.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except Exception as e:  # noqa: BLE001 - OSError, TF's OpError, gcsfs: all mean no access
        cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot write into --workdir {shown} ({type(e).__name__}: "
                        f"{cause}); pass a bucket path this machine may write to") from e


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
