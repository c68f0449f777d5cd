"""LoadGen's settings: its embedded mlperf.conf, then the user.conf jaxperf writes.

TestSettings.FromConfig loads mlperf.conf only on its first call in a process (a static
counter), so every scenario runs in a process of its own (suite.serving.child).
"""

import os

# The tiny preset's runs are seconds long on a few hundred samples: fine for checking the
# harness, never a valid MLPerf result (the submission checker says so too).
TINY_MIN_DURATION_MS = 2000
TINY_SERVER_QUERIES = 1000


def user_conf(model: str, preset: str, found: dict) -> str:
    """found: measured numbers, e.g. {'SingleStream.target_latency': 0.4 (ms),
    'Offline.target_qps': 6000.0, 'Server.target_qps': 310.0}."""
    lines = [f"# jaxperf user.conf for {model}, preset {preset}"]
    if preset != "reference":
        lines += ["# short test durations (not a valid MLPerf result)",
                  f"*.*.min_duration = {TINY_MIN_DURATION_MS}",
                  # Server's early stopping wants several hundred queries even when none
                  # is late; a short run at a CPU's rate would end before that.
                  f"{model}.Server.min_query_count = {TINY_SERVER_QUERIES}"]
    lines += [f"{model}.{key} = {value:.6g}" for key, value in sorted(found.items())]
    return "\n".join(lines) + "\n"


def test_settings(lg, conf_path: str, model: str, scenario: str, mode: str,
                  overrides: dict | None = None):
    settings = lg.TestSettings()
    if settings.FromConfig(conf_path, model, scenario) != 0:
        raise ValueError(f"LoadGen refused {conf_path}")
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = {"performance": lg.TestMode.PerformanceOnly,
                     "accuracy": lg.TestMode.AccuracyOnly}[mode]
    for key, value in (overrides or {}).items():
        setattr(settings, key, value)
    return settings


def log_settings(lg, outdir: str):
    os.makedirs(outdir, exist_ok=True)
    settings = lg.LogSettings()
    settings.log_output.outdir = outdir
    settings.log_output.copy_summary_to_stdout = False
    settings.log_output.prefix_with_datetime = False
    return settings
