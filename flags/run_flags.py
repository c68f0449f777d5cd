"""Flags of `python -m suite.main`. Defined here, read only in suite/main.py; the ones that
pick the config live in flags/config_flags.py, shared with the tools."""

from absl import flags

from flags.config_flags import DATA_DIR, PRESET, WORKLOAD  # noqa: F401  (read by main)
from flags.data_flags import DATA  # noqa: F401  (read by main)
from flags.package_flags import SUBMISSION_ORG, SYSTEM, SYSTEM_NAME  # noqa: F401  (read by main)

flags.declare_key_flag(DATA)  # one of main's own: its --help lists it

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: MLPerf log, resolved config, checkpoints. "
    "Default: runs/<workload>-<preset>-<time>. May be a bucket (gs://...; file:///dir to "
    "try it locally): checkpoints go there, the rest is staged under $JAXPERF_CACHE/workdirs "
    "and copied up at each block end and at the end.")
SEED = flags.DEFINE_integer("seed", 0, "Run seed; logged as MLPerf 'seed'.")
DIVISION = flags.DEFINE_string("division", None,
                               "closed or open. Default: closed for reference, open otherwise.")
SUBMISSION_PLATFORM = flags.DEFINE_string(
    "submission_platform", "", "MLPerf submission_platform. Default: <count>x<device kind>.")
SUBMISSION_STATUS = flags.DEFINE_string(
    "submission_status", "research", "MLPerf submission_status: onprem, cloud, preview, research.")
CHECKPOINT_EVERY_BLOCKS = flags.DEFINE_integer(
    "checkpoint_every_blocks", 0, "Save an orbax checkpoint every N blocks (0: never).")
CHECKPOINT_EVERY_MINUTES = flags.DEFINE_float(
    "checkpoint_every_minutes", 0.0, "Also save a checkpoint at the first block end M minutes "
    "or more after the run's start or its last checkpoint (0: never).")
STOP_AFTER_BLOCKS = flags.DEFINE_integer(
    "stop_after_blocks", 0,
    "Pause after N blocks with a checkpoint; rerun the same command to resume (0: run to the end).")
PROFILE_BLOCK = flags.DEFINE_integer(
    "profile_block", None, "Write an XProf trace (jax.profiler) of block K, 1-based as the "
    "progress line counts them (its training steps and its eval), into <workdir>/profile; "
    "a resumed run keeps the count. Open it with TensorBoard's profile plugin or xprof.")
RESTART = flags.DEFINE_bool(
    "restart", False, "Start over in a --workdir whose unfinished run cannot resume (killed "
    "before its first checkpoint): its files move to <workdir>/restarted-<k>/, log included. "
    "A run with a checkpoint resumes as without it.")
RUNS = flags.DEFINE_integer(
    "runs", 1, "Train N times with seeds seed..seed+N-1 into <workdir>/run_<i>, then score them "
    "as MLPerf does (drop the fastest and the slowest, average the rest).")
SUBMISSION_DIR = flags.DEFINE_string(
    "submission_dir", None, "With --runs: write an MLPerf training submission package here and "
    "run the official package checker and result summarizer on it.")
BORROW_HPARAMS = flags.DEFINE_string(
    "borrow_hparams", None, "Another submission's result log: run with its logged "
    "hyperparameters (the closed division's tunable ones), recorded in the log.")
MLLOG_STDOUT = flags.DEFINE_bool(
    "mllog_stdout", False, "Also print the MLPerf log's :::MLLOG lines on stdout (they are "
    "always in <workdir>/mlperf_log.txt), for tools that collect stdout. Turns the live "
    "progress bar off.")
CHECK_LOG = flags.DEFINE_bool(
    "check_log", True, "Run the official MLPerf compliance checker on the log at the end.")
MULTIHOST = flags.DEFINE_bool(
    "multihost", False,
    "Start JAX's distributed runtime (jax.distributed.initialize) before anything else. "
    "On Cloud TPU pods, SLURM, Open MPI and Kubernetes JobSets JAX finds its peers itself; "
    "elsewhere pass the three flags below.")
COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator (with --multihost).")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                     "Number of processes in the job (with --multihost).")
PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                  "This process's index, 0-based (with --multihost).")
