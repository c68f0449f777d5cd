"""One self-contained HTML report of several MLPerf runs, one section per benchmark.

    python -m tools.report <dir> [--out report.html]

<dir> is an MLPerf submission package (<org>/results/<system>/<benchmark>/result_<i>.txt
beside <org>/systems/<system>.json) or any tree of run logs named result_*.txt or
mlperf_log.txt. Plots are embedded as PNG data URIs so the one file can be mailed
around; the same PNGs are also written to report_files/ next to it.
"""

import argparse
import dataclasses
import functools
import html
import json
import math
import os
import re
import sys

from common.errors import UserError
from flags import flagfile
from suite import report_html as H
from suite import scoring
from suite.target import Target

_SYSTEM_FIELDS = (  # MLPerf system-description keys worth a reader's eye, in this order
    "system_name", "number_of_nodes", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "host_processor_model_name", "host_processors_per_node",
    "host_processor_core_count", "framework", "operating_system",
)


@dataclasses.dataclass
class _Section:
    title: str
    slug: str
    runs: list  # scoring.RunRecord, ordered by seed
    system: str
    targets: list  # (metric, op, value), deduplicated
    elapsed: list  # run_start -> run_stop seconds, also for runs that did not converge
    score: scoring.Score | None = None
    spread: scoring.Variance | None = None


def find_logs(root: str) -> list[str]:
    """Every result_*.txt and mlperf_log.txt under root, sorted."""
    if not os.path.isdir(root):
        raise UserError(f"{root} is not a directory; pass a submission package or a dir of runs")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name == "mlperf_log.txt" or (name.startswith("result_") and name.endswith(".txt")):
                found.append(os.path.join(dirpath, name))
    return found


def _package_system(log: str) -> tuple[str, str | None]:
    """(system dir name, its systems/<name>.json) when the log sits in a submission package."""
    system_dir = os.path.dirname(os.path.dirname(os.path.abspath(log)))
    if os.path.basename(os.path.dirname(system_dir)) != "results":
        return "", None
    system = os.path.basename(system_dir)
    org = os.path.dirname(os.path.dirname(system_dir))
    desc = os.path.join(org, "systems", f"{system}.json")
    return system, desc if os.path.isfile(desc) else None


def _describe_system(desc: str) -> str:
    try:
        with open(desc) as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read system description {desc} ({e}); fix or remove it") from e
    if not isinstance(info, dict):
        raise UserError(f"system description {desc} is not a JSON object; fix or remove it")
    keys = [k for k in _SYSTEM_FIELDS if info.get(k) not in (None, "")]
    # An unusual description still says something: fall back to all its plain fields.
    keys = keys or [k for k, v in info.items() if isinstance(v, str | int | float)]
    return "; ".join(f"{k}: {info[k]}" for k in keys)


def _elapsed(path: str) -> float:
    """run_start -> run_stop even for an aborted run, where RunRecord.seconds is inf."""
    times = {e["key"]: e["time_ms"] for e in scoring.read_events(path)
             if e.get("key") in ("run_start", "run_stop")}
    if "run_start" in times and "run_stop" in times:
        return (times["run_stop"] - times["run_start"]) / 1e3
    return math.nan


@functools.lru_cache
def _registry_target(benchmark: str) -> tuple[str, str, float] | None:
    # Imported only when a log lacks jaxperf_target: the registry pulls in the models.
    from suite import registry

    for name in registry.names():
        w = registry.get(name)
        if w.benchmark == benchmark:
            return (w.target.metric, ">=" if w.target.mode == "max" else "<=", w.target.value)
    return None


def _target_of(run: scoring.RunRecord) -> tuple[str, str, float] | None:
    t = Target.parse(str(run.hparams.get("jaxperf_target", "")))
    if t is None:
        return _registry_target(run.benchmark)
    return (t.metric, ">=" if t.mode == "max" else "<=", t.value)


def _sections(logs: list[str]) -> list[_Section]:
    groups: dict[tuple[str, str], list] = {}
    descs: dict[tuple[str, str], str | None] = {}
    for log in logs:
        run = scoring.read_run(log)
        if not run.benchmark:
            raise UserError(f"{log} has no submission_benchmark; is it an MLPerf log? remove it")
        system, desc = _package_system(log)
        # Runs on different systems never share an olympic score.
        key = (run.benchmark, system or str(run.hparams.get("submission_platform", "")))
        groups.setdefault(key, []).append(run)
        descs[key] = desc  # one system dir, one description
    sections, slugs = [], set()
    for (bench, system), runs in sorted(groups.items()):
        runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, r.path))
        title = bench if sum(b == bench for b, _ in groups) == 1 else f"{bench} on {system}"
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", title)
        while slug in slugs:
            slug += "_"
        slugs.add(slug)
        targets = list(dict.fromkeys(t for t in map(_target_of, runs) if t))
        system_text = _describe_system(descs[(bench, system)]) if descs[(bench, system)] else system
        s = _Section(title, slug, runs, system_text, targets, [_elapsed(r.path) for r in runs])
        if len(runs) >= 3:
            times = [r.seconds for r in runs]
            s.score, s.spread = scoring.olympic(times), scoring.variance(times)
        sections.append(s)
    return sections


