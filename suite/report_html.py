"""Pieces of a self-contained HTML report with matplotlib plots, shared by the reports of a
benchmark (tools.report) and of a sweep (suite.sweep_report).

Plots are embedded as PNG data URIs, so one file can be mailed around; each PNG is also
written beside the report.
"""

import base64
import html
import io
import math

CSS = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222} table{border-"
       "collapse:collapse;margin:1em 0} td,th{border:1px solid #bbb;padding:3px 8px;text-align:"
       "left} th{background:#eee} img{max-width:100%} .note{color:#a33}")


def figure(title: str, xlabel: str, ylabel: str):
    """(figure, axes) with a title, axis labels and a light grid."""
    # Figure without pyplot: no global backend or figure registry, safe in any process.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def color(i: int):
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def number(x: float, digits: int = 3) -> str:
    """x with `digits` decimals; 'inf' or 'n/a' where it is not finite."""
    return f"{x:.{digits}f}" if math.isfinite(x) else ("inf" if x > 0 else "n/a")


def table(cls: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def image(fig, png_path: str, caption: str) -> str:
    """Writes fig to png_path and returns it as an <h3> caption and an embedded <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = buf.getvalue()
    with open(png_path, "wb") as f:
        f.write(png)
    data = base64.b64encode(png).decode("ascii")
    return (f'<h3>{html.escape(caption)}</h3><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}">')


def page(title: str, body: str) -> str:
    """A whole HTML document around body."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{CSS}</style></head><body>\n{body}\n"
            "</body></html>\n")
