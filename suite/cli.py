"""A run's config from the command line, one parser for suite.main and every tool.

Two passes: --workload, --preset and --data_dir pick the workload and its preset; then the
--config.* flags, typed by that preset's fields, override them. Bad input ends in one line
on stderr and exit code 2.
"""

import sys
from collections.abc import Callable
from typing import TypeVar

import ml_collections
from absl import flags, logging

from common import host_memory
from common.errors import UserError
from flags import config_flags as F
from suite import registry

FLAGS = flags.FLAGS
_CONFIG: flags.FlagHolder | None = None


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


T = TypeVar("T")


def call(argv: list[str], body: Callable[[], T]) -> T:
    """The common start of an absl main: no positional arguments, JAX's INFO notes (every
    platform it probes) off unless --verbosity asks, a UserError as one line and exit 2.
    On a CPU-only host, freed memory is kept for the next step (common.host_memory)."""
    host_memory.keep_freed_memory()  # before JAX starts a backend; parse() did it already
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}; flags take the form --name=value")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        return body()
    except UserError as e:
        fail(str(e))


def data_dir() -> str | None:
    return F.DATA_DIR.value


def preset_name() -> str:
    return F.PRESET.value or ("reference" if F.DATA_DIR.value else "tiny")


def parser(check: Callable | None = None) -> Callable[[list[str]], list[str]]:
    """An absl flags_parser; check(workload, preset) runs between the passes (suite.main
    checks its run options there, before any --config.* is read)."""

    def parse(argv: list[str]) -> list[str]:
        global _CONFIG
        # The earliest point of every entry point: parsing a config may start JAX's backend.
        host_memory.keep_freed_memory()
        default = None
        try:
            FLAGS(argv, known_only=True)
            workload = registry.get(F.WORKLOAD.value)
            default = workload.config(preset_name())
            if check is not None:
                check(workload, preset_name())
            _CONFIG = F.define_config(default)
            # The second pass parses every flag again: a repeatable flag (--system) would
            # hold each value twice unless it starts over.
            for name in [n for n in FLAGS if isinstance(FLAGS[n], flags.MultiFlag)]:
                FLAGS[name].unparse()
            return FLAGS(argv)
        except UserError as e:
            fail(str(e))
        except flags.Error as e:
            fail(f"{e}; see --help")
        except (AttributeError, KeyError) as e:
            fail(_unknown_field(e, default))

    return parse


def _unknown_field(e: Exception, default) -> str:
    # ml_collections reports an override of a field the config lacks this way.
    field = str(e).strip("'\"")
    known = ", ".join(sorted(default.keys())) if default is not None else "?"
    return f"unknown config field {field!r} in a --config.* flag; fields: {known}"


def parse_config(workload, preset: str, overrides: list[str]) -> ml_collections.ConfigDict:
    """The preset with these --config.<field>=<value> flags applied, typed and checked as on
    the command line (UserError for the first bad one): a tool that writes command lines
    (tools.sweep) checks them with it before anything runs. Touches no global flag."""
    default = workload.config(preset)
    values = flags.FlagValues()
    try:
        # ml_collections finds the overridden fields here, so an unknown one fails here.
        holder = F.define_config(default, flag_values=values, sys_argv=["", *overrides])
        values(["", *overrides])
    except flags.Error as e:
        raise UserError(str(e)) from e
    except (AttributeError, KeyError) as e:
        raise UserError(_unknown_field(e, default)) from e
    return holder.value


def workload():
    return registry.get(F.WORKLOAD.value)


def config():
    """The preset with every --config.* override applied (after parsing)."""
    return _CONFIG.value


def explicit_fields() -> set[str]:
    """Config fields the command line set itself, in a --flagfile too (they win over borrowed
    hparams)."""
    return {name[len("config."):] for name in FLAGS
            if name.startswith("config.") and FLAGS[name].present}