# ---- plots -----------------------------------------------------------------------------

def _label(run: scoring.RunRecord) -> str:
    return f"seed {run.seed}" if run.seed is not None else os.path.basename(run.path)


def _plot_evals(s: _Section):
    metric = s.targets[0][0] if s.targets else "eval_accuracy"
    fig, ax = H.figure(f"{s.title}: eval {metric} vs time", "seconds since run_start", metric)
    for i, run in ((i, r) for i, r in enumerate(s.runs) if r.evals):
        t, _, v = zip(*run.evals, strict=True)
        note = "" if run.converged else " (did not converge)"
        ax.plot(t, v, marker=".", color=H.color(i), label=_label(run) + note)
        if run.converged:
            ax.plot(t[-1], v[-1], marker="*", markersize=14, color=H.color(i), mec="black",
                    linestyle="none")
    for metric_name, op, value in s.targets:
        ax.axhline(value, color="black", linestyle="--", label=f"target {metric_name} {op} {value}")
    ax.plot([], [], marker="*", markersize=12, color="gray", mec="black", linestyle="none",
            label="converged (final eval)")
    ax.legend(fontsize="small", loc="best")
    return fig


def _plot_spread(s: _Section):
    fig, ax = H.figure(f"{s.title}: time-to-train per run", "time-to-train (s)", "")
    finite = [r.seconds for r in s.runs if r.converged]
    if s.score:
        finite += [x for x in (s.score.seconds, *s.spread.ci95) if math.isfinite(x)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max((hi - lo) * 0.15, hi * 0.05, 1e-3)
    # Non-converged runs have no time: they sit in a column past a separator at the right.
    edge, separator = hi + 3 * pad, hi + 1.5 * pad
    ax.axvline(separator, color="gray", linestyle=":")
    ax.set_xlim(max(0.0, lo - 2 * pad), edge + pad)
    # Ticks past the separator would read as times the non-converged runs took.
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t < separator]
    ax.set_xticks([*ticks, edge], [f"{t:g}" for t in ticks] + ["∞"])
    dropped = s.score.dropped if s.score else ()
    for i, run in enumerate(s.runs):
        x = run.seconds if run.converged else edge
        ax.plot(x, i, marker="o" if run.converged else "X", markersize=9, color=H.color(i),
                linestyle="none")
        if not run.converged:
            ax.annotate("did not converge", (x, i), xytext=(0, 14), textcoords="offset points",
                        ha="center", va="bottom", fontsize="small")
        if i in dropped:
            ax.plot(x, i, marker="s", markersize=18, mfc="none", mec="crimson", mew=1.5,
                    linestyle="none")
    if s.score:
        low, high = (min(v, edge) for v in s.spread.ci95)
        upper = " (upper bound ∞)" if math.isinf(s.spread.ci95[1]) else ""
        ax.axvspan(low, high, color="tab:blue", alpha=0.15, label=f"bootstrap 95 % CI{upper}")
        ax.axvline(min(s.score.seconds, edge), color="black",
                   label=f"olympic score {H.number(s.score.seconds)} s" if math.isfinite(
                       s.score.seconds) else "olympic score ∞ (2+ runs did not converge)")
    else:
        ax.text(0.5, 0.97, f"no olympic score: needs at least 3 runs, have {len(s.runs)}",
                transform=ax.transAxes, ha="center", va="top")
    ax.plot([], [], "o", color="gray", label="converged")
    ax.plot([], [], "X", color="gray", label="did not converge")
    if dropped:
        ax.plot([], [], "s", mfc="none", mec="crimson", mew=1.5, markersize=12,
                label="dropped (fastest / slowest)")
    ax.set_yticks(range(len(s.runs)), [_label(r) for r in s.runs])
    ax.set_ylim(-0.7, len(s.runs) - 0.3)
    # Below the axes: inside it the legend would hide whichever run sits in its corner.
    fig.legend(fontsize="small", loc="outside lower center", ncol=3)
    return fig


def _plot_throughput(s: _Section):
    where = ("samples trained (end of block)" if any(r.counts_samples for r in s.runs)
             else "epoch (last of block)")
    fig, ax = H.figure(f"{s.title}: training throughput per block", where, "samples/s")
    for i, run in enumerate(s.runs):
        points = run.block_throughput()
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=H.color(i), label=_label(run))
    ax.set_ylim(bottom=0)
    if ax.lines:
        ax.legend(fontsize="small", loc="lower right")
    return fig


