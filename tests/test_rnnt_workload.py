"""The rnnt workload's parts: the closed rules, the schedule, the batches, WER, sharding."""

import dataclasses
import gc
import os
import weakref

import jax
import jax.numpy as jnp
import jiwer
import numpy as np
import pytest
import yaml

from input_pipelines import librispeech, speech_tokens
from suite import compile as compile_lib
from suite import mesh as mesh_lib
from suite.workload import DataInfo
from suite.workloads import rnnt_data
from suite.workloads.rnnt import RNNTWorkload
from tests.helpers import one_line_error
from tools import make_tiny_librispeech


@pytest.fixture(scope="module")
def workload():
    return RNNTWorkload()


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """A tiny LibriSpeech of tone 'speech' (tools.make_tiny_librispeech): 12 train, 12 dev."""
    out = str(tmp_path_factory.mktemp("tones"))
    make_tiny_librispeech.make(out, speakers=3, utterances_per_speaker=4)
    return out


def _closed_rules():
    import mlperf_logging

    path = os.path.join(os.path.dirname(mlperf_logging.__file__), "compliance_checker",
                        "training_3.1.0", "closed_rnnt.yaml")
    with open(path) as f:
        return [entry["KEY"] for entry in yaml.safe_load(f)]


def test_reference_logs_every_closed_key_with_a_value_its_check_accepts(workload):
    """Each key of the official closed_rnnt.yaml (3.1.0) that a run logs exactly once, with
    the reference config's value, passes the rule's own CHECK expression."""
    cfg = workload.config("reference")
    logged = dict(workload.mllog_hparams(cfg, steps_per_epoch=274))
    # What the lifecycle logs for every workload, from the config and the data's sizes.
    logged.update(global_batch_size=cfg.global_batch_size, train_samples=cfg.train_examples,
                  eval_samples=cfg.eval_examples)
    rules = [r for r in _closed_rules() if r["REQ"] == "EXACTLY_ONE"]
    assert len(rules) == 28
    for rule in rules:
        assert rule["NAME"] in logged, rule["NAME"]
        check = rule.get("CHECK")
        if check:
            assert eval(check, {}, {"v": {"value": logged[rule["NAME"]]}, "s": {}}), rule
    assert logged["data_speed_perturbaton_min"] == 0.85  # the rules' own spelling
    assert logged["eval_samples"] == 2703 and logged["opt_name"] == "lamb"


def test_learning_rate_warms_up_holds_then_decays_per_epoch(workload):
    """The reference's policy, written out for 10 steps an epoch: its step s counts from 1
    (optax's from 0), warmup 60 steps, hold 400, then 0.935 per epoch after the 46th."""
    cfg = workload.config("reference")
    lr = workload.learning_rate(cfg, DataInfo(1, 1, "x", steps_per_epoch=10))
    for step, want in [(0, 4e-3 * 2 / 61), (28, 4e-3 * 30 / 61), (57, 4e-3 * 59 / 61),
                       (58, 4e-3 * 60 / 61), (59, 4e-3), (458, 4e-3),
                       (459, 4e-3),  # s = 460, the last step of epoch 46: gamma ** 0
                       (460, 4e-3 * 0.935),  # epoch 47
                       (519, 4e-3 * 0.935 ** 6), (10_000, 1e-5)]:
        assert float(lr(step)) == pytest.approx(want, rel=1e-5), step


def test_wer_of_decoded_tokens_equals_jiwer(workload, tmp_path):
    texts = ["three seven one", "twenty five", "one hundred and four", "nine thousand"]
    vocab = speech_tokens.build([t.upper() for t in texts] * 5, 24, str(tmp_path / "v.model"))
    hyps = ["three seven", "twenty five five", "one hundred four", "nine thousand"]
    ids = vocab.encode(hyps)
    width = max(map(len, ids)) + 2
    tokens = np.full((4, width), vocab.blank, np.int32)
    for row, t in enumerate(ids):
        tokens[row, :len(t)] = t
    # Two eval batches, the second padded with one masked row; references by index.
    outputs = [{"tokens": tokens[:3], "lengths": np.array([len(t) for t in ids[:3]]),
                "index": np.array([0, 1, 2]), "mask": np.ones(3, np.float32),
                "labels": tokens[:3], "label_lens": np.zeros(3, np.int32)},
               {"tokens": np.concatenate([tokens[3:], tokens[:1]]),
                "lengths": np.array([len(ids[3]), 1]), "index": np.array([3, 0]),
                "mask": np.array([1.0, 0.0], np.float32), "labels": tokens[:2],
                "label_lens": np.zeros(2, np.int32)}]
    metrics = workload.finalize_eval(workload.config("tiny"), outputs,
                                     rnnt_data.Transcripts(tuple(texts), vocab))
    assert metrics["eval_utterances"] == 4
    assert metrics["wer"] == pytest.approx(jiwer.wer(texts, hyps))
    assert metrics["wer"] == pytest.approx(3 / 11)


