"""Running `python -m suite.main` as a user would, and reading what it wrote."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(args: list[str], cache: str, devices: int = 1, timeout: int = 600):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAXPERF_CACHE"] = cache
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "suite.main", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=timeout,
    )


def run_main_without(modules: list[str], args: list[str], cache: str, timeout: int = 600):
    """run_main where importing each of `modules` fails outright, as on the accelerator hosts,
    which have no TensorFlow (nor tfds, nor sentencepiece)."""
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    code = (f"import sys, runpy; {blocked}sys.argv = ['suite.main', *{args!r}]; "
            "runpy.run_module('suite.main', run_name='__main__')")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=cache)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def read_log(path: str) -> list[dict]:
    """The :::MLLOG events of an MLPerf log, in order."""
    events = []
    with open(path) as f:
        for line in f:
            if line.startswith(":::MLLOG "):
                events.append(json.loads(line[len(":::MLLOG "):]))
    return events


def values(events: list[dict], key: str) -> list:
    return [e["value"] for e in events if e["key"] == key]


def metadata(events: list[dict], key: str) -> list[dict]:
    return [e["metadata"] for e in events if e["key"] == key]


def successful_run(proc, workdir: str, *, reached: str, ruleset: str, once_keys) -> list[dict]:
    """Asserts that a run reached its target (`reached`: "auc >= 0.81", say), that the
    official checker passed its log, and that each of once_keys is logged exactly once;
    returns the log's events."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"run_stop success: reached {reached}" in proc.stdout
    assert f"compliance: PASS (official mlperf_logging compliance checker, training {ruleset})" \
        in proc.stdout
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    for key in once_keys:
        assert len(values(events, key)) == 1, key
    return events


def one_line_error(call, *needles) -> str:
    """Asserts that call() raises a one-line UserError holding every needle; returns it."""
    import pytest

    from common.errors import UserError

    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def _blocks_of(keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """(keys before run_start, the keys after it cut after each eval_accuracy)."""
    start = keys.index("run_start")
    chunks, current = [], []
    for key in keys[start:]:
        current.append(key)
        if key == "eval_accuracy":
            chunks.append(current)
            current = []
    return keys[:start], [*chunks, current]


def assert_log_keys_as_recorded(events: list[dict], workload: str) -> None:
    """The log's keys, in order, are those recorded from the tiny preset before the run
    lifecycle and the training loops were split apart (tests/data/log_keys): the same
    set-up section, the same first block, the same later blocks (however many the run
    needed) and the same ending."""
    with open(os.path.join(ROOT, "tests", "data", "log_keys", f"{workload}.json")) as f:
        recorded = json.load(f)["keys"]
    setup, blocks = _blocks_of([e["key"] for e in events])
    old_setup, old_blocks = _blocks_of(recorded)
    assert setup == old_setup
    assert blocks[0] == old_blocks[0] and blocks[-1] == old_blocks[-1]
    middles = old_blocks[1:-1] or old_blocks[:1]
    for block in blocks[1:-1]:
        assert block in middles, (block, middles)


def assert_one_error(proc, needle: str) -> None:
    """Exit 2 and one error line (TensorFlow may log its own lines as it loads)."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def run_infer(args: list[str], cache: str, timeout: int = 900):
    """`python -m suite.infer` on one CPU device, as a user would run it."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "suite.infer", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def restore_tiny_resnet(workdir: str, step: int | None = None) -> tuple[int, object, dict]:
    """(step, train state, progress) of a tiny ResNet run's checkpoint (the newest where
    step is None), restored onto this process's first device."""
    import jax
    from flax import linen as nn

    from suite.checkpoint import Checkpointer
    from suite.workloads.resnet import ResNetWorkload

    workload = ResNetWorkload()
    cfg = workload.config("tiny")
    cfg.compute_dtype = "float32"
    data = workload.synthetic_data_info(cfg)
    abstract = nn.unbox(jax.eval_shape(lambda k: workload.init(cfg, data, k),
                                       jax.random.key(0)))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    ckpt = Checkpointer(workdir)
    try:
        step = ckpt.latest_step() if step is None else step
        state, progress = ckpt.restore(step, abstract, jax.tree.map(lambda _: device, abstract))
    finally:
        ckpt.close()
    return step, state, progress
