"""A workload outside jaxperf's tree runs through the same lifecycle: three files of its own
(tests/toy_workload), named on the command line or registered by an installed package."""

import os
import sys

import pytest

from common.errors import UserError
from suite import registry
from tests.helpers import run_main, successful_run, values

TOY = "tests.toy_workload.workload:LinearDigits"


def test_module_class_workload_trains_to_its_target_through_main(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_main([f"--workload={TOY}", f"--workdir={workdir}"], str(tmp_path / "cache"))
    events = successful_run(proc, workdir, reached="top1 >= 0.9", ruleset="4.0.0",
                            once_keys=("opt_name", "opt_base_learning_rate", "seed"))
    assert values(events, "opt_name") == ["sgd"]
    assert values(events, "eval_samples") == [297]
    assert values(events, "submission_division") == ["open"]
    assert values(events, "eval_accuracy")[-1] >= 0.9


def test_installed_packages_register_workloads_by_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "toy_lab-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-lab\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINTS}]\nlinear_digits = {TOY}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert "linear_digits" in registry.names()
    assert type(registry.get("linear_digits")).__name__ == "LinearDigits"


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:Thing", "cannot import no_such_module"),
    ("tests.toy_workload.workload:Missing", "has no 'Missing'"),
    ("tests.toy_workload.model:Linear", "is not a suite.workload.Workload subclass"),
])
def test_bad_module_class_is_one_line(spec, message):
    with pytest.raises(UserError, match=message):
        registry.get(spec)


def test_bad_workload_spec_through_main_is_one_line_and_writes_nothing(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_main(["--workload=no_such_module:Thing", f"--workdir={workdir}"],
                    str(tmp_path / "cache"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: --workload=no_such_module:Thing: cannot import no_such_module")
    assert not os.path.exists(workdir)
