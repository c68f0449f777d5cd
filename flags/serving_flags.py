"""The served model's flags shared by `suite.infer` and `tools.bench_infer`: one definition,
since absl keeps one flag registry a process (and the rest of suite.infer's flags, such as
--workdir and --division, are suite.main's names too)."""

from absl import flags

CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Workdir of a finished training run (python -m suite.main) whose final "
    "weights to serve. Default: the newest successful tiny run under $JAXPERF_CACHE/weights, "
    "trained first if there is none.")
MAX_BATCH = flags.DEFINE_integer("max_batch", 128, "Offline batch size (the largest bucket).")
