"""--data, shared by `suite.main` and `tools.project_ttt` (which measures a run's costs on the
batches a run would read): one definition, since absl keeps one flag registry a process."""

from absl import flags

# A string, not an enum: flags/ imports nothing of suite, where the choices live
# (suite.config.DATA_CHOICES); suite.config.validate_options refuses any other value.
DATA = flags.DEFINE_string(
    "data", "real", "'real' or 'synthetic' (random batches: throughput only, never a result).")
