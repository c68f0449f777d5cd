"""Flags of `python -m suite.infer` besides the config's (flags/config_flags.py)."""

from absl import flags

from flags.config_flags import DATA_DIR, PRESET, WORKLOAD  # noqa: F401  (read by suite.infer)
from flags.package_flags import SUBMISSION_ORG, SYSTEM, SYSTEM_NAME  # noqa: F401  (read there)
from flags.serving_flags import CHECKPOINT, MAX_BATCH  # noqa: F401  (read there)

flags.declare_key_flag(CHECKPOINT)  # suite.infer's own: its --help lists them
flags.declare_key_flag(MAX_BATCH)

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")

SCENARIO = flags.DEFINE_enum("scenario", "all", (*SCENARIOS, "all"),
                             "LoadGen scenario to run, or all four.")
MODE = flags.DEFINE_enum("mode", "both", ("performance", "accuracy", "both"),
                         "LoadGen's PerformanceOnly, AccuracyOnly, or both.")
PRECISION = flags.DEFINE_enum("precision", "fp32", ("fp32", "bf16", "int8"),
                              "Serving precision; int8 is post-training static quantization.")
CALIBRATION_LIST = flags.DEFINE_string(
    "calibration_list", None, "int8: file of eval-split image file names to calibrate on, "
    "MLPerf's calibration set (ImageNet: cal_image_list_option_1.txt, 500 validation images). "
    "Default for the tiny preset: its fixed subset of the training split.")
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory: LoadGen logs per scenario and mode, user.conf, results. "
    "Default: runs/infer-<workload>-<precision>-<time>.")
SUBMISSION_DIR = flags.DEFINE_string(
    "submission_dir", None, "Write an MLPerf inference submission package here.")
DIVISION = flags.DEFINE_enum("division", "open", ("open", "closed"),
                             "Our own trained weights make an open-division result.")
ALLOW_UNCONVERGED = flags.DEFINE_bool(
    "allow_unconverged", False, "Serve weights of a run that never reached its target "
    "(open division only).")
COMPLIANCE = flags.DEFINE_bool(
    "compliance", None, "Run and verify the compliance tests TEST01 and TEST04 after each "
    "scenario. Default: with --submission_dir.")
SERVER_MAX_BATCH = flags.DEFINE_integer("server_max_batch", 32,
                                        "Largest batch Server's dynamic batcher closes.")
SERVER_WAIT_MS = flags.DEFINE_float(
    "server_wait_ms", 2.0, "Server: how long a batch waits for more samples after its first.")
