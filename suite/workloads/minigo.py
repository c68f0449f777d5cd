"""MLPerf MiniGo (research): AlphaZero-style reinforcement learning by self-play, trained
until a generation scores >= 0.5 against a fixed target (suite.loops.selfplay).

Reference preset: 19x19 Go (pgx) with the reference's network (tensorflow/minigo
ml_perf/flags/19: 6 residual blocks of 64 filters, fc 64, mlperf07 input planes), 8,192
games a generation, a window of 5 generations, batch 4,096, SGD with momentum 0.9, L2 1e-4
and the reference's lr boundaries and rates; scored against MLCommons' target model.
Tiny preset: tic-tac-toe against a perfect player (models.tictactoe_perfect), where the
best score is a draw: 0.5 means no game lost.

Where jaxperf differs from the reference: Gumbel MuZero search (mctx) instead of PUCT with
Dirichlet noise and virtual losses, a fixed number of simulations per move (no "fast
play"), a fixed number of train steps per generation (the reference trains one pass over
30 % of the window's positions, so its count varies), no resignation; and each
generation is evaluated inside the timed run (the reference evaluated afterwards and
back-dated run_stop), stopping at the first generation that reaches the target.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from models import minigo as minigo_model
from models import policy_value_mlp
from suite.hparams import Hparam
from suite.selfplay import play
from suite.selfplay import search as search_lib
from suite.selfplay.workload import Opponent, SelfPlayWorkload, selfplay_config
from suite.target import Target
from suite.workload import DataInfo

TARGET_FILE = "target"  # --data_dir/target.index + target.data-*: MLCommons' target model


def _log_list(field):
    return lambda cfg, spe: list(cfg[field])


class MiniGoWorkload(SelfPlayWorkload):
    name = "minigo"
    benchmark = "minigo"
    ruleset = "2.1.0"  # the newest training ruleset whose common rules accept minigo
    target = Target("score", 0.5)
    closed_tunable = frozenset({"global_batch_size", "lr_boundaries", "lr_rates",
                                "games_per_generation"})
    runtime_fields = frozenset({"target_sha256"})
    hparams = (
        Hparam("train_batch_size", "global_batch_size"),
        Hparam("lr_boundaries", "lr_boundaries", log=_log_list("lr_boundaries")),
        Hparam("lr_rates", "lr_rates", log=_log_list("lr_rates")),
        Hparam("min_selfplay_games_per_generation", "min_games_per_generation"),
    )

    def reference_config(self, c: ml_collections.ConfigDict) -> None:
        selfplay_config(c)
        c.game = "go"
        c.board_size = 19
        c.komi = 7.5
        c.random_symmetry = True  # the reference's players' random_symmetry
        c.max_moves = 722  # pgx's own cap, 2 x 361: a game is scored there at the latest
        c.network = "dual_net"
        c.input_features = "mlperf07"
        c.conv_width, c.trunk_layers, c.fc_width = 64, 6, 64
        c.mlp_width = c.mlp_depth = 0
        c.value_cost_weight = 0.5
        c.games_per_generation = c.min_games_per_generation = 8192
        c.simulations = 800  # num_readouts of selfplay.flags
        c.eval_simulations = 100  # eval.flags
        # The reference's 100 eval games, rounded up to split over 8 or 16 devices.
        c.eval_games = 128
        c.window_generations = 5
        c.global_batch_size = 4096
        # About one pass over 30 % of 5 generations of ~250-move games, at batch 4,096.
        c.train_steps_per_generation = 750
        c.optimizer = "momentum"
        c.lr_boundaries = [128, 10000, 20000]
        c.lr_rates = [0.016, 0.16, 0.016, 0.0016]
        c.momentum = 0.9
        c.l2_strength = 1e-4
        c.learning_rate = 0.0  # the cosine peak of optimizer "adamw"
        c.weight_decay = 0.0
        c.max_epochs = 100  # generations (train_loop.flags: iterations)
        c.epochs_per_block = c.eval_offset_epochs = 1
        c.opponent = "target"  # "target" (--data_dir), "perfect" (tic-tac-toe), or a workdir
        c.target_sha256 = ""  # pin --data_dir's target model: its sha256 (see README)
        c.train_examples = c.eval_examples = 0

    def tiny_preset(self, c: ml_collections.ConfigDict) -> None:
        c.game = "tic_tac_toe"
        c.max_moves = 9
        # The perfect player's random choice among optimal moves varies the eval games.
        c.random_symmetry = False
        c.network = "mlp"
        c.input_features = "pgx"
        c.mlp_width, c.mlp_depth = 128, 2  # 20,234 parameters
        c.value_cost_weight = 1.0
        c.games_per_generation = c.min_games_per_generation = 256
        c.simulations = 32
        # The eval's search is deeper than self-play's: with 32, a network that has learnt
        # the game still loses a few of 512 games on some seeds; 128 is the full tree's
        # scale and leaves the score to the network.
        c.eval_simulations = 128
        c.considered_actions = 9  # every move of the board
        c.random_opening_moves = 2
        c.eval_games = 512
        c.window_generations = 4
        c.global_batch_size = 256
        c.train_steps_per_generation = 64
        c.optimizer = "adamw"
        # 1e-2: at 3e-3 one seed in ten stayed at 16-38 lost games of 512 through all 60
        # generations; at 1e-2 ten of ten reached the target (seeds 0-9).
        c.learning_rate, c.weight_decay = 1e-2, 1e-4
        c.lr_boundaries, c.lr_rates = [], [1e-2]
        c.max_epochs = 60
        c.epochs_per_block = c.eval_offset_epochs = 5
        c.opponent = "perfect"
        c.eval_seed = 1

    def validate(self, cfg, mesh_sizes) -> None:
        if cfg.game not in ("go", "tic_tac_toe"):
            raise UserError(f"--config.game must be go or tic_tac_toe, got {cfg.game!r}")
        if cfg.opponent == "perfect" and cfg.game != "tic_tac_toe":
            raise UserError("--config.opponent=perfect plays tic-tac-toe only; use target "
                            "or a jaxperf workdir for Go")
        if cfg.games_per_generation < cfg.min_games_per_generation:
            raise UserError(f"--config.games_per_generation={cfg.games_per_generation} is "
                            f"below the minimum {cfg.min_games_per_generation}")
        if len(cfg.lr_rates) != len(cfg.lr_boundaries) + 1 and cfg.optimizer == "momentum":
            raise UserError("--config.lr_rates needs one rate more than --config.lr_boundaries")
        super().validate(cfg, mesh_sizes)

    def check_closed(self, cfg) -> None:
        if cfg.games_per_generation < 8192:
            raise UserError("the closed division plays at least 8,192 games a generation")

    # ----- the game, the network, the opponent ----------------------------------
    def env(self, cfg):
        # Imported here, not with this module: their states' default fields are arrays made
        # at import, which would start JAX's backend before jax.distributed.initialize (the
        # registry imports every workload), and, imported first inside a trace (an
        # eval_shape of init), would be tracers that leak; hence compile-time evaluation.
        with jax.ensure_compile_time_eval():
            import pgx.go
            import pgx.tic_tac_toe

        if cfg.game == "tic_tac_toe":
            return pgx.tic_tac_toe.TicTacToe()
        # The size and komi are the config's, not a registered id's.
        return pgx.go.Go(size=cfg.board_size, komi=cfg.komi, max_terminal_steps=cfg.max_moves)

    def observe(self, cfg):
        if cfg.input_features == "pgx":
            return search_lib.pgx_observation
        from models import go_features

        return go_features.mlperf07

    def net_config(self, cfg) -> minigo_model.MiniGoConfig:
        planes = 13 if cfg.input_features == "mlperf07" else 17
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
        return minigo_model.MiniGoConfig(
            board_size=cfg.board_size, input_planes=planes, conv_width=cfg.conv_width,
            trunk_layers=cfg.trunk_layers, fc_width=cfg.fc_width, dtype=dtype)

    def _mlp(self, cfg):
        return policy_value_mlp.PolicyValueMLP(self.env(cfg).num_actions, cfg.mlp_width,
                                               cfg.mlp_depth)

    def init_variables(self, cfg, rng):
        obs = self.batch_spec(cfg, "train", 1)["observation"]
        if cfg.network == "mlp":
            return self._mlp(cfg).init(rng, jnp.zeros(obs.shape, jnp.float32))["params"], {}
        variables = minigo_model.init_variables(self.net_config(cfg), rng)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def forward(self, cfg, params, model_state, observations, train):
        if cfg.network == "mlp":
            logits, value = self._mlp(cfg).apply({"params": params}, observations)
            return logits, value, model_state
        net = minigo_model.MiniGoNet(self.net_config(cfg))
        variables = {"params": params, **model_state}
        if train:
            (logits, value), new = net.apply(variables, observations, train=True,
                                             mutable=["batch_stats"])
            return logits, value, {"batch_stats": new["batch_stats"]}
        logits, value = net.apply(variables, observations, train=False)
        return logits, value, model_state

    def opponent(self, cfg, data: DataInfo) -> Opponent:
        if cfg.opponent == "perfect":
            from models import tictactoe_perfect

            def perfect(_, key, state):
                board = tictactoe_perfect.from_pgx_board(state._x.board)
                return tictactoe_perfect.choose(key, board[None])[0]

            return Opponent("perfect player", perfect)
        variables, name = self._opponent_variables(cfg, data)
        search = self.search(cfg, evaluation=True)
        env, observe = self.env(cfg), self.observe(cfg)

        def network(variables, key, state):
            player = play.searching(env, observe, self.evaluator(cfg, *variables), search)
            return player(key, state)

        return Opponent(name, network, variables)

    def data_info(self, cfg, data_dir: str | None) -> DataInfo:
        """Checks the opponent before any workdir exists: the target model is there, has
        the network's variables and shapes, and the pinned digest; a workdir opponent holds
        final weights of the same model."""
        import dataclasses

        data = super().data_info(cfg, data_dir)
        if cfg.opponent == "target":
            from models import minigo_target

            path = self._target_path(cfg, data_dir)
            minigo_target.load_target(path, self.net_config(cfg))  # variables and shapes
            digest = minigo_target.check_target_sha256(path, cfg.target_sha256 or None)
            return dataclasses.replace(data, source=f"self-play against {path}",
                                       facts={"target_sha256": digest})
        if cfg.opponent != "perfect":
            import os

            from suite import weights

            if not os.path.isdir(cfg.opponent):
                raise UserError(f"--config.opponent={cfg.opponent} is no directory; pass "
                                "target (the model in --data_dir), perfect (tic-tac-toe) or "
                                "the workdir of a finished minigo run")
            weights.Checkpoint(cfg.opponent).check(self, self.model_fields(cfg))
        return data

    def _target_path(self, cfg, data_dir: str | None) -> str:
        import os

        if cfg.network != "dual_net":
            raise UserError("--config.opponent=target is the reference's network; use "
                            "--config.network=dual_net")
        if not data_dir:
            raise UserError("minigo's target model is missing: pass --data_dir=<directory "
                            "holding target.index and target.data-*> (MLCommons' "
                            "ml_perf/target), or --config.opponent=<jaxperf workdir>")
        return os.path.join(data_dir, TARGET_FILE)

    def _opponent_variables(self, cfg, data: DataInfo):
        """(params, model_state) of the target model in --data_dir, or of a jaxperf run's
        final weights (--config.opponent=<workdir>)."""
        if cfg.opponent == "target":
            from models import minigo_target

            # The very file data_info checked, digest included.
            digest = data.facts["target_sha256"]
            path = self._target_path(cfg, data.data_dir)
            variables = minigo_target.load_target(path, self.net_config(cfg), sha256=digest)
            return ((variables["params"], {"batch_stats": variables["batch_stats"]}),
                    f"target model sha256:{digest[:12]}")
        return self.run_weights(cfg, cfg.opponent), f"jaxperf run {cfg.opponent}"

    def run_weights(self, cfg, workdir: str):
        """(params, model_state) of a finished minigo run's final weights, refused in one
        line unless the run trained this config's model."""
        from suite import weights

        checkpoint = weights.Checkpoint(workdir)
        checkpoint.check(self, self.model_fields(cfg))
        abstract_params, abstract_state = jax.eval_shape(
            functools.partial(self.init_variables, cfg), jax.random.key(0))
        restored = checkpoint.restore({"params": abstract_params,
                                       "model_state": abstract_state})
        return restored["params"], restored["model_state"]

    def model_fields(self, cfg) -> dict:
        return {f: cfg[f] for f in ("game", "board_size", "network", "input_features",
                                    "conv_width", "trunk_layers", "fc_width", "mlp_width",
                                    "mlp_depth")}

    # ----- training ---------------------------------------------------------------
    def learning_rate(self, cfg, data: DataInfo) -> optax.Schedule:
        if cfg.optimizer == "adamw":
            return optax.cosine_decay_schedule(cfg.learning_rate,
                                               cfg.max_epochs * cfg.train_steps_per_generation)
        rates, bounds = list(cfg.lr_rates), list(cfg.lr_boundaries)
        scales = {b: rates[i + 1] / rates[i] for i, b in enumerate(bounds)}
        return optax.piecewise_constant_schedule(rates[0], scales)

    def optimizer(self, cfg, data: DataInfo) -> optax.GradientTransformation:
        lr = self.learning_rate(cfg, data)
        if cfg.optimizer == "adamw":
            return optax.adamw(lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer != "momentum":
            raise UserError(f"--config.optimizer must be momentum or adamw, got "
                            f"{cfg.optimizer!r}")
        # The reference adds l2_strength * sum(w^2) / 2 over every weight but the dense
        # biases to its loss: a decay of l2_strength * w in the gradient.
        def not_bias(params):
            return jax.tree_util.tree_map_with_path(
                lambda path, _: getattr(path[-1], "key", "") != "bias", params)

        return optax.chain(optax.add_decayed_weights(cfg.l2_strength, mask=not_bias),
                           optax.sgd(lr, momentum=cfg.momentum))

    def flops_per_example(self, cfg) -> float:
        """Training FLOPs of one position: forward and backward, 3x the forward pass."""
        if cfg.network == "mlp":
            obs = self.batch_spec(cfg, "train", 1)["observation"]
            inputs = math.prod(obs.shape[1:])
            return 3.0 * policy_value_mlp.forward_flops(
                inputs, self.env(cfg).num_actions, cfg.mlp_width, cfg.mlp_depth)
        return 3.0 * minigo_model.forward_flops(self.net_config(cfg))

    def mllog_hparams(self, cfg, steps_per_epoch):
        values = super().mllog_hparams(cfg, steps_per_epoch)
        values[C.OPT_NAME] = "sgd_momentum" if cfg.optimizer == "momentum" else "adamw"
        return values