# ---- HTML ------------------------------------------------------------------------------

def _summary(s: _Section) -> tuple[str, list[str]]:
    runs, notes = s.runs, []
    divisions = ", ".join(sorted({r.division for r in runs}))
    target = ", ".join(f"{m} {op} {v}" for m, op, v in s.targets) or "unknown"
    if len(s.targets) > 1:
        notes.append("the runs were trained to different targets; compare them with care")
    if s.score is None:
        score = f"n/a: an olympic score needs at least 3 runs (have {len(runs)})"
        ci = cv = runs_for = "n/a"
        notes.append(f"an olympic score needs at least 3 runs; this benchmark has {len(runs)}")
    else:
        v = s.spread
        score = (f"{H.number(s.score.minutes)} min ({H.number(s.score.seconds)} s)"
                 if math.isfinite(s.score.seconds) else "∞ (did not converge)")
        ci = " to ".join(f"{H.number(x)} s" if math.isfinite(x) else "∞" for x in v.ci95)
        cv = f"{v.cv * 100:.2f} %" if math.isfinite(v.cv) else "n/a (fewer than 2 converged)"
        runs_for = " / ".join(str(v.runs_for[p]) if v.runs_for[p] else "n/a" for p in (0.02, 0.05))
        if math.isinf(s.score.seconds):
            notes.append("more than one run did not converge, so the olympic score is infinite")
    converged = sum(r.converged for r in runs)
    header = ["benchmark", "division", "target", "runs", "converged", "olympic score",
              "95 % CI (bootstrap)", "CV", "runs for ±2 % / ±5 %", "system"]
    row = [runs[0].benchmark, divisions, target, str(len(runs)), str(converged), score, ci, cv,
           runs_for, s.system or "unknown"]
    return H.table("summary", header, [row]), notes


def _runs_table(s: _Section, root: str) -> str:
    dropped = s.score.dropped if s.score else ()
    rows = []
    for i, (run, wall) in enumerate(zip(s.runs, s.elapsed, strict=True)):
        ttt = (H.number(run.seconds) if run.converged else "did not converge" +
               (f" (stopped after {H.number(wall)} s)" if math.isfinite(wall)
                else " (no run_stop)"))
        final = f"{run.evals[-1][2]:.4f}" if run.evals else "n/a"
        drop = "n/a" if s.score is None else ("yes" if i in dropped else "no")
        rows.append([str(run.seed), run.status, ttt, str(run.epochs), final, drop,
                     os.path.relpath(run.path, root)])
    header = ["seed", "status", "time-to-train (s)", "epochs", "final metric", "dropped", "log"]
    return H.table("runs", header, rows)


def _section_html(s: _Section, root: str, files_dir: str) -> str:
    parts = [f'<h2 id="{html.escape(s.slug)}">{html.escape(s.title)}</h2>']
    summary, notes = _summary(s)
    parts += [summary] + [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    plots = (("eval", "eval metric vs time", _plot_evals),
             ("spread", "time-to-train spread", _plot_spread),
             ("throughput", "throughput per block", _plot_throughput))
    for kind, caption, plot in plots:
        parts.append(H.image(plot(s), os.path.join(files_dir, f"{s.slug}_{kind}.png"), caption))
    parts += ["<h3>runs</h3>", _runs_table(s, root)]
    return "\n".join(parts)


def build(root: str, out_path: str | None = None) -> str:
    """Writes the report (default <root>/report.html) and its PNGs; returns the report's path."""
    logs = find_logs(root)
    if not logs:
        raise UserError(f"no result_*.txt or mlperf_log.txt under {root}; pass a dir of run logs")
    sections = _sections(logs)
    out_path = out_path or os.path.join(root, "report.html")
    files_dir = os.path.join(os.path.dirname(os.path.abspath(out_path)), "report_files")
    try:
        os.makedirs(files_dir, exist_ok=True)
        body = "\n".join(_section_html(s, root, files_dir) for s in sections)
        toc = "".join(f'<li><a href="#{html.escape(s.slug)}">{html.escape(s.title)}</a></li>'
                      for s in sections)
        page = H.page(f"jaxperf report: {root}",
                      f"<h1>jaxperf report</h1><p>{len(logs)} run logs under "
                      f"<code>{html.escape(os.path.abspath(root))}</code></p><ul>{toc}</ul>\n"
                      f"{body}")
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise UserError(f"cannot write the report at {out_path} ({e.strerror}); "
                        "pass a writable --out") from e
    return out_path


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m tools.report", description=doc)
    parser.add_argument("dir", help="submission package or directory of run logs")
    parser.add_argument("--out", help="report path (default <dir>/report.html)")
    args = parser.parse_args(flagfile.expand(argv))
    try:
        path = build(args.dir, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
