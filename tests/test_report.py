"""tools.report on real runs of the tiny benchmark: what the HTML says must match the logs."""

import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from suite import scoring
from tests.helpers import ROOT, metadata, read_log, run_main, values
from tools import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_benchmark) -> str:
    """Three real runs: seeds 0 and 1 (from the shared benchmark) reached the target,
    seed 2 stops after 2 epochs."""
    root = tmp_path_factory.mktemp("runs")
    cache = str(tmp_path_factory.mktemp("cache"))
    workdir, _, _ = tiny_benchmark
    for seed in (0, 1):
        shutil.copytree(os.path.join(workdir, f"run_{seed}"), root / f"run_{seed}")
    proc = run_main(["--workload=resnet", f"--workdir={root}/run_2", "--seed=2",
                     "--config.max_epochs=2"], cache)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    return str(root)


class _Page(HTMLParser):
    """Tables by class (rows of cell texts) and the img srcs of a report."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.images, self.notes = {}, [], []
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class"), [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._table.append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def rows(self, cls: str) -> list[dict[str, str]]:
        header, *body = self.tables[cls]
        return [dict(zip(header, r, strict=True)) for r in body]


def _logged_times(root: str) -> dict[int, float]:
    """seed -> run_stop - run_start read straight from each log (inf unless success)."""
    times = {}
    for log in sorted(report.find_logs(root)):
        events = read_log(log)
        start = next(e["time_ms"] for e in events if e["key"] == "run_start")
        stop = next(e["time_ms"] for e in events if e["key"] == "run_stop")
        ok = metadata(events, "run_stop")[0]["status"] == "success"
        times[values(events, "seed")[0]] = (stop - start) / 1e3 if ok else math.inf
    return times


def _decoded_pngs(page: _Page) -> list[bytes]:
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in page.images)
    return [base64.b64decode(src[len(prefix):], validate=True) for src in page.images]


def test_report_matches_the_logs(runs, tmp_path):
    out = report.build(runs, str(tmp_path / "out" / "report.html"))
    assert out == str(tmp_path / "out" / "report.html")
    page = _Page(open(out, encoding="utf-8").read())

    pngs = _decoded_pngs(page)
    assert len(pngs) == 3  # eval vs time, time-to-train spread, throughput per block
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000  # a real plot, not a stub
    written = sorted(os.listdir(tmp_path / "out" / "report_files"))
    assert written == ["resnet_eval.png", "resnet_spread.png", "resnet_throughput.png"]
    assert sorted(pngs) == sorted((tmp_path / "out" / "report_files" / n).read_bytes()
                                  for n in written)

    times = _logged_times(runs)
    seeds = sorted(times)
    score = scoring.olympic([times[s] for s in seeds])
    rows = {int(r["seed"]): r for r in page.rows("runs")}
    assert sorted(rows) == seeds == [0, 1, 2]
    for i, seed in enumerate(seeds):
        row = rows[seed]
        assert row["dropped"] == ("yes" if i in score.dropped else "no")
        if math.isfinite(times[seed]):
            assert row["status"] == "success"
            assert float(row["time-to-train (s)"]) == round(times[seed], 3)
    assert rows[2]["status"] == "aborted" and rows[2]["epochs"] == "2"
    assert rows[2]["time-to-train (s)"].startswith("did not converge")

    (summary,) = page.rows("summary")
    assert (summary["benchmark"], summary["runs"], summary["converged"]) == ("resnet", "3", "2")
    assert summary["target"] == "top1 >= 0.95"
    minutes, seconds = map(float, re.fullmatch(r"([\d.]+) min \(([\d.]+) s\)",
                                               summary["olympic score"]).groups())
    assert seconds == round(score.seconds, 3) and minutes == round(score.minutes, 3)
    spread = scoring.variance([times[s] for s in seeds])
    assert summary["CV"] == f"{spread.cv * 100:.2f} %"
    assert summary["runs for ±2 % / ±5 %"] == f"{spread.runs_for[0.02]} / {spread.runs_for[0.05]}"
    assert summary["system"] == "1xcpu"  # the logged submission_platform: no package here


def test_submission_package_with_two_runs_has_plots_but_no_score(runs, tmp_path):
    org = tmp_path / "acme"
    bench_dir = org / "results" / "cpu_box" / "resnet"
    bench_dir.mkdir(parents=True)
    (org / "systems").mkdir()
    (org / "systems" / "cpu_box.json").write_text(json.dumps(
        {"system_name": "box <1>", "accelerator_model_name": "none", "number_of_nodes": 1,
         "host_processor_model_name": "Xeon & co"}))
    for i in (0, 2):
        shutil.copy(os.path.join(runs, f"run_{i}", "mlperf_log.txt"), bench_dir / f"result_{i}.txt")

    out = report.build(str(tmp_path))
    assert out == str(tmp_path / "report.html")
    text = open(out, encoding="utf-8").read()
    assert "box &lt;1&gt;" in text and "Xeon &amp; co" in text  # escaped, not raw markup
    page = _Page(text)
    assert len(_decoded_pngs(page)) == 3
    (summary,) = page.rows("summary")
    assert "needs at least 3 runs" in summary["olympic score"]
    assert summary["system"].startswith("system_name: box <1>; number_of_nodes: 1")
    assert [r["seed"] for r in page.rows("runs")] == ["0", "2"]
    assert {r["dropped"] for r in page.rows("runs")} == {"n/a"}


def test_log_without_its_target_gets_the_registry_target(runs, tmp_path):
    lines = open(os.path.join(runs, "run_0", "mlperf_log.txt")).read().splitlines(keepends=True)
    (tmp_path / "result_0.txt").write_text("".join(x for x in lines if "jaxperf_target" not in x))
    page = _Page(open(report.build(str(tmp_path)), encoding="utf-8").read())
    assert page.rows("summary")[0]["target"] == "top1 >= 0.759"  # resnet's closed target


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_the_report_path(runs, tmp_path):
    out = str(tmp_path / "r.html")
    proc = _cli(runs, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == out
    assert len(_Page(open(out, encoding="utf-8").read()).images) == 3


@pytest.mark.parametrize("make", ["empty", "missing", "not_a_log"])
def test_cli_bad_input_is_one_error_line(tmp_path, make):
    root = tmp_path / "in"
    if make != "missing":
        root.mkdir()
    if make == "not_a_log":
        (root / "result_0.txt").write_text("not an MLPerf log\n")
    proc = _cli(str(root))
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert not (root / "report.html").exists()
