"""A sweep's HTML report: its table, and one plot of time-to-train against each swept field
(points that did not converge marked in a band above the others)."""

import html
import math
import os

from suite import report_html as H
from suite.sweep import Field, render
from suite.sweep_results import Row, table

_TIME = {1: "time-to-train", 2: "mean time-to-train", 3: "olympic time-to-train"}


def _positions(values: list) -> tuple[list[float], list[str] | None]:
    """x positions of the values, and tick labels where they are not numbers."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = list(dict.fromkeys(render(v) for v in values))
    return [float(labels.index(render(v))) for v in values], labels


def plot_field(rows: list[Row], field: Field, title: str):
    """Time-to-train against one field's values: one line per combination of the other
    fields; each run's own time as a faint dot (with several runs); an 'X' in a band above the
    others for a point that did not converge."""
    done = [r for r in rows if r.seconds is not None]
    runs = rows[0].runs
    fig, ax = H.figure(f"{title}: time-to-train vs {field.name}", field.name,
                       "time-to-train (s)")
    values = [dict(r.point.values)[field.name] for r in done]
    xs, labels = _positions(values)
    # The runs' own times too: a slow run of a converged point must stay below the band.
    finite = [t.seconds for r in done for t in r.records if t.converged]
    top = max(finite, default=1.0)
    edge = top * 1.15 if finite else 1.0  # where points that did not converge sit
    groups: dict[str, list[tuple[float, Row]]] = {}
    for x, r in zip(xs, done, strict=True):
        others = ",".join(f"{k}={render(v)}" for k, v in r.point.values if k != field.name)
        groups.setdefault(others, []).append((x, r))
    for i, (others, members) in enumerate(sorted(groups.items())):
        members.sort(key=lambda m: m[0])
        line = [(x, r.seconds) for x, r in members if math.isfinite(r.seconds)]
        # An empty line still names a group whose points all missed the target.
        ax.plot(*(zip(*line, strict=True) if line else ([], [])), marker="o",
                color=H.color(i), label=others or _TIME[min(runs, 3)])
        for x, r in members:
            if runs > 1:
                times = [t.seconds for t in r.records if t.converged]
                ax.plot([x] * len(times), times, ".", color=H.color(i), alpha=0.35)
            if math.isinf(r.seconds):
                ax.plot(x, edge, "X", markersize=10, color=H.color(i))
    ax.set_ylim(bottom=0, top=edge * 1.08)
    if any(math.isinf(r.seconds) for r in done):
        separator = top * 1.07
        ax.axhline(separator, color="gray", linestyle=":")
        # Ticks past the separator would read as times the points that missed took.
        ticks = [t for t in ax.get_yticks() if 0 <= t < separator]
        ax.set_yticks([*ticks, edge], [f"{t:g}" for t in ticks] + ["∞"])
        ax.plot([], [], "X", color="gray", label="did not converge")
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    elif field.scale == "log":
        ax.set_xscale("log")
    if runs > 1:
        ax.plot([], [], ".", color="gray", alpha=0.5, label="one run")
    ax.legend(fontsize="small", loc="best")
    return fig


def build(sweep_dir: str, rows: list[Row], swept: list[Field], title: str,
          command: str) -> str:
    """Writes <sweep_dir>/report.html and its PNGs (report_files/); returns the report's path."""
    files_dir = os.path.join(sweep_dir, "report_files")
    os.makedirs(files_dir, exist_ok=True)
    header, cells = table(rows)
    parts = [f"<h1>jaxperf sweep: {html.escape(title)}</h1>",
             f"<p>{len(rows)} points, {rows[0].runs} run(s) each, under "
             f"<code>{html.escape(os.path.abspath(sweep_dir))}</code>. One point's command:</p>"
             f"<pre>{html.escape(command)}</pre>",
             H.table("sweep", header, cells)]
    unfinished = [r.point.name for r in rows if r.seconds is None]
    if unfinished:
        parts.append(f'<p class="note">not finished, left out of the plots: '
                     f'{html.escape(", ".join(unfinished))}</p>')
    for f in swept:
        png = os.path.join(files_dir, f"ttt_vs_{f.name}.png")
        parts.append(H.image(plot_field(rows, f, title), png, f"time-to-train vs {f.name}"))
    path = os.path.join(sweep_dir, "report.html")
    with open(path, "w", encoding="utf-8") as out:
        out.write(H.page(f"jaxperf sweep: {title}", "\n".join(parts)))
    return path
