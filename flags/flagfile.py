"""absl's --flagfile for the tools that parse their arguments with argparse (tools.report,
tools.submission, tools.make_tiny_*), so that every entry point takes one; the absl entry
points (suite.main, suite.infer, the other tools) read it themselves."""

import sys

from absl import flags


def expand(argv: list[str] | None = None) -> list[str]:
    """argv (default: sys.argv[1:]) with each --flagfile=<file> replaced by the arguments in it,
    one a line (# starts a comment), exactly as absl reads them. An unreadable file is one
    error line and exit code 2, as argparse ends on bad arguments."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return flags.FlagValues().read_flags_from_files(args, force_gnu=False)
    except flags.Error as e:
        print(f"error: {str(e).removeprefix('ERROR:: ')}; pass a readable --flagfile",
              file=sys.stderr, flush=True)
        sys.exit(2)
