"""Tools read --workload, --preset and --config.* with suite.main's own parser, and an absl
--flagfile (the argparse ones too)."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _tool(module: str, *args: str, devices: int = 1):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _per_device_gib(out: str) -> float:
    return float(re.search(r"([0-9.,]+) GiB per device", out)[1].replace(",", ""))


def test_state_memory_takes_config_overrides():
    base = ["--workload=dlrm_dcnv2", "--preset=reference", "--devices=8"]
    rows = _tool("tools.state_memory", *base, "--config.mesh.model=8")
    assert rows.returncode == 0, rows.stderr[-2000:]
    assert "on 8 devices (fsdp=1, model=8)" in rows.stdout
    assert _per_device_gib(rows.stdout) == 24.46
    # Column sharding splits the same tables as evenly; replicated tables do not split.
    column = _tool("tools.state_memory", *base, "--config.mesh.model=8",
                   "--config.embedding_sharding=column")
    assert column.returncode == 0, column.stderr[-2000:]
    assert abs(_per_device_gib(column.stdout) - 24.46) < 0.01
    whole = _tool("tools.state_memory", *base, "--config.embedding_sharding=replicated")
    assert _per_device_gib(whole.stdout) > 190


def test_tools_refuse_bad_config_in_one_line():
    proc = _tool("tools.state_memory", "--workload=dlrm_dcnv2", "--config.nope=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: unknown config field 'nope' in a --config.* flag")
    proc = _tool("tools.state_memory", "--workload=dlrm_dcnv2", "--preset=reference",
                 "--config.mesh.model=3")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: mesh fsdp=1 x model=3 does "
                                                           "not divide 8 devices")


def test_argparse_tools_read_an_absl_flagfile(tmp_path, capsys):
    from tools import report

    missing = tmp_path / "no-runs-here"
    flagfile = tmp_path / "report.flags"
    flagfile.write_text(f"# the report's arguments\n{missing}\n--out={tmp_path / 'r.html'}\n")
    assert report.main([f"--flagfile={flagfile}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {missing} is not a directory; pass a submission package or a dir of runs")
    with pytest.raises(SystemExit) as exit_info:
        report.main([f"--flagfile={tmp_path / 'absent.flags'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Unable to open flagfile") and \
        err[0].endswith("pass a readable --flagfile")


def test_every_tool_imports_beside_suite_main():
    """absl flags live in one registry per process: two modules defining one flag name can't
    both be imported, as a test session that runs their tests in one worker does. So every
    tool, and suite.main, import in one process. (suite.infer is left out: its --workdir,
    --division and --submission_dir are suite.main's names, for its own runs.)"""
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "tools"))
                   if f.endswith(".py") and f != "__init__.py")
    assert {"bench_step", "bench_suite", "check_log", "minigo_target", "tpu_job"} <= set(names)
    code = "; ".join(["import suite.main", *(f"import tools.{name}" for name in names)])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
