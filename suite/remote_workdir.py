"""A workdir in a bucket: `--workdir=gs://...` (any scheme etils.epath opens: gs://, s3://,
az://), or `file:///dir` to try the same code on one machine.

The run writes its small files (MLPerf log, config.json, eval metrics, TensorBoard, the
final weights' JSON, a vocabulary) into a local staging copy, exactly as into any workdir,
and the files that changed are copied up at run start, at each block end, before run_stop
(or a pause or preemption) and after the log closes, whatever the end. Orbax writes the
checkpoints and the final weights straight into the remote. Why stage at all: the MLPerf
log is appended one event at a time, and object stores cannot append.

A new VM starts with an empty staging copy: `pull` fills it from the remote before the
workdir is judged (resume, refuse), so the same command resumes where the bucket says.
"""

import hashlib
import json
import os
import re
import shutil
import urllib.parse

from common.errors import UserError
from suite.workdir import cache_dir, check_writable

# Orbax trees: written into the remote directly, never pulled down (they can be huge).
ORBAX_DIRS = frozenset({"checkpoints", "final_weights"})
# What was last copied, by size and mtime, in the staging copy's root; itself never copied.
MANIFEST = ".jaxperf-copied.json"
PART = ".jaxperf-part"  # a file being copied into a file system, renamed when complete


def _fix(e: BaseException) -> str:
    """What to do about a remote that epath could not open."""
    if isinstance(e, ImportError):  # epath names the missing library
        return ("for gs:// install gcsfs (pip install 'jaxperf[tpu]') or TensorFlow; for "
                "s3:// s3fs, for az:// adlfs")
    return ("check the bucket's name and this machine's credentials (a VM service account, "
            "or gcloud auth application-default login)")


def is_remote(path: str) -> bool:
    return "://" in path


def fs_path(url: str) -> str:
    """What a filesystem library opens: a file:// URL's local path, else the URL itself."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        return url
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise UserError(f"--workdir {url}: a file:// URL names an absolute path on this "
                        "machine (file:///dir/run); pass one")
    return urllib.parse.unquote(parsed.path)


def join(url: str, name: str) -> str:
    return f"{url.rstrip('/')}/{name}"


def staging_dir(url: str) -> str:
    """$JAXPERF_CACHE/workdirs/<readable name>-<hash>: the same remote, the same copy."""
    url = url.rstrip("/")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[1]).strip("_")[-60:]
    return cache_dir("workdirs", f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}")


def _cause(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:200] if first else type(e).__name__


def check_url(url: str) -> None:
    """A scheme epath knows (no network): one line otherwise."""
    path = fs_path(url)
    if not is_remote(path):
        return
    from etils import epath

    try:
        epath.Path(path)
    except (KeyError, NotImplementedError) as e:
        scheme = path.split("://", 1)[0]
        raise UserError(f"--workdir {url}: no filesystem library here opens {scheme}:// "
                        "paths; pass a local path, gs://, s3://, az:// or file://") from e


def check_reachable(url: str) -> None:
    """Fails with one line where the remote cannot be opened (no gcsfs nor TensorFlow, no
    credentials, no such bucket); reads only. Every process of a job checks: each one
    writes its part of the checkpoints there."""
    path = fs_path(url)
    if not is_remote(path):
        check_writable(path)
        return
    from etils import epath

    try:
        epath.Path(path).exists()
    except Exception as e:  # noqa: BLE001 - ImportError, TF's OpError, gcsfs, OSError
        raise UserError(f"--workdir {url} cannot be opened ({_cause(e)}); {_fix(e)}") from e


def _read_manifest(staging: str) -> dict:
    try:
        with open(os.path.join(staging, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_manifest(staging: str, manifest: dict) -> None:
    part = os.path.join(staging, MANIFEST + PART)
    with open(part, "w") as f:
        json.dump(manifest, f, sort_keys=True)
    os.replace(part, os.path.join(staging, MANIFEST))


def _stat_key(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def pull(url: str, staging: str) -> int:
    """Makes staging a copy of the remote's files, orbax trees left out; returns how many
    came down. The remote wins over whatever staging held: a copy left on this machine by
    an earlier process may hold events logged after its last copy up, which the remote's
    checkpoints know nothing of."""
    from etils import epath

    root = epath.Path(fs_path(url))
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    manifest = {}
    try:
        if root.exists():
            for folder, dirs, files in root.walk():
                # Pruned in place; a listing of a bucket may end folder names with "/".
                dirs[:] = sorted(d for d in dirs if d.rstrip("/") not in ORBAX_DIRS)
                rel_dir = str(folder.relative_to(root))
                for name in files:
                    if name == MANIFEST or name.endswith(PART):
                        continue
                    rel = os.path.normpath(os.path.join(rel_dir, name))
                    local = os.path.join(staging, rel)
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    with open(local, "wb") as f:
                        f.write((folder / name).read_bytes())
                    manifest[rel] = _stat_key(local)
    except Exception as e:  # noqa: BLE001 - whatever the library raises: one line
        raise UserError(f"--workdir {url} cannot be read ({_cause(e)}); {_fix(e)}") from e
    _write_manifest(staging, manifest)
    return len(manifest)


def _local_files(staging: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(staging):
        dirs[:] = sorted(d for d in dirs if d not in ORBAX_DIRS)
        for name in files:
            if name != MANIFEST and not name.endswith(PART):
                found.append(os.path.relpath(os.path.join(folder, name), staging))
    return sorted(found)


class Copier:
    """Copies the files of a staging copy that changed since their last copy (size or
    mtime) up to its remote; a reader of the remote never sees a half-copied file."""

    def __init__(self, staging: str, url: str):
        from etils import epath

        self.staging, self.url = staging, url
        path = fs_path(url)
        self._root = epath.Path(path)
        # A file system renames atomically; an object store shows an object only once its
        # upload is complete (and a rename there copies the object again).
        self._via_rename = not is_remote(path)
        self._folders: set[str] = set()

    def push(self) -> list[str]:
        """The files copied (paths relative to the staging copy), in order."""
        manifest, copied = _read_manifest(self.staging), []
        try:
            for rel in _local_files(self.staging):
                path = os.path.join(self.staging, rel)
                key = _stat_key(path)  # before reading: a later append copies it again
                if manifest.get(rel) == key:
                    continue
                with open(path, "rb") as f:
                    self._write(rel, f.read())
                manifest[rel] = key
                copied.append(rel)
        finally:
            if copied:
                _write_manifest(self.staging, manifest)
        return copied

    def _write(self, rel: str, data: bytes) -> None:
        target = self._root / rel
        if not self._via_rename:
            # An object store has no folders to make (gcsfs would even create a missing
            # bucket), and an object replaces the old one only once its upload completes.
            target.write_bytes(data)
            return
        folder = target.parent
        if str(folder) not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(str(folder))
        part = folder / (target.name + PART)
        part.write_bytes(data)
        part.replace(target)


def files_root(opts) -> str:
    """Where a run's orbax trees (checkpoints, final weights) go: the remote workdir's
    path where there is one, else the workdir itself."""
    return fs_path(opts.remote_workdir) if opts.remote_workdir else opts.workdir
