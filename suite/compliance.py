"""Runs the official MLPerf compliance checker on a log and says what it found in plain words."""

import dataclasses
import os
import re
import subprocess
import sys
import tempfile

# Lines of the checker's output that carry a reason for failing.
_REASON = re.compile(
    r"(CHECK for '[^']+' failed in line \d+|failed test: .*|Required .*|Failed checks for .*|"
    r"Failed executing .*|Could not find config file.*|No log lines detected|"
    r"Log lines had parsing errors\.)"
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]
    ruleset: str
    output: str  # the checker's full output, for --verbose and bug reports

    def summary(self) -> str:
        if self.passed:
            return f"PASS (official mlperf_logging compliance checker, training {self.ruleset})"
        why = "; ".join(self.reasons) or "see the checker output"
        return f"FAIL (official compliance checker, training {self.ruleset}): {why}"


def check(log_path: str, ruleset: str, usage: str = "training") -> Verdict:
    """Runs `python -m mlperf_logging.compliance_checker` on log_path.

    A subprocess rather than an import: the checker keeps its queue of rule
    files in module globals and configures the root logger, neither of which
    should leak into a training process or into the next check.
    """
    if not os.path.isfile(log_path):
        raise FileNotFoundError(log_path)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "mlperf_logging.compliance_checker",
            "--usage", usage, "--ruleset", ruleset,
            "--log_output", os.path.join(tmp, "checker.log"),
            os.path.abspath(log_path),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    output = proc.stdout + proc.stderr
    reasons = []
    for line in output.splitlines():
        m = _REASON.search(line)
        if m and m.group(1) not in reasons:
            reasons.append(m.group(1))
    passed = proc.returncode == 0 and "SUCCESS" in output
    return Verdict(passed, tuple(reasons), ruleset, output)
