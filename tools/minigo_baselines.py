"""The MiniGo tiny preset's yardsticks against its perfect tic-tac-toe player: what an
untrained network with the eval's search scores (run seeds 0..N-1, the eval's own games),
and what a uniformly random player scores. They place the target (0.5: no game lost).

    python -m tools.minigo_baselines [--seeds=10]
"""

import functools

import numpy as np
from absl import app, flags, logging

_SEEDS = flags.DEFINE_integer("seeds", 10, "Run seeds whose untrained networks play.")


def random_player_score(workload, cfg, games: int, seed: int = 0) -> float:
    """A uniformly random legal mover against the preset's opponent, colours alternating."""
    import jax
    import jax.numpy as jnp

    from suite.selfplay import play

    env = workload.env(cfg)
    opponent = workload.opponent(cfg, workload.data_info(cfg, None))

    opponent_act = functools.partial(opponent.act, opponent.variables)
    game = functools.partial(play.arena_game, env, play.random_legal, opponent_act,
                             max_moves=cfg.max_moves)
    keys = jax.random.split(jax.random.key(seed), games)
    return float(np.mean(jax.jit(jax.vmap(game))(keys, jnp.arange(games))))


def untrained_scores(workload, cfg, seeds: int) -> list[float]:
    """The eval's score of each run seed's initial network: the loop's own arena."""
    import jax

    from suite import mesh as mesh_lib
    from suite.config import RunOptions
    from suite.loops.selfplay import SelfPlayLoop

    opts = RunOptions(workload="minigo", preset="tiny", workdir="unused")
    loop = SelfPlayLoop(workload, cfg, opts, workload.data_info(cfg, None),
                        mesh_lib.make_mesh())
    arena = loop.compiled["arena"]
    return [float(np.mean(jax.device_get(arena(loop.init_state(s), loop.opponent_vars))))
            for s in range(seeds)]


def main(argv) -> int:
    import jax

    from suite import config as config_lib
    from suite.workloads.minigo import MiniGoWorkload

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    workload = MiniGoWorkload()
    cfg = config_lib.resolve(workload, workload.config("tiny"), jax.device_count(),
                             jax.default_backend())
    scores = untrained_scores(workload, cfg, _SEEDS.value)
    print(f"untrained network with search ({cfg.eval_simulations} simulations), "
          f"{cfg.eval_games} games each, seeds 0-{_SEEDS.value - 1}: "
          + " ".join(f"{s:.3f}" for s in scores)
          + f"; mean {np.mean(scores):.3f}")
    print(f"uniformly random player: {random_player_score(workload, cfg, 10 * cfg.eval_games):.3f}"
          f" over {10 * cfg.eval_games} games")
    return 0


if __name__ == "__main__":
    app.run(main)
