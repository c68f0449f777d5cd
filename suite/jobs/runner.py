"""Runs a Plan: each command echoed, then run with its output passing straight through.

The first failing step ends the job; its cleanup (delete the slice, copy the results back)
runs in a `finally`, so a failure, Ctrl-C or SIGTERM (the tool turns it into Ctrl-C) still
releases the slice.
"""

import os
import subprocess
import sys
import time

from common.errors import UserError
from suite.jobs.plan import Plan, Step, format_command


def say(message: str) -> None:
    print(message, flush=True)


def execute(plan: Plan, poll_seconds: float = 30.0) -> int:
    """0 when every step succeeded, else the exit status of the step that failed."""
    for path, text in plan.files:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        say(f"wrote {path}")
    started: set[str] = set()
    try:
        for i, step in enumerate(plan.steps, 1):
            started.add(step.role)
            status = _run(step, f"{i}/{len(plan.steps)}", poll_seconds)
            if status != 0:
                if not step.counts_if_failed:
                    started.discard(step.role)
                say(f"step {i} failed (exit status {status}): {step.title}")
                return status
        return 0
    finally:
        for role, step in plan.cleanup:
            if role in started:
                status = _run(step, "end", poll_seconds)
                if status != 0:
                    say(f"cleanup step failed (exit status {status}): {step.title}")


def _run(step: Step, label: str, poll_seconds: float) -> int:
    say(f"\n[{label}] {step.title}\n$ {format_command(step.argv)}")
    if not step.until:
        return subprocess.run(step.argv).returncode
    state = None
    while True:
        done = subprocess.run(step.argv, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return done.returncode
        if done.stdout.strip() != state:
            state = done.stdout.strip()
            say(f"state: {state or '(none yet)'}")
        if state == step.until:
            return 0
        if state in step.fail_on:
            return 1
        time.sleep(poll_seconds)


def git(source_dir: str, *args: str) -> str:
    done = subprocess.run(["git", "-C", source_dir, *args], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"git {' '.join(args)} failed in {source_dir} ({last}); a job ships a "
                        "commit, so run it from a git checkout of jaxperf")
    return done.stdout.strip()


def head_commit(source_dir: str, allow_dirty: bool) -> str:
    """HEAD's commit; a checkout with uncommitted changes is refused unless allow_dirty,
    since the job runs the commit and not the files on disk."""
    commit = git(source_dir, "rev-parse", "HEAD")
    changed = git(source_dir, "status", "--porcelain").splitlines()
    if changed and not allow_dirty:
        raise UserError(f"{source_dir} has {len(changed)} uncommitted change(s) (e.g. "
                        f"{changed[0].strip()}); commit them, or pass --allow_dirty to run "
                        f"commit {commit[:12]} without them")
    if changed:
        print(f"warning: {len(changed)} uncommitted change(s) are not part of the job; it runs "
              f"commit {commit[:12]}", file=sys.stderr, flush=True)
    return commit
