"""--profile_block: an XProf trace of one block of a run, its training steps and its eval.

Taken around the lifecycle's wait for the block's report, so every loop kind is traced
alike without the loops knowing. Blocks count from 1 as the progress line counts them,
across resumes: a run resumed after block 3 traces --profile_block=4 as its first block,
and one preempted inside block K traces the rest of block K. A block done before the
resume is not traced again.
"""

import contextlib
import glob
import os
from collections.abc import Callable, Iterator

import jax

PROFILE_DIR = "profile"


def trace_dir(workdir: str) -> str:
    """<workdir>/profile on process 0; the other processes of a job beside it, one folder
    each: XProf names a trace after its host, and two processes may share one."""
    root = os.path.join(workdir, PROFILE_DIR)
    index = jax.process_index()
    return root if index == 0 else os.path.join(root, f"process_{index}")


def traces(workdir: str) -> list[str]:
    """Every XProf trace file (*.xplane.pb) written under workdir's profile folder."""
    pattern = os.path.join(workdir, PROFILE_DIR, "**", "*.xplane.pb")
    return sorted(glob.glob(pattern, recursive=True))


def note_resume(profile_block: int | None, blocks_done: int,
                say: Callable[[str], None]) -> None:
    """Says so where the block asked for was trained before this resume."""
    if profile_block is not None and profile_block <= blocks_done:
        say(f"--profile_block={profile_block}: that block was trained before this resume "
            f"({blocks_done} done); nothing will be traced")


@contextlib.contextmanager
def block(profile_block: int | None, number: int, workdir: str,
          say: Callable[[str], None]) -> Iterator[None]:
    """Traces what runs inside when block `number` is the one asked for; else nothing."""
    if profile_block != number:
        yield
        return
    folder = trace_dir(workdir)
    # Said before the block only: during it the live progress bar holds the line.
    say(f"profiling block {number} into {folder} (open it: tensorboard --logdir {folder})")
    with jax.profiler.trace(folder):
        yield