def _tones_cfg(workload, tones):
    cfg = workload.config("tiny")
    cfg.dataset = "librispeech"
    cfg.vocab_size = 16
    cfg.global_batch_size = 4
    cfg.eval_batch_size = 4
    return cfg


def test_every_process_reads_its_own_rows_of_the_same_global_batches(workload, tones):
    cfg = _tones_cfg(workload, tones)
    # As the runner does: the data's facts, with the --data_dir they came from.
    data = dataclasses.replace(workload.data_info(cfg, tones), data_dir=tones)
    assert data.train_examples == 12 and data.eval_examples == 12
    assert data.steps_per_epoch == 3  # 12 utterances in the first bucket, batches of 4
    one = rnnt_data.train_batches(cfg, data, local_batch_size=4, process_index=0,
                                  process_count=1, seed=3)
    halves = [rnnt_data.train_batches(cfg, data, local_batch_size=2, process_index=p,
                                      process_count=2, seed=3) for p in (0, 1)]
    specs = {tuple(s["feats"].shape[1:]): s for s in workload.batch_specs(cfg, "train", 4)}
    for _ in range(5):  # past the end of the first epoch
        whole = next(one)
        parts = [next(h) for h in halves]
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))
        spec = specs[whole["feats"].shape[1:]]  # a shape compiled ahead of time
        assert {k: v.shape for k, v in whole.items()} == {k: v.shape for k, v in spec.items()}
        assert np.all(whole["feat_lens"] > 0) and np.all(whole["label_lens"] > 0)
    evalset = rnnt_data.eval_batches(cfg, data, local_batch_size=8, process_index=0,
                                     process_count=1)
    batches = list(evalset.batches)
    assert evalset.replayable  # the loop keeps it for the run: featurised at the first eval
    assert [b["mask"].sum() for b in batches] == [8, 4]  # the last batch padded
    assert sorted(np.concatenate([b["index"][b["mask"] > 0] for b in batches])) == list(range(12))
    dev = librispeech.utterances_openslr(tones, ["dev-clean"])
    assert evalset.context.texts == tuple(speech_tokens.normalize(u.transcript) for u in dev)


def test_a_run_resumed_inside_an_epoch_featurises_none_of_the_batches_it_skips(
        workload, tones, featurised):
    cfg = _tones_cfg(workload, tones)
    cfg.read_ahead = 0  # made when asked for, so the featuriser's calls count exactly
    data = dataclasses.replace(workload.data_info(cfg, tones), data_dir=tones)
    where = {"local_batch_size": 4, "process_index": 0, "process_count": 1, "seed": 3}
    whole = workload.train_batches_from(cfg, data, 0, **where)
    uninterrupted = [next(whole) for _ in range(5)]  # 3 an epoch: into the second epoch
    featurised.clear()
    resumed = workload.train_batches_from(cfg, data, 2, **where)
    for want in uninterrupted[2:]:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert len(featurised) == 3 * 4  # the 3 batches read, none of the 2 skipped


def test_tokens_are_encoded_once_per_split_and_cached_by_name_not_by_utterances(
        workload, tones, monkeypatch):
    cfg = _tones_cfg(workload, tones)
    rnnt_data._corpus.cache_clear()
    rnnt_data._tokens.cache_clear()
    data = dataclasses.replace(workload.data_info(cfg, tones), data_dir=tones)
    vocab = rnnt_data.load_vocab(data.facts["vocab_path"])
    encoded = []
    real = vocab.encode
    monkeypatch.setattr(vocab, "encode", lambda texts: encoded.append(len(texts)) or real(texts))
    where = {"local_batch_size": 4, "process_index": 0, "process_count": 1}
    pipelines = [workload.train_batches(cfg, data, seed=s, **where) for s in (1, 2)]
    pipelines += [workload.eval_batches(cfg, data, **where) for _ in range(2)]
    assert encoded == []  # data_info encoded both splits; the pipelines reuse them
    listing = rnnt_data.corpus(cfg, tones)
    ids = rnnt_data.tokens(cfg, tones, data.facts["vocab_path"], "eval")
    assert [ids[u.id].tolist() for u in listing.eval] == real([u.transcript for u in listing.eval])
    # The token cache keeps ids by utterance id, not the utterances: once the listing's own
    # cache lets go of them, nothing holds them.
    probe = weakref.ref(listing.train[0])
    del listing, pipelines
    rnnt_data._corpus.cache_clear()
    gc.collect()
    assert probe() is None
    rnnt_data.tokens(cfg, tones, data.facts["vocab_path"], "train")  # still cached
    assert encoded == []


