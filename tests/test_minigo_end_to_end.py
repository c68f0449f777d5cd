"""MiniGo through `python -m suite.main`, judged by the official checker (ruleset 2.1.0),
and the one-line refusals of bad input."""

import os

import mlperf_logging
import pytest
import yaml

from models import minigo
from suite import compliance
from suite.workloads.minigo import MiniGoWorkload
from tests.helpers import metadata, run_main, successful_run, values

RULESET = "2.1.0"


def _closed_rules() -> list[dict]:
    path = os.path.join(os.path.dirname(mlperf_logging.__file__), "compliance_checker",
                        f"training_{RULESET}", "closed_minigo.yaml")
    with open(path) as f:
        return [entry["KEY"] for entry in yaml.safe_load(f)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    return workdir, run_main(["--workload=minigo", f"--workdir={workdir}"], cache, timeout=900)


def test_tiny_preset_draws_every_game_against_the_perfect_player(tiny_run):
    workdir, proc = tiny_run
    once = [r["NAME"] for r in _closed_rules() if r.get("REQ") == "EXACTLY_ONE"]
    events = successful_run(proc, workdir, reached="score >= 0.5", ruleset=RULESET,
                            once_keys=[*once, "train_samples", "eval_samples", "run_stop"])
    for rule in _closed_rules():  # every key the closed rules name is in the log
        assert values(events, rule["NAME"]), rule["NAME"]
    assert values(events, "min_selfplay_games_per_generation") == [256]
    assert values(events, "eval_samples") == [512]  # games per evaluation
    assert values(events, "train_samples") == [64 * 256]  # positions trained a generation
    generations = [m["epoch_num"] for m in metadata(events, "epoch_start")]
    played = metadata(events, "actual_selfplay_games_per_generation")
    assert [m["epoch_num"] for m in played] == generations == list(range(1, len(played) + 1))
    assert set(values(events, "actual_selfplay_games_per_generation")) == {256}
    scores = values(events, "eval_accuracy")
    assert [m["epoch_num"] for m in metadata(events, "eval_accuracy")] == \
        list(range(5, 5 * len(scores) + 1, 5))
    assert scores[-1] == 0.5 and all(s < 0.5 for s in scores[:-1])
    assert compliance.check(os.path.join(workdir, "mlperf_log.txt"), RULESET).passed
    with open(os.path.join(workdir, "eval_metrics.jsonl")) as f:
        last = f.read().splitlines()[-1]
    assert '"eval_losses": 0.0' in last and '"eval_draws": 512.0' in last


def test_reference_logs_every_closed_key_with_a_value_its_check_accepts():
    """The reference config's once-logged keys pass the official rules' CHECK."""
    workload = MiniGoWorkload()
    cfg = workload.config("reference")
    logged = workload.mllog_hparams(cfg, cfg.train_steps_per_generation)
    for rule in _closed_rules():
        if rule.get("REQ") != "EXACTLY_ONE":
            continue
        v = {"value": logged[rule["NAME"]], "metadata": {}}
        for check in [rule["CHECK"]] if isinstance(rule.get("CHECK"), str) else \
                rule.get("CHECK", []):
            assert eval(check, {}, {"v": v}), (rule["NAME"], check)  # the rule's own text
    assert logged["lr_boundaries"] == [128, 10000, 20000]
    assert logged["lr_rates"] == [0.016, 0.16, 0.016, 0.0016]
    assert logged["train_batch_size"] == 4096


@pytest.mark.parametrize("args,needle", [
    (["--config.games_per_generation=12", "--config.min_games_per_generation=12"],
     "must divide evenly over 8 devices"),
    (["--preset=reference"], "target model is missing: pass --data_dir"),
    (["--preset=reference", "--data_dir=."], "target"),
    (["--config.opponent=/nowhere"], "--config.opponent=/nowhere is no directory"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needle):
    workdir = tmp_path / "run"
    proc = run_main(["--workload=minigo", f"--workdir={workdir}", *args], str(tmp_path),
                    devices=8, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not workdir.exists()


def test_a_target_model_of_another_network_is_refused_before_the_run(tmp_path):
    """A target checkpoint whose trunk is deeper than the config's: one line, exit 2."""
    import jax

    from models import minigo, minigo_target

    saved = minigo.MiniGoConfig(board_size=9, input_planes=13, conv_width=8, trunk_layers=2,
                                fc_width=16)
    variables = jax.device_get(minigo.init_variables(saved, jax.random.key(0)))
    minigo_target.save_target(variables, saved, str(tmp_path / "target"))
    workdir = tmp_path / "run"
    proc = run_main(["--workload=minigo", "--preset=reference", "--division=open",
                     f"--data_dir={tmp_path}", f"--workdir={workdir}",
                     "--config.board_size=9", "--config.conv_width=8",
                     "--config.trunk_layers=1", "--config.fc_width=16"], str(tmp_path),
                    timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trunk layers" in lines[0], proc.stderr
    assert not workdir.exists()


def test_a_finished_run_is_an_opponent_and_another_model_is_refused(tiny_run):
    """--config.opponent=<workdir>: the run's final weights play, with search, legal moves;
    a config of another network size is refused in one line."""
    import jax
    import numpy as np

    from tests.helpers import one_line_error

    workdir, _ = tiny_run
    workload = MiniGoWorkload()
    cfg = workload.config("tiny")
    cfg.opponent = workdir
    opponent = workload.opponent(cfg, workload.data_info(cfg, None))
    assert opponent.name == f"jaxperf run {workdir}"
    params, _ = opponent.variables
    assert np.asarray(params["Dense_0"]["kernel"]).std() > 0  # trained weights, not zeros
    env = workload.env(cfg)
    act = jax.jit(opponent.act)
    for seed in range(3):
        state = env.init(jax.random.key(seed))
        move = act(opponent.variables, jax.random.key(seed), state)
        assert bool(state.legal_action_mask[move])
    cfg.mlp_width = 64
    one_line_error(lambda: workload.data_info(cfg, None), "mlp_width=128", "64")


def test_the_reference_path_plays_go_against_a_pinned_target(tmp_path):
    """9x9 Go with a small tower: the target file loads (digest pinned), and the target
    plays legal moves by searching on the reference's mlperf07 planes."""
    import jax
    import numpy as np

    from models import minigo_target
    from tests.helpers import one_line_error

    workload = MiniGoWorkload()
    cfg = workload.config("reference")
    cfg.board_size, cfg.max_moves, cfg.conv_width, cfg.trunk_layers = 9, 162, 8, 1
    cfg.fc_width, cfg.eval_simulations = 8, 4
    cfg.compute_dtype = "float32"
    net = workload.net_config(cfg)
    assert net.input_planes == 13
    variables = jax.device_get(minigo.init_variables(net, jax.random.key(1)))
    digest = minigo_target.save_target(variables, net, str(tmp_path / "target"))
    cfg.target_sha256 = digest
    data = workload.data_info(cfg, str(tmp_path))
    assert data.facts["target_sha256"] == digest
    opponent = workload.opponent(cfg, data)
    params, model_state = opponent.variables
    np.testing.assert_array_equal(params["Conv_0"]["kernel"],
                                  variables["params"]["Conv_0"]["kernel"])
    env = workload.env(cfg)
    state = env.init(jax.random.key(0))
    for move in (40, 30, 41):
        state = env.step(state, move)
    move = jax.jit(opponent.act)(opponent.variables, jax.random.key(2), state)
    assert bool(state.legal_action_mask[move])
    cfg.target_sha256 = "0" * 64
    one_line_error(lambda: workload.data_info(cfg, str(tmp_path)), "sha256", digest)
