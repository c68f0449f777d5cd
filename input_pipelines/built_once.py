"""Built-in datasets made on first use into a cache directory, atomically.

Each is written into a temporary sibling and renamed into place, so a directory whose
manifest.json exists is complete, and concurrent preparers at worst write it twice.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable

from common.errors import UserError

MANIFEST = "manifest.json"


def read_manifest(data_dir: str) -> dict | None:
    try:
        with open(os.path.join(data_dir, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prepare(cache_root: str, name: str, what: str, current: Callable[[dict], bool],
            write: Callable[[str], dict]) -> tuple[str, dict]:
    """cache_root/name, made by write(staging_dir) -> manifest unless a copy whose manifest
    is current() is already there; returns (data_dir, manifest). `what` names the data in
    messages ("the built-in criteo_tiny click logs")."""
    data_dir = os.path.join(cache_root, name)
    manifest = read_manifest(data_dir)
    if manifest is not None and current(manifest):
        return data_dir, manifest
    print(f"Preparing {what} under {cache_root} (once, a few seconds).", flush=True)
    try:
        os.makedirs(cache_root, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}.", dir=cache_root)
    except OSError as e:
        raise UserError(f"cannot write {what} under {cache_root} ({e.strerror}); set "
                        "JAXPERF_CACHE to a writable directory") from e
    try:
        manifest = write(staging)
        if os.path.exists(data_dir):
            # A stale copy (older generator or parameters): move it aside first, since
            # rename cannot replace a non-empty directory.
            stale = tempfile.mkdtemp(prefix=f".{name}.stale.", dir=cache_root)
            os.rename(data_dir, os.path.join(stale, "old"))
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, data_dir)
    except OSError:
        # Another process finished first: use its copy if it is the one we want.
        done = read_manifest(data_dir)
        if done is None or not current(done):
            raise
        manifest = done
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_dir, manifest