def test_eval_utterances_beyond_the_last_bucket_are_one_line_errors(workload, tones):
    cfg = _tones_cfg(workload, tones)
    cfg.eval_bucket_seconds = (0.3,)
    one_line_error(lambda: workload.data_info(cfg, tones), "exceeds the last of",
                   "eval_bucket_seconds")
    cfg = _tones_cfg(workload, tones)
    cfg.global_batch_size = 64
    one_line_error(lambda: workload.data_info(cfg, tones), "lower --config.global_batch_size")
    cfg = workload.config("reference")
    one_line_error(lambda: workload.data_info(cfg, None), "needs --data_dir")


def _frames(samples: int) -> int:
    """Stacked frames of `samples` of audio: centred 10 ms STFT frames, 3 stacked into one."""
    return -(-(1 + samples // 160) // 3)


def test_buckets_bound_frames_and_labels(workload):
    cfg = workload.config("reference")
    train = workload.batch_specs(cfg, "train", 8)
    # Training pads for the slowest speed perturbation (x1.15 longer); eval does not.
    seconds = (5, 9, 12, 14, 15.5, 16.7)
    assert [s["feats"].shape for s in train] == [
        (8, _frames(int(np.ceil(s * 16000 * 1.15))), 240) for s in seconds]
    assert [s["labels"].shape[1] for s in train] == [40, 72, 96, 112, 124, 133]  # 8 a second
    evals = workload.batch_specs(cfg, "eval", 8)
    assert [s["feats"].shape[1] for s in evals] == [
        _frames(int(s * 16000)) for s in (4, 8, 12, 17, 35)]
    assert workload.batch_spec(cfg, "train", 8) == train[-1]
    # An utterance exactly as long as the tiny eval bucket fills its frames exactly.
    tiny = workload.config("tiny")
    settings = rnnt_data.settings(tiny, training=False)
    noise = np.random.default_rng(0).standard_normal(settings.bounds[-1]).astype(np.float32)
    from input_pipelines import speech_features

    feats = speech_features.stack_frames(speech_features.normalize_per_feature(
        speech_features.log_mel(0.1 * noise, None)))
    assert feats.shape == workload.batch_spec(tiny, "eval", 1)["feats"].shape[1:]


def test_a_shape_nobody_compiled_is_an_error():
    step = compile_lib.ByShape("train step", {
        compile_lib.shape_key({"x": np.zeros(2)}): lambda state, batch: "two",
        compile_lib.shape_key({"x": np.zeros(5)}): lambda state, batch: "five"})
    assert step(None, {"x": np.zeros(5)}) == "five" and step(None, {"x": np.zeros(2)}) == "two"
    with pytest.raises(ValueError, match="no train step was compiled for batch shapes"):
        step(None, {"x": np.zeros(3)})


def _train(workload, cfg, mesh, batches):
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1,
                            DataInfo(64, 8, "test", steps_per_epoch=4), every_shape=False)
    state = fns.init(jax.random.key(0))
    key = jax.device_put(jax.random.key(1), mesh_lib.replicated(mesh))
    losses = []
    for batch in batches:
        state, metrics, key = fns.train_step(state, mesh_lib.to_global(batch, fns.batch_sharding),
                                             key)
        losses.append(float(metrics["loss"]))
    return np.array(losses), state


def test_eight_devices_match_one(workload):
    cfg = workload.config("tiny")
    cfg.enc_hidden, cfg.pred_hidden, cfg.joint_hidden = 32, 16, 16
    cfg.global_batch_size = 16
    spec = workload.batch_spec(cfg, "train", 16)
    rng = np.random.default_rng(0)
    frames, labels = spec["feats"].shape[1], spec["labels"].shape[1]
    batches = [{"feats": rng.standard_normal(spec["feats"].shape).astype(np.float32),
                "feat_lens": rng.integers(frames // 2, frames + 1, 16).astype(np.int32),
                "labels": rng.integers(0, cfg.vocab_size, (16, labels)).astype(np.int32),
                "label_lens": rng.integers(1, labels + 1, 16).astype(np.int32)}
               ] * 3  # one batch, three times: its loss must fall
    one, one_state = _train(workload, cfg, mesh_lib.make_mesh(devices=jax.devices()[:1]),
                            batches)
    assert jax.device_count() == 8
    assert np.all(np.diff(one) < 0)  # it trains: the same batches' loss falls
    assert jnp.asarray(one_state.step) == 3
    for fsdp in (1, 2):  # data parallel over 8; data 4 x fsdp 2 with the weights split
        mesh = mesh_lib.make_mesh(fsdp=fsdp)
        eight, eight_state = _train(workload, cfg, mesh, batches)
        np.testing.assert_allclose(eight, one, rtol=2e-5)
        for a, b in zip(jax.tree.leaves(one_state.params), jax.tree.leaves(eight_state.params),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        split = [p for p in jax.tree.leaves(eight_state.params)
                 if not p.sharding.is_fully_replicated]
        # With fsdp: the 8 kernels of each of the 3 LSTMs, the embedding, both projections.
        assert len(split) == (0 if fsdp == 1 else 3 * 8 + 3), len(split)
