"""Flags of `python -m tools.sweep` besides suite.main's own (flags/run_flags.py), which it
takes and passes on to every point's command line. Read only by tools/sweep.py."""

from absl import flags

SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "Required. The sweep's directory: one workdir per point "
    "(<sweep_dir>/<field>=<value>,...), the table (sweep.md, sweep.csv) and report.html. "
    "Rerun the same sweep with the same directory to resume it: finished points are read, "
    "not run again.")
GRID = flags.DEFINE_multi_string(
    "grid", [], "config.<field>=<v1>,<v2>,...: sweep a config field over these values, typed "
    "as --config.<field> is (repeatable; the grid is every combination). With --random, a "
    "value is drawn from the list for each point.")
RANGE = flags.DEFINE_multi_string(
    "range", [], "config.<field>=<low>:<high>[:lin|:log], with --random: draw the field "
    "uniformly (lin, the default) or log-uniformly (log) from [low, high]; integer fields "
    "draw integers, float fields are rounded to 4 significant digits (repeatable).")
RANDOM = flags.DEFINE_integer(
    "random", 0, "Sample this many distinct points from --range (and --grid) fields instead "
    "of running the whole grid (0: the grid).")
SAMPLE_SEED = flags.DEFINE_integer(
    "sample_seed", 0, "Seed of --random's draws: the same seed draws the same points, so a "
    "rerun resumes. Runs' own seeds come from --seed and --runs.")
PRINT_COMMANDS = flags.DEFINE_bool(
    "print_commands", False, "Print each point's suite.main command line, one per line, and "
    "run nothing (for a batch scheduler). Rerunning the sweep without it afterwards collects "
    "the finished points into the table and report.")
