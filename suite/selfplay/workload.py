"""The contract of a self-play workload (kind "selfplay", trained by suite.loops.selfplay).

A self-play benchmark has no dataset: each generation plays games with the newest network
and search, keeps the last N generations' positions in a window, trains on minibatches of
it, and is scored by playing a fixed opponent. The workload says which game, which network,
which opponent and which hyperparameters; the loop owns devices, jit, sharding and the log.
The supervised parts of the Workload contract (datasets, eval steps) have no meaning here.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from common.errors import UserError
from suite import schedule as schedule_lib
from suite.selfplay import search as search_lib
from suite.workload import DataInfo, Workload


@dataclasses.dataclass(frozen=True)
class Opponent:
    """The fixed player a generation is scored against. act(variables, key, state) moves
    in one unbatched pgx state; variables (a pytree of host arrays, or None) are placed on
    the devices by the loop, so that a network opponent's weights are an argument of the
    compiled arena, not a constant baked into it."""

    name: str  # for the log and messages: "perfect player", "target model <sha256>"
    act: Callable[[Any, jax.Array, Any], jax.Array]
    variables: Any = None


def selfplay_config(c: ml_collections.ConfigDict) -> None:
    """The fields every self-play workload has; a generation is the log's epoch."""
    c.games_per_generation = 0
    c.simulations = 0  # search simulations (readouts) per move in self-play
    c.considered_actions = 16  # Gumbel root: at most this many moves searched
    c.random_opening_moves = 0  # uniform random legal moves that open each self-play game
    c.window_generations = 1  # the replay window: positions of this many generations
    c.train_steps_per_generation = 1
    c.eval_games = 0  # per evaluation, half with each colour
    c.eval_simulations = 0  # the agent's search in evaluation (no Gumbel noise)
    c.eval_seed = 0  # the same eval games for every generation and every run seed
    c.max_moves = 0  # a game is over by then (the environment ends it)
    # Evaluate positions on random board symmetries (square boards): what makes eval games
    # between two noise-free searching networks differ.
    c.random_symmetry = False


class Generations(schedule_lib.EpochBlocks):
    """Epoch blocks whose epochs are generations, and are called so where people read."""

    def position(self, value, last=None) -> str:
        return f"generation {value:g}" + (f"/{last:g}" if last is not None else "")

    def budget(self) -> str:
        return f"{self.blocks[-1].eval_epoch:g} generations"


