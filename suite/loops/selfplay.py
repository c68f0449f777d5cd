"""Self-play training (kind "selfplay", the research benchmark): each generation plays
games with the newest network and search, adds their positions to the replay window,
and trains on minibatches of the window; every few generations the network plays the
fixed opponent, and that score is the eval.

Games split over the devices with shard_map: each device plays its own games with its own
per-game keys, so the games do not depend on how many devices play them. The window keeps
each device's games where they were played; each device draws its share of a minibatch
from its own games, and the train step averages gradients over all of them.
"""

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from mlperf_logging.mllog import constants as C

from suite import mesh as mesh_lib
from suite import perf, training
from suite.loops.base import Abort, BlockReport, Loop, Preempted
from suite.selfplay import play, window

GAMES_KEY = "actual_selfplay_games_per_generation"


@struct.dataclass
class SelfPlayState:
    train: training.TrainState
    window: play.Examples  # [slots, games, max_moves, ...]


class SelfPlayLoop(Loop):
    def __init__(self, workload, cfg, opts, data, mesh):
        super().__init__(workload, cfg, opts, data, mesh)
        self.env = workload.env(cfg)
        self.opponent = workload.opponent(cfg, data)  # before run_start: loading is setup
        rules = workload.logical_axis_rules(cfg)
        self.games_axes = mesh_lib.batch_axes(rules)
        with nn.logical_axis_rules(rules):
            boxed = jax.eval_shape(functools.partial(workload.init, cfg, data),
                                   jax.random.key(0))
        train_sh = mesh_lib.state_shardings(boxed, mesh, rules)
        one_gen = jax.eval_shape(self._play_games, nn.unbox(boxed),
                                 jax.random.split(jax.random.key(0), cfg.games_per_generation))
        slots = jax.eval_shape(functools.partial(window.empty, cfg.window_generations),
                               one_gen.examples)
        self.repl = mesh_lib.replicated(mesh)
        spread = NamedSharding(mesh, P(None, self.games_axes))
        self._shardings = SelfPlayState(train_sh, jax.tree.map(lambda _: spread, slots))
        self._abstract = SelfPlayState(nn.unbox(boxed), slots)
        self.compiled = self._compile()

    # ----- the pure pieces, per device ------------------------------------------
    def _evaluate(self, train_state):
        return self.workload.evaluator(self.cfg, training.eval_params(train_state),
                                       train_state.model_state)

    def _play_games(self, train_state, keys) -> play.Game:
        cfg, w = self.cfg, self.workload
        one = functools.partial(play.selfplay_game, self.env, w.observe(cfg),
                                self._evaluate(train_state), w.search(cfg, evaluation=False),
                                max_moves=cfg.max_moves, random_opening=cfg.random_opening_moves)
        return jax.vmap(one)(keys)

    def _arena_games(self, train_state, opponent_vars, keys, index) -> jax.Array:
        cfg, w = self.cfg, self.workload
        agent = play.searching(self.env, w.observe(cfg), self._evaluate(train_state),
                               w.search(cfg, evaluation=True))
        act = functools.partial(self.opponent.act, opponent_vars)
        one = functools.partial(play.arena_game, self.env, agent, act, max_moves=cfg.max_moves)
        return jax.vmap(one)(keys, index)

    def _sharded(self, fn, n_in_games: int, out_specs):
        """fn(replicated args..., per-game args...) on each device's own games."""
        def call(*args):
            repl = len(args) - n_in_games
            specs = (P(),) * repl + (P(self.games_axes),) * n_in_games
            return jax.shard_map(fn, mesh=self.mesh, in_specs=specs, out_specs=out_specs,
                                 check_vma=False)(*args)
        return call

    # ----- the jitted steps -----------------------------------------------------
    def _generation_key(self, step, salt: int):
        generation = step // self.cfg.train_steps_per_generation
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(self.opts.seed),
                                                     generation), salt)

    def _play(self, state: SelfPlayState):
        cfg = self.cfg
        keys = jax.random.split(self._generation_key(state.train.step, 0),
                                cfg.games_per_generation)
        game = self._sharded(self._play_games, 1, P(self.games_axes))(state.train, keys)
        generation = state.train.step // cfg.train_steps_per_generation
        slots = window.insert(state.window, game.examples, generation)
        stats = {"moves": jnp.sum(game.moves), "positions": jnp.sum(game.examples.valid)}
        return state.replace(window=slots), stats

    def _train(self, state: SelfPlayState):
        cfg, data, mesh = self.cfg, self.data, self.mesh
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        local_batch = cfg.global_batch_size // shards

        def draw(slots, key):
            key = jax.random.fold_in(key, jax.lax.axis_index(self.games_axes))
            batch = window.sample(slots, key, local_batch)
            return {"observation": batch.observation, "policy": batch.policy,
                    "value": batch.value}

        sample = jax.shard_map(draw, mesh=mesh, in_specs=(P(None, self.games_axes), P()),
                               out_specs=P(self.games_axes), check_vma=False)

        def step(train_state, key):
            draw_key, step_key = jax.random.split(key)
            batch = sample(state.window, draw_key)
            train_state, metrics = self.workload.train_step(cfg, data, train_state, batch,
                                                            step_key, mesh=mesh)
            return train_state, metrics["loss"]

        keys = jax.random.split(self._generation_key(state.train.step, 1),
                                cfg.train_steps_per_generation)
        train_state, losses = jax.lax.scan(step, state.train, keys)
        return state.replace(train=train_state), losses

    def _arena(self, state: SelfPlayState, opponent_vars):
        keys = jax.random.split(jax.random.key(self.cfg.eval_seed), self.cfg.eval_games)
        index = jnp.arange(self.cfg.eval_games)
        return self._sharded(self._arena_games, 2, P(self.games_axes))(
            state.train, opponent_vars, keys, index)

    def _init(self, key) -> SelfPlayState:
        train_state = nn.unbox(self.workload.init(self.cfg, self.data, key))
        return SelfPlayState(train_state, window.empty_like(self._abstract.window))

    def _compile(self) -> dict:
        """Every step compiled before init_stop, from shapes alone."""
        sh, repl = self._shardings, self.repl
        placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              self._abstract, sh)
        opp = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype,
                                                          sharding=repl),
                           self.opponent.variables)
        self.opponent_vars = (None if self.opponent.variables is None
                              else mesh_lib.place(self.opponent.variables,
                                                  jax.tree.map(lambda _: repl,
                                                               self.opponent.variables)))

        return {
            "init": jax.jit(self._init, out_shardings=sh),
            "play": jax.jit(self._play, in_shardings=(sh,), out_shardings=(sh, repl),
                            donate_argnums=(0,)).lower(placed).compile(),
            "train": jax.jit(self._train, in_shardings=(sh,), out_shardings=(sh, repl),
                             donate_argnums=(0,)).lower(placed).compile(),
            "arena": jax.jit(self._arena, in_shardings=(sh, repl), out_shardings=repl)
            .lower(placed, opp).compile(),
        }

    # ----- the Loop contract ----------------------------------------------------
    @property
    def abstract_state(self) -> Any:
        return self._abstract

    @property
    def state_shardings(self) -> Any:
        return self._shardings

    def init_state(self, seed: int):
        return self.compiled["init"](jax.random.key(seed))

    def final_weights(self, state):
        return {"params": training.eval_params(state.train),
                "model_state": state.train.model_state}

    def prepare(self, progress):
        return None  # self-play makes the data

    def blocks(self, state, progress, inputs, log, notice, tick):
        cfg, schedule = self.cfg, self.schedule
        per_gen, start_step = schedule.steps_per_epoch, progress["step"]
        last = schedule.blocks[-1]
        for block, first in schedule.remaining(start_step):
            t0 = time.perf_counter()
            timing = {"play_s": 0.0, "train_s": 0.0, "positions": 0, "moves": 0}
            losses = []
            for step in range(first, block.end_step, per_gen):
                if notice.reached(step):
                    raise Preempted(step, state)
                if step == block.start_step:
                    log.start(C.BLOCK_START, **block.start_metadata())
                generation = step // per_gen + 1
                log.start(C.EPOCH_START, epoch_num=generation)
                state, losses_gen, timing = self._generation(state, timing, log, generation)
                losses.append(losses_gen)
                tick(step + per_gen)
                log.end(C.EPOCH_STOP, epoch_num=generation)
            log.end(C.BLOCK_STOP, **block.stop_metadata())
            losses = np.concatenate(losses).astype(np.float64)
            position = block.eval_epoch
            if not np.all(np.isfinite(losses)):
                raise Abort(f"non-finite training loss in the generations up to {position}; "
                            "lower the learning rate", position)
            steps = block.end_step - first
            stats = perf.BlockStats(steps * cfg.global_batch_size, steps,
                                    time.perf_counter() - t0)
            metrics = {**self.evaluate(state, log, position), **rates(timing, stats, cfg)}
            eta = (last.end_step - block.end_step) * stats.seconds / steps
            yield BlockReport(block.end_step, position, losses, stats, metrics, eta, state)

    def _generation(self, state, timing, log, generation):
        """One generation: self-play, then training; each timed on its own (one sync each:
        the phases' rates are figures this benchmark reports)."""
        t0 = time.perf_counter()
        state, played = self.compiled["play"](state)
        played = jax.device_get(played)
        t1 = time.perf_counter()
        log.event(GAMES_KEY, self.cfg.games_per_generation, epoch_num=generation)
        state, losses = self.compiled["train"](state)
        losses = np.asarray(jax.device_get(losses))
        t2 = time.perf_counter()
        timing = {"play_s": timing["play_s"] + t1 - t0, "train_s": timing["train_s"] + t2 - t1,
                  "positions": timing["positions"] + int(played["positions"]),
                  "moves": timing["moves"] + int(played["moves"])}
        return state, losses, timing

    def evaluate(self, state, log, position) -> dict:
        target = self.workload.target_for(self.cfg)
        log.start(C.EVAL_START, epoch_num=position)
        t0 = time.perf_counter()
        scores = np.asarray(jax.device_get(
            self.compiled["arena"](state, self.opponent_vars)), np.float64)
        seconds = time.perf_counter() - t0
        log.end(C.EVAL_STOP, epoch_num=position)
        score = float(scores.mean())
        log.event(C.EVAL_ACCURACY, score, epoch_num=position)
        return {target.metric: score, "eval_wins": float(np.sum(scores == 1.0)),
                "eval_draws": float(np.sum(scores == 0.5)),
                "eval_losses": float(np.sum(scores == 0.0)),
                "eval_games_per_s": len(scores) / seconds}


def rates(timing: dict, stats: perf.BlockStats, cfg) -> dict:
    """The block's self-play and training rates: what eval_metrics.jsonl records."""
    games = cfg.games_per_generation * stats.steps // cfg.train_steps_per_generation
    return {"selfplay_games_per_s": games / timing["play_s"],
            "selfplay_moves_per_s": timing["moves"] / timing["play_s"],
            "selfplay_positions": float(timing["positions"]),
            "train_samples_per_s": stats.samples / timing["train_s"]}
