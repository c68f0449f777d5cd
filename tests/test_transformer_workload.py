"""The Transformer workload's pieces: BLEU, loss, schedule, logged hparams, tensor parallelism."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sacrebleu

from metrics import bleu
from suite import compile as compile_lib
from suite import mesh as mesh_lib
from suite.workloads.transformer import References, TransformerWorkload

HYPS = ["Ich habe zwölf Katzen gesehen.", "am dritten Mai", "Sie hat drei Bücher gekauft .",
        "DER einundzwanzigste März"]
REFS = ["Ich habe zwölf Katzen gesehen.", "am dritten Mai neunzehnhundert",
        "Sie hat drei Bücher verkauft.", "der einundzwanzigste März"]


def test_bleu_is_sacrebleu_uncased_intl():
    ours = bleu.corpus_bleu(HYPS, REFS)
    theirs = sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True, tokenize="intl").score
    assert ours == pytest.approx(theirs / 100, abs=1e-12)
    assert 0.3 < ours < 0.95  # neither perfect nor empty: the test can fail either way
    # Uncased: case differences cost nothing; a cased score would be lower.
    cased = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="intl").score / 100
    assert ours > cased
    assert bleu.corpus_bleu(REFS, REFS) == pytest.approx(1.0)


def test_finalize_eval_scores_decoded_text_in_index_order():
    """Tokens from sharded eval batches, padded rows masked, looked up by index."""

    class Vocab:  # ids are word positions in a fixed word list
        words = sorted({w for s in HYPS for w in s.split()})

        def decode(self, row):
            out = []
            for t in row:
                if t == 1:
                    break
                out.append(self.words[t - 3])
            return " ".join(out)

    vocab = Vocab()

    workload = TransformerWorkload()
    cfg = workload.config("tiny")
    # The eval's references travel with its batches (EvalSet.context), not in the workload.
    context = References(tuple(REFS), vocab)

    def encode(text):
        return [vocab.words.index(w) + 3 for w in text.split()] + [1]

    width = 8
    rows = np.zeros((6, width), np.int32)
    order = [2, 0, 3, 1]  # eval batches arrive in any order; index says which sentence
    for r, i in enumerate(order):
        ids = encode(HYPS[i])
        rows[r, :len(ids)] = ids
    rows[4:, 0] = 5  # padding rows with garbage that must not count
    index = np.array(order + [0, 0], np.int32)
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    outputs = [{"tokens": rows[:3], "targets": rows[:3], "index": index[:3], "mask": mask[:3],
                "nll": np.float32(3.0), "tokens_count": np.float32(2.0)},
               {"tokens": rows[3:], "targets": rows[3:], "index": index[3:], "mask": mask[3:],
                "nll": np.float32(1.0), "tokens_count": np.float32(2.0)}]
    metrics = workload.finalize_eval(cfg, outputs, context)
    expected = sacrebleu.corpus_bleu([HYPS[i] for i in order], [[REFS[i] for i in order]],
                                     lowercase=True, tokenize="intl").score / 100
    assert metrics["bleu"] == pytest.approx(expected, abs=1e-12)
    assert metrics["eval_nll"] == pytest.approx(1.0)


def test_label_smoothed_loss_matches_optax():
    workload = TransformerWorkload()
    cfg = workload.config("tiny")
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((2, 5, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(1, 11, (2, 5)), jnp.int32)
    weights = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
    loss, nll, correct, count = workload._loss_sums(cfg, logits, targets, weights)
    smoothed = optax.smooth_labels(jax.nn.one_hot(targets, 11), cfg.label_smoothing)
    expected = (optax.softmax_cross_entropy(logits, smoothed) * weights).sum()
    plain = (optax.softmax_cross_entropy_with_integer_labels(logits, targets) * weights).sum()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(nll, plain, rtol=1e-6)
    assert float(count) == 8.0
    assert float(correct) == float(((jnp.argmax(logits, -1) == targets) * weights).sum())


def test_learning_rate_warms_up_then_decays_as_inverse_sqrt():
    workload = TransformerWorkload()
    cfg = workload.config("reference")
    lr = workload.learning_rate(cfg, workload.synthetic_data_info(cfg))
    peak = cfg.base_lr
    assert float(lr(0)) == pytest.approx(peak / cfg.warmup_steps)
    assert float(lr(cfg.warmup_steps - 1)) == pytest.approx(peak)
    assert float(lr(4 * cfg.warmup_steps - 1)) == pytest.approx(peak / 2)
    steps = np.arange(0, 5 * cfg.warmup_steps, 7)
    values = np.asarray(jax.vmap(lr)(steps))
    assert values.argmax() == np.abs(steps - (cfg.warmup_steps - 1)).argmin()


def _tiny_cfg(workload):
    cfg = workload.config("tiny")
    cfg.compute_dtype = "float32"
    cfg.emb_dim, cfg.num_heads, cfg.mlp_dim = 32, 4, 64
    cfg.enc_layers = cfg.dec_layers = 1
    cfg.vocab_size, cfg.max_length, cfg.eval_max_length = 64, 16, 8
    cfg.decode_extra_length = 4
    cfg.global_batch_size, cfg.eval_batch_size = 8, 8
    cfg.dropout_rate = 0.1  # the dropout masks must not depend on the layout either
    cfg.warmup_steps = 1
    return cfg


def _packed_batch(rng, rows, length, vocab):
    """Rows holding two examples each, as the packer makes them."""
    names = ("inputs", "inputs_position", "inputs_segmentation", "targets",
             "targets_position", "targets_segmentation")
    batch = {k: np.zeros((rows, length), np.int32) for k in names}
    for r in range(rows):
        for side in ("inputs", "targets"):
            cut = int(rng.integers(3, length - 3))
            end = int(rng.integers(cut + 2, length + 1))
            batch[side][r, :end] = rng.integers(3, vocab, end)
            batch[side][r, cut - 1] = batch[side][r, end - 1] = 1  # EOS closes each example
            batch[f"{side}_segmentation"][r, :cut] = 1
            batch[f"{side}_segmentation"][r, cut:end] = 2
            batch[f"{side}_position"][r, :cut] = np.arange(cut)
            batch[f"{side}_position"][r, cut:end] = np.arange(end - cut)
    return batch


def _train_and_eval(mesh, steps=3):
    workload = TransformerWorkload()
    cfg = _tiny_cfg(workload)
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state = fns.init(jax.random.key(0))
    key = jax.device_put(jax.random.key(1), mesh_lib.replicated(mesh))
    rng = np.random.default_rng(0)
    losses = []
    batch = _packed_batch(rng, cfg.global_batch_size, cfg.max_length, cfg.vocab_size)
    for _ in range(steps):
        state, metrics, key = fns.train_step(state, mesh_lib.to_global(batch,
                                                                        fns.batch_sharding), key)
        losses.append(float(metrics["loss"]))
    tokens = rng.integers(3, cfg.vocab_size, (8, cfg.eval_max_length)).astype(np.int32)
    tokens[:, -1] = 1
    eval_batch = {"inputs": tokens, "targets": tokens, "index": np.arange(8, dtype=np.int32),
                  "mask": np.ones(8, np.float32)}
    out = jax.device_get(fns.eval_step(state, mesh_lib.to_global(eval_batch,
                                                                  fns.batch_sharding)))
    return np.array(losses), out, state


def test_tensor_parallel_layout_matches_one_device():
    one, out_one, _ = _train_and_eval(mesh_lib.make_mesh(devices=jax.devices()[:1]))
    mesh = mesh_lib.make_mesh(model=2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "model": 2}
    tp, out_tp, state = _train_and_eval(mesh)
    # Heads and the feed-forward hidden really are split over the model axis.
    layer = state.params["encoder"]["layer_0"]
    query = layer["attention"]["query"]["kernel"]
    assert query.shape[1] == 4 and query.addressable_shards[0].data.shape[1] == 2
    wi = layer["mlp"]["wi"]["kernel"]
    assert wi.addressable_shards[0].data.shape[1] == wi.shape[1] // 2
    assert one[-1] < one[0]  # it trains
    np.testing.assert_allclose(tp, one, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(out_tp["nll"], out_one["nll"], rtol=2e-5)
    np.testing.assert_array_equal(out_tp["tokens"], out_one["tokens"])
