"""Writes a MiniGo target model in the reference's checkpoint format (target.index and
target.data-*, models.minigo_target) and prints its sha256: from a finished jaxperf run's
final weights, or from a random init of the configured network. A small-scale run (9x9, a
shallow tower) plays such a target where MLCommons' 19x19 one does not fit.

    python -m tools.minigo_target --workload=minigo --preset=reference \
        --config.board_size=9 --config.trunk_layers=2 --target_dir=/data/minigo9 \
        [--from_workdir=<a minigo run>] [--init_seed=0]

Then: python -m suite.main --workload=minigo --preset=reference --data_dir=/data/minigo9 ...
with the same --config.* (and --config.target_sha256=<printed digest> to pin it).
"""

import os

from absl import app, flags

from common.errors import UserError
from suite import cli

# Not --out and --seed: tpu_job has an --out (its job folder), suite.main a --seed (the
# run's), and tools share one flag registry in a process.
_OUT = flags.DEFINE_string("target_dir", None,
                           "Directory to write target.index/target.data-* into.")
_FROM = flags.DEFINE_string("from_workdir", None, "A finished minigo run whose final weights "
                            "become the target (default: a random init).")
_SEED = flags.DEFINE_integer("init_seed", 0, "Seed of the random init.")


def write(workload, cfg, out: str, from_workdir: str | None, seed: int) -> str:
    """The digest of the target written to out/target."""
    import jax

    from models import minigo_target

    if workload.name != "minigo" or cfg.network != "dual_net":
        raise UserError("a target model is MiniGo's dual network: pass --workload=minigo "
                        "--preset=reference (or --config.network=dual_net)")
    if from_workdir:
        params, model_state = workload.run_weights(cfg, from_workdir)
    else:
        params, model_state = workload.init_variables(cfg, jax.random.key(seed))
    os.makedirs(out, exist_ok=True)
    variables = jax.device_get({"params": params, **model_state})
    return minigo_target.save_target(variables, workload.net_config(cfg),
                                     os.path.join(out, "target"))


def main(argv) -> int:
    def body() -> str:
        if not _OUT.value:
            raise UserError("--target_dir is required: the directory to write the target "
                            "model into")
        return write(cli.workload(), cli.config(), _OUT.value, _FROM.value, _SEED.value)

    digest = cli.call(argv, body)
    print(f"target model written to {os.path.join(_OUT.value, 'target')}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
