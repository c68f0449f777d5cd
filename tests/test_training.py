"""The shared training step: gradient accumulation equals the big batch; the EMA is the
average it claims to be, and eval scores it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from input_pipelines import synthetic
from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib
from suite import training
from tests.helpers import read_log, run_main, successful_run, values
from tests.toy_workload.workload import LinearDigits


def _steps(accum: int, devices, steps: int = 3):
    """Params and losses after a few SGD steps of the linear toy on fixed random batches.
    SGD, not Adagrad or Adam: they are blind to a constant scale of the gradient, so a
    summed instead of averaged accumulation would pass unseen."""
    workload = LinearDigits()
    cfg = workload.config("tiny")
    cfg.grad_accum_steps = accum
    cfg = config_lib.resolve(workload, cfg, len(devices), "cpu")
    mesh = mesh_lib.make_mesh(devices=devices)
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state, key = fns.init(jax.random.key(0)), jax.random.key(1)
    batches = synthetic.batches(workload.batch_spec(cfg, "train", 64), seed=4, high={
        "label": np.int32(10)})
    losses = []
    for _ in range(steps):
        batch = mesh_lib.to_global(next(batches), fns.batch_sharding)
        state, metrics, key = fns.train_step(state, batch, key)
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params)


def test_four_micro_batches_step_like_one_big_batch():
    one_losses, one = _steps(1, jax.devices()[:1])
    four_losses, four = _steps(4, jax.devices()[:1])
    # The mean loss of 4 equal micro-batches is the big batch's mean, and so is the mean of
    # their gradients; float32 sums in another order are all that differ.
    np.testing.assert_allclose(four_losses, one_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert one_losses[-1] < one_losses[0]  # the steps moved the params
    # Sharded over 8 devices, strided micro-batches keep 1/4 of every device's rows each.
    eight_losses, eight = _steps(4, jax.devices())
    np.testing.assert_allclose(eight_losses, one_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ema_follows_its_recurrence_and_eval_scores_it():
    def loss(params, model_state, batch, rng):
        return jnp.sum((params["w"] - batch["x"]) ** 2), ({}, model_state)

    tx = optax.sgd(0.1)
    state = training.init_state({"w": jnp.zeros(3)}, {}, tx, ema=True)
    expected_ema, w = np.zeros(3), np.zeros(3)
    for x in (1.0, 2.0, 3.0):
        batch = {"x": jnp.full(3, x)}
        state, _ = training.train_step(loss, tx, state, batch, jax.random.key(0), ema_decay=0.9)
        w = w - 0.1 * 2 * (w - x)
        expected_ema = 0.9 * expected_ema + 0.1 * w
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-6)
    np.testing.assert_allclose(state.ema_params["w"], expected_ema, rtol=1e-6)
    assert training.eval_params(state) is state.ema_params
    no_ema = training.init_state({"w": jnp.zeros(3)}, {}, tx, ema=False)
    assert training.eval_params(no_ema) is no_ema.params

    # Through the compiled steps: with an EMA, eval sees the averaged weights.
    workload = LinearDigits()
    cfg = workload.config("tiny")
    cfg.ema_decay = 0.5
    cfg = config_lib.resolve(workload, cfg, 1, "cpu")
    mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state, key = fns.init(jax.random.key(0)), jax.random.key(1)
    train = synthetic.batches(workload.batch_spec(cfg, "train", 64), seed=0)
    for _ in range(3):
        state, _, key = fns.train_step(state, mesh_lib.to_global(next(train), fns.batch_sharding),
                                       key)
    batch = next(synthetic.eval_batches(workload.batch_spec(cfg, "eval", 64), 1))
    placed = mesh_lib.to_global(batch, fns.batch_sharding)
    got = jax.device_get(fns.eval_step(state, placed))
    with_ema = workload.eval_step(cfg, state.ema_params, {}, placed, mesh=mesh)
    assert float(got["correct"]) == float(with_ema["correct"])
    assert not np.allclose(jax.device_get(state.ema_params["Dense_0"]["kernel"]),
                           jax.device_get(state.params["Dense_0"]["kernel"]))


def test_accumulation_is_logged_and_the_run_still_converges(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_main(["--workload=tests.toy_workload.workload:LinearDigits",
                     f"--workdir={workdir}", "--config.grad_accum_steps=4"], str(tmp_path))
    successful_run(proc, workdir, reached="top1 >= 0.9", ruleset="4.0.0",
                   once_keys=("gradient_accumulation_steps",))
    assert values(read_log(f"{workdir}/mlperf_log.txt"), "gradient_accumulation_steps") == [4]
