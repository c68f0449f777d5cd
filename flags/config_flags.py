"""The flags that pick a run's config, shared by suite.main and every tool (suite.cli reads
them): --workload, --preset, --data_dir, and --config.* overrides of any field."""

from absl import flags
from ml_collections import config_flags

WORKLOAD = flags.DEFINE_string(
    "workload", "resnet", "Benchmark to run: a registered name or <module>:<Class> of any "
    "importable Workload subclass.")
PRESET = flags.DEFINE_string(
    "preset", None,
    "'reference': the closed-division configuration on the real dataset; 'tiny': a CPU-sized "
    "model on built-in data. Default: reference when --data_dir is given, else tiny.")
DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data directory holding the prepared dataset (e.g. imagenet2012).")


def define_config(default, flag_values: flags.FlagValues = flags.FLAGS,
                  sys_argv: list[str] | None = None) -> flags.FlagHolder:
    """--config and its per-field overrides (--config.base_lr=...), typed by the defaults.

    Defined after --workload/--preset are known, since they decide the fields. The override
    flags come from sys_argv (default: the command line, --flagfile contents included).
    """
    return config_flags.DEFINE_config_dict("config", default, flag_values=flag_values,
                                           lock_config=True, sys_argv=sys_argv)