class SelfPlayWorkload(Workload):
    kind = "selfplay"
    data_dir_help = "the directory that holds the target model"
    data_dir_required = False

    # ----- what the loop calls -----------------------------------------------
    def env(self, cfg):
        """The pgx environment of the game; it must end every game within cfg.max_moves."""
        raise NotImplementedError

    def forward(self, cfg, params, model_state, observations: jax.Array,
                train: bool) -> tuple[jax.Array, jax.Array, Any]:
        """observations [B, ...] -> (policy logits [B, A], value [B] in [-1, 1] for the
        player to move, new model_state)."""
        raise NotImplementedError

    def observe(self, cfg) -> search_lib.Observe:
        """One pgx state -> the network's input. Default: the environment's encoding."""
        return search_lib.pgx_observation

    def opponent(self, cfg, data: DataInfo) -> Opponent:
        """The fixed target the eval plays; loaded before run_start."""
        raise NotImplementedError

    def evaluator(self, cfg, params, model_state) -> search_lib.Evaluate:
        """The network as the search sees it, in eval mode: observations -> (logits, value)."""
        def evaluate(observations):
            logits, value, _ = self.forward(cfg, params, model_state, observations, train=False)
            return logits, value
        return evaluate

    def search(self, cfg, evaluation: bool) -> search_lib.SearchConfig:
        board = cfg.board_size if cfg.random_symmetry else 0
        if evaluation:
            return search_lib.SearchConfig(cfg.eval_simulations, cfg.considered_actions, 0.0,
                                           board)
        return search_lib.SearchConfig(cfg.simulations, cfg.considered_actions, 1.0, board)

    # ----- shared parts of the contract ----------------------------------------
    def validate(self, cfg, mesh_sizes) -> None:
        devices = mesh_sizes["data"] * mesh_sizes["fsdp"] * mesh_sizes["model"]
        for field in ("games_per_generation", "eval_games"):
            value = cfg[field]
            schedule_lib.positive_int(field, value)
            if value % devices or value % jax.process_count():
                raise UserError(f"--config.{field}={value} must divide evenly over {devices} "
                                f"devices and {jax.process_count()} processes; use a "
                                "multiple of both")
        if cfg.eval_games % 2:
            raise UserError(f"--config.eval_games={cfg.eval_games} must be even: half the "
                            "games are played with each colour")
        for field in ("simulations", "eval_simulations", "window_generations",
                      "train_steps_per_generation", "max_moves"):
            schedule_lib.positive_int(field, cfg[field])
        if cfg.random_opening_moves >= cfg.max_moves:
            raise UserError("--config.random_opening_moves must be below --config.max_moves")
        super().validate(cfg, mesh_sizes)

    def logical_axis_rules(self, cfg):
        # Small networks: every device holds the whole model; games and batches split.
        return [("batch", ("data", "fsdp"))]

    def schedule(self, cfg, data: DataInfo) -> schedule_lib.Schedule:
        """A generation is an epoch: train_steps_per_generation steps; evals every
        epochs_per_block generations (the first after eval_offset_epochs)."""
        return Generations(
            cfg.train_steps_per_generation, max_epochs=cfg.max_epochs,
            epochs_per_block=cfg.epochs_per_block, offset_epochs=cfg.eval_offset_epochs)

    def data_info(self, cfg, data_dir: str | None) -> DataInfo:
        """train_examples: positions trained per generation (the log's train_samples);
        eval_examples: games per evaluation (its eval_samples)."""
        return DataInfo(cfg.train_steps_per_generation * cfg.global_batch_size,
                        cfg.eval_games, "self-play", steps_per_epoch=cfg.train_steps_per_generation,
                        data_dir=data_dir)

    def synthetic_data_info(self, cfg) -> DataInfo:
        raise UserError(f"{self.name} makes its own data by self-play: --data=synthetic has "
                        "no meaning for it; drop the flag")

    def loss(self, cfg, params, model_state, batch, rng, *, mesh):
        """Cross-entropy to the search's policy plus the squared error of the value to the
        game's result (the AlphaZero loss; weight decay lives in the optimizer)."""
        logits, value, model_state = self.forward(cfg, params, model_state,
                                                  batch["observation"], train=True)
        policy = -jnp.sum(batch["policy"] * jax.nn.log_softmax(logits), axis=-1).mean()
        value_loss = jnp.mean((value - batch["value"]) ** 2)
        loss = policy + cfg.value_cost_weight * value_loss
        return loss, ({"policy_loss": policy, "value_loss": value_loss}, model_state)

    def batch_spec(self, cfg, split, batch_size):
        env = self.env(cfg)
        state = jax.eval_shape(env.init, jax.random.key(0))
        obs = jax.eval_shape(self.observe(cfg), state)
        return {
            "observation": jax.ShapeDtypeStruct((batch_size, *obs.shape), obs.dtype),
            "policy": jax.ShapeDtypeStruct((batch_size, env.num_actions), jnp.float32),
            "value": jax.ShapeDtypeStruct((batch_size,), jnp.float32),
        }

    def eval_step(self, cfg, params, model_state, batch, *, mesh):
        raise NotImplementedError("self-play workloads are scored by suite.selfplay.play")

    def finalize_eval(self, cfg, outputs, context):
        raise NotImplementedError("self-play workloads are scored by suite.selfplay.play")

    def train_batches(self, cfg, data, **kwargs):
        raise NotImplementedError("self-play workloads make their data by playing")

    def eval_batches(self, cfg, data, **kwargs):
        raise NotImplementedError("self-play workloads are scored by playing")
