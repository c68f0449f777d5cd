"""The one table suite.infer ends with."""

from suite.serving.results import METRIC


def table(rows: list[dict]) -> str:
    lines = [f"{'scenario':<13} {'official metric':<44} {'value':>12}  {'LoadGen':<8} accuracy",
             "-" * 94]
    for row in rows:
        scenario = row["scenario"]
        perf, acc = row.get("performance"), row.get("accuracy")
        name = f"{METRIC[scenario][1]} [{METRIC[scenario][2]}]"
        value = f"{perf['metric']:.4g}" if perf and perf["metric"] is not None else "-"
        verdict = ("VALID" if perf["valid"] else "INVALID") if perf else "-"
        accuracy = "-"
        if acc:
            scores = {k: v for k, v in acc.items() if k in ("top1",)}
            accuracy = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        tests = " ".join(f"{t} {'PASS' if ok else 'FAIL'}"
                         for t, ok in row.get("compliance", {}).items())
        lines.append(f"{scenario:<13} {name:<44} {value:>12}  {verdict:<8} {accuracy}"
                     + (f"  {tests}" if tests else ""))
        if perf and not perf["valid"] and perf["reason"]:
            lines.append(f"{'':<13} LoadGen: {perf['reason']}")
    return "\n".join(lines)
