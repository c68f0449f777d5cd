"""Training paradigms under the one MLPerf lifecycle (suite.lifecycle): a workload's `kind`
names its loop here."""

from common.errors import UserError


def get(kind: str):
    """The Loop class of a workload kind."""
    from suite.loops.selfplay import SelfPlayLoop
    from suite.loops.supervised import SupervisedLoop

    loops = {"supervised": SupervisedLoop, "selfplay": SelfPlayLoop}
    if kind not in loops:
        raise UserError(f"no training loop for workload kind {kind!r}; kinds: "
                        f"{', '.join(sorted(loops))}")
    return loops[kind]
