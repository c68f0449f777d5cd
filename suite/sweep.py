"""A sweep: config fields swept over a grid or drawn at random, its points, and each point's
suite.main command line.

Values are typed and checked by suite.main's own config parser (suite.cli.parse_config) and
the closed division's rules (suite.division) before anything runs, so a bad grid is one line.
Only config fields are swept: seeds come from --seed and --runs (every point trains the same
seeds, so points differ by their config alone), and every other flag applies to all points.
"""

import dataclasses
import functools
import itertools
import math
import re
import shlex

import numpy as np

from common.errors import UserError
from suite import cli, division

SCALES = ("lin", "log")
# Random floats keep this many significant digits: readable directory names and command lines
# that say exactly what ran.
DIGITS = 4


@dataclasses.dataclass(frozen=True)
class Field:
    """One swept config field (dotted, without 'config.'): a grid's values, or a range."""

    name: str
    values: tuple = ()  # typed, in the order given
    low: float | int | None = None
    high: float | int | None = None
    scale: str = "lin"

    @property
    def is_range(self) -> bool:
        return self.low is not None


def render(value) -> str:
    """A value as a --config.<field>=<value> flag takes it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Point:
    values: tuple[tuple[str, object], ...]  # (field, typed value), in field order

    @property
    def name(self) -> str:
        """Its workdir's name under the sweep dir: field=value,field=value."""
        text = ",".join(f"{k}={render(v)}" for k, v in self.values)
        return re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)

    def overrides(self) -> list[str]:
        return [f"--config.{k}={render(v)}" for k, v in self.values]


def _split(flag: str, spec: str) -> tuple[str, str]:
    name, _, rest = spec.partition("=")
    if not name.startswith("config."):
        raise UserError(
            f"--{flag}={spec}: a sweep varies config fields (--{flag}=config.<field>=...); "
            "seeds come from --seed and --runs, and other flags apply to every point")
    if not rest:
        example = "1,2,4" if flag == "grid" else "0.5:8:log"
        raise UserError(f"--{flag}={spec} gives no values; e.g. --{flag}={name}={example}")
    return name[len("config."):], rest


def _typed(workload, preset: str, flag: str, spec: str, field: str, text: str):
    try:
        cfg = cli.parse_config(workload, preset, [f"--config.{field}={text}"])
    except UserError as e:
        raise UserError(f"--{flag}={spec}: {e}") from e
    value = functools.reduce(lambda c, k: c[k], field.split("."), cfg)
    if not isinstance(value, bool | int | float | str):
        raise UserError(f"--{flag}={spec}: config.{field} holds a {type(value).__name__}; a "
                        "sweep varies number, bool or string fields")
    return value


def parse_grid(workload, preset: str, spec: str) -> Field:
    """config.<field>=v1,v2,...: the values typed as --config.<field> types them."""
    field, rest = _split("grid", spec)
    values = [_typed(workload, preset, "grid", spec, field, t) for t in rest.split(",")]
    twice = [v for i, v in enumerate(values) if v in values[:i]]
    if twice:
        raise UserError(f"--grid={spec} lists {render(twice[0])} twice; list each value once")
    return Field(field, tuple(values))


def parse_range(workload, preset: str, spec: str) -> Field:
    """config.<field>=low:high[:lin|:log] of an int or float field."""
    field, rest = _split("range", spec)
    parts = rest.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in SCALES):
        raise UserError(f"--range={spec} must look like config.{field}=<low>:<high>[:lin|:log], "
                        f"e.g. config.{field}=0.5:8:log")
    low, high = (_typed(workload, preset, "range", spec, field, t) for t in parts[:2])
    if isinstance(low, bool | str):
        raise UserError(f"--range={spec}: config.{field} is a {type(low).__name__} field; "
                        f"list its values with --grid=config.{field}=...")
    scale = parts[2] if len(parts) == 3 else "lin"
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise UserError(f"--range={spec} needs finite bounds with low < high")
    if scale == "log" and low <= 0:
        raise UserError(f"--range={spec}: a log range needs low > 0")
    return Field(field, low=low, high=high, scale=scale)


def fields(workload, preset: str, grids: list[str], ranges: list[str], *, random: int,
           fixed: set[str]) -> list[Field]:
    """The swept fields; fixed: the config fields the base command sets (--config.*)."""
    if ranges and not random:
        raise UserError("--range draws values at random: add --random=<points>, or list the "
                        "values with --grid=config.<field>=v1,v2,...")
    if random < 0:
        raise UserError(f"--random must be >= 0, got {random}")
    swept = ([parse_grid(workload, preset, s) for s in grids]
             + [parse_range(workload, preset, s) for s in ranges])
    if not swept:
        raise UserError("nothing to sweep: pass --grid=config.<field>=v1,v2,... (or --random=N "
                        "with --range=config.<field>=<low>:<high>)")
    seen = set()
    for f in swept:
        if f.name in seen:
            raise UserError(f"config.{f.name} is swept twice; give it one --grid or --range")
        if f.name in fixed:
            raise UserError(f"config.{f.name} is swept and also set with --config.{f.name}; "
                            "drop one of them")
        seen.add(f.name)
    return swept


def grid_points(swept: list[Field]) -> list[Point]:
    """Every combination, the first field varying slowest."""
    names = [f.name for f in swept]
    return [Point(tuple(zip(names, combo, strict=True)))
            for combo in itertools.product(*(f.values for f in swept))]


def _draw(f: Field, rng: np.random.Generator):
    if not f.is_range:
        return f.values[int(rng.integers(len(f.values)))]
    if isinstance(f.low, int) and f.scale == "lin":
        return int(rng.integers(f.low, f.high + 1))
    if f.scale == "log":
        x = math.exp(rng.uniform(math.log(f.low), math.log(f.high)))
    else:
        x = rng.uniform(f.low, f.high)
    if isinstance(f.low, int):
        return min(max(round(x), f.low), f.high)
    return min(max(float(f"{x:.{DIGITS}g}"), f.low), f.high)


def random_points(swept: list[Field], n: int, seed: int) -> list[Point]:
    """n distinct points drawn with this seed: the same seed draws the same points."""
    rng = np.random.default_rng(seed)
    points: dict[Point, None] = {}
    for _ in range(100 * n):
        points.setdefault(Point(tuple((f.name, _draw(f, rng)) for f in swept)))
        if len(points) == n:
            return list(points)
    raise UserError(f"--random={n}: the ranges and grids gave only {len(points)} distinct points "
                    f"in {100 * n} draws; ask for fewer or widen them")


def check(workload, preset: str, division_name: str, base_overrides: list[str],
          points: list[Point]) -> list:
    """Each point's config (returned), parsed as suite.main parses it; in the closed division
    it may change only what the rules let change. Distinct points get distinct directories."""
    reference = workload.config(preset)
    names: dict[str, Point] = {}
    configs = []
    for p in points:
        if names.setdefault(p.name, p) != p:
            raise UserError(f"points {names[p.name].values} and {p.values} would share the "
                            f"directory {p.name}; use values that differ in [A-Za-z0-9._+-]")
        cfg = cli.parse_config(workload, preset, [*base_overrides, *p.overrides()])
        if division_name == "closed":
            division.check_closed(workload, division.changes(reference, cfg))
        configs.append(cfg)
    return configs


def command(base: list[str], point: Point, runs: int, workdir: str) -> list[str]:
    """suite.main's arguments for one point: the base flags, the point's fields, its runs."""
    return [*base, *point.overrides(), f"--runs={runs}", f"--workdir={workdir}"]


def shell_line(args: list[str]) -> str:
    return shlex.join(["python", "-m", "suite.main", *args])
