"""A job as data: the commands to run in order, what to undo at the end, files to write.

format_plan prints a Plan as a shell reader would type it; `--dry_run` prints exactly this,
and the runner echoes each command in the same form before running it.
"""

import dataclasses
import shlex


@dataclasses.dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    # Set for steps the end of the job depends on ("create", "run"): see Plan.cleanup.
    role: str = ""
    # A create step that fails made nothing to delete (or the name is someone else's).
    counts_if_failed: bool = True
    # Polling: rerun until the output (stripped) is `until`; stop on one of `fail_on`.
    until: str = ""
    fail_on: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    # (role, step): run at the end, whatever happened, when a step of that role started.
    cleanup: tuple[tuple[str, Step], ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (path, text) written before the first step
    notes: tuple[str, ...] = ()  # printed first, as comments


def format_command(argv: tuple[str, ...] | list[str]) -> str:
    """One command, quoted for a POSIX shell, one --flag a line after the first flag."""
    words = [_quote(a) for a in argv]
    first_flag = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    lines = [" ".join(words[:first_flag])] + words[first_flag:]
    return " \\\n    ".join(line for line in lines if line)


def _quote(arg: str) -> str:
    # --flag='value' reads better than '--flag=value' and means the same to a shell.
    name, eq, value = arg.partition("=")
    if arg.startswith("--") and eq and shlex.quote(name) == name:
        return f"{name}={shlex.quote(value)}"
    return shlex.quote(arg)


def format_plan(plan: Plan) -> str:
    out = [f"# {note}" for note in plan.notes]
    for path, text in plan.files:
        out += ["", f"# file {path}:", text.rstrip("\n"), "# end of file"]
    for i, step in enumerate(plan.steps, 1):
        out += ["", f"# {i}. {step.title}", format_command(step.argv)]
    if plan.cleanup:
        out += ["", "# At the end, and after a failure or Ctrl-C:"]
        for _, step in plan.cleanup:
            out += [f"# - {step.title}", format_command(step.argv)]
    return "\n".join(out).lstrip("\n") + "\n"
