"""MLPerf translation: Transformer-big on WMT English->German to BLEU 25.0 (newstest2014)."""

import dataclasses
import functools
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from metrics import bleu
from models import transformer as transformer_model
from suite.hparams import Hparam, Logged, fixed
from suite.target import Target
from suite.workdir import cache_dir
from suite.workload import DataInfo, EvalSet, Workload, sum_outputs

NEWSTEST2014_SENTENCES = 3003
WMT17_TRAIN_PAIRS = 5_906_184  # tfds wmt17_translate/de-en train; data_info reads the truth


@functools.lru_cache(maxsize=8)
def _open_dataset(dataset: str, data_dir: str | None):
    """Each tfds builder once per process (data_info, training and every eval share it)."""
    from input_pipelines import translation

    return translation.open_builder(dataset, data_dir or cache_dir("tfds"))


@dataclasses.dataclass(frozen=True)
class References:
    """The eval split's reference sentences (by example index) and the vocabulary that
    turns decoded ids back into text: what BLEU is scored against."""

    sentences: tuple[str, ...]
    vocab: Any


@dataclasses.dataclass(frozen=True)
class TokenIdReferences:
    """Synthetic eval batches carry no text: BLEU of the decoded ids against the target
    ids, as space-separated "words" (throughput runs only; never a result)."""


@functools.lru_cache(maxsize=4)
def _references(dataset: str, split: str, data_dir: str | None) -> list[str]:
    from input_pipelines import translation

    return translation.references(_open_dataset(dataset, data_dir), split)


class TransformerWorkload(Workload):
    name = "transformer"
    benchmark = C.TRANSFORMER
    ruleset = "0.7.0"
    target = Target("bleu", 0.25, "max")
    # MLPerf training rules (v0.7), Transformer: the optimizer values a closed run may tune.
    closed_tunable = frozenset({"global_batch_size", "base_lr", "warmup_steps", "adam_b1",
                                "adam_b2"})

    runtime_fields = frozenset({"eval_batch_size", "vocab_path"})

    def reference_config(self, c):
        c.train_dataset, c.train_split = "wmt17_translate/de-en", "train"
        c.eval_dataset, c.eval_split = "wmt14_translate/de-en", "test"  # newstest2014
        c.train_examples, c.eval_examples = WMT17_TRAIN_PAIRS, NEWSTEST2014_SENTENCES
        c.vocab_size = 32768  # sentencepiece pieces shared by English and German
        c.vocab_path = ""  # empty: build from the training text (cached), copied into the run
        c.vocab_sentences = 1_000_000  # sentences sampled to build the vocabulary
        # Transformer-big.
        c.emb_dim, c.num_heads, c.mlp_dim = 1024, 16, 4096
        c.enc_layers, c.dec_layers = 6, 6
        c.dropout_rate, c.attention_dropout_rate = 0.1, 0.1
        c.max_length = 256  # tokens per packed training row (MLPerf max_sequence_length)
        c.eval_max_length = 256  # longer eval inputs are truncated (newstest2014 has none)
        # Adam with linear warmup then inverse-square-root decay; label smoothing 0.1.
        c.global_batch_size = 512  # packed rows of max_length tokens
        c.base_lr = 0.002  # the peak, reached at the end of warmup
        c.warmup_steps = 1000
        c.adam_b1, c.adam_b2, c.adam_eps = 0.9, 0.98, 1e-9
        c.label_smoothing = 0.1
        # One epoch is one pass over the training pairs; MLPerf evaluates after each.
        c.train_epochs = 10
        c.max_epochs = 10
        c.epochs_per_block = 1
        c.eval_offset_epochs = 1
        # Beam search as MLPerf decodes: beam 4, GNMT length penalty 0.6, input length + 50.
        c.eval_batch_size = 64
        c.beam_size = 4
        c.length_penalty = 0.6
        c.decode_extra_length = 50

    def tiny_preset(self, c):
        # A small Transformer on the built-in numbers-and-dates corpus (num2words).
        c.train_dataset, c.train_split = "jaxperf_numbers_translate", "train"
        c.eval_dataset, c.eval_split = "jaxperf_numbers_translate", "test"
        c.train_examples, c.eval_examples = 20_000, 500
        c.vocab_size = 512
        c.vocab_sentences = 100_000
        c.emb_dim, c.num_heads, c.mlp_dim = 128, 4, 512
        c.enc_layers, c.dec_layers = 2, 2
        c.dropout_rate, c.attention_dropout_rate = 0.0, 0.0
        c.max_length = 64
        c.eval_max_length = 48
        c.decode_extra_length = 16
        c.target_value = 0.9
        c.global_batch_size = 64
        c.base_lr = 0.003
        c.warmup_steps = 100
        c.train_epochs = c.max_epochs = 8
        c.eval_batch_size = 128

    def logical_axis_rules(self, cfg):
        # Tensor parallelism: heads and the feed-forward hidden are split over the model
        # axis (a no-op where it has size 1); the shared embedding splits over its vocabulary.
        return [("batch", ("data", "fsdp")), ("heads", "model"), ("mlp", "model"),
                ("vocab", "model"), ("embed", "fsdp"), ("kv", None)]

    # ----- model ---------------------------------------------------------
    def _model_config(self, cfg, decode: bool = False) -> "transformer_model.TransformerConfig":
        return transformer_model.TransformerConfig(
            vocab_size=cfg.vocab_size, emb_dim=cfg.emb_dim, num_heads=cfg.num_heads,
            enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, qkv_dim=cfg.emb_dim,
            mlp_dim=cfg.mlp_dim,
            max_len=max(cfg.max_length, cfg.eval_max_length + cfg.decode_extra_length),
            dropout_rate=cfg.dropout_rate, attention_dropout_rate=cfg.attention_dropout_rate,
            dtype=jnp.dtype(cfg.compute_dtype), decode=decode)

    def _model(self, cfg, decode: bool = False):
        return transformer_model.Transformer(self._model_config(cfg, decode))

    def learning_rate(self, cfg, data) -> optax.Schedule:
        warmup = max(cfg.warmup_steps, 1)

        def schedule(step):
            step = jnp.asarray(step, jnp.float32) + 1.0
            return cfg.base_lr * jnp.minimum(step / warmup, jnp.sqrt(warmup / step))

        return schedule

    def optimizer(self, cfg, data) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate(cfg, data), b1=cfg.adam_b1, b2=cfg.adam_b2,
                          eps=cfg.adam_eps)

    def init_variables(self, cfg, rng):
        row = jnp.zeros((1, cfg.max_length), jnp.int32)
        return self._model(cfg).init(rng, row, row, train=False)["params"], {}

    def _loss_sums(self, cfg, logits, targets, weights):
        """Label-smoothed cross entropy summed over real target tokens, and their count.

        Smoothing mixes (1 - ls) of the one-hot with ls spread evenly over the vocabulary,
        written with log-probs so no [batch, length, vocab] one-hot is ever built.
        """
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        uniform = -logp.mean(axis=-1)
        ls = cfg.label_smoothing
        loss = ((1.0 - ls) * nll + ls * uniform) * weights
        correct = (jnp.argmax(logits, -1) == targets) * weights
        return loss.sum(), (nll * weights).sum(), correct.sum(), weights.sum()

    def loss(self, cfg, params, model_state, batch, rng, *, mesh):
        weights = (batch["targets_segmentation"] > 0).astype(jnp.float32)
        logits = self._model(cfg).apply(
            {"params": params}, batch["inputs"], batch["targets"],
            inputs_positions=batch["inputs_position"],
            targets_positions=batch["targets_position"],
            inputs_segmentation=batch["inputs_segmentation"],
            targets_segmentation=batch["targets_segmentation"],
            train=True, rngs={"dropout": rng})
        loss, nll, correct, count = self._loss_sums(cfg, logits, batch["targets"], weights)
        count = jnp.maximum(count, 1.0)
        return loss / count, ({"train_nll": nll / count,
                               "train_token_accuracy": correct / count}, model_state)

    def eval_step(self, cfg, params, model_state, batch, *, mesh):
        inputs, targets = batch["inputs"], batch["targets"]
        logits = self._model(cfg).apply({"params": params}, inputs, targets, train=False)
        weights = (targets > 0).astype(jnp.float32) * batch["mask"][:, None]
        _, nll, _, count = self._loss_sums(cfg, logits, targets, weights)
        tokens = transformer_model.translate(
            self._model(cfg, decode=True), params, inputs, beam_size=cfg.beam_size,
            alpha=cfg.length_penalty,
            max_decode_len=cfg.eval_max_length + cfg.decode_extra_length,
            extra_length=cfg.decode_extra_length)
        return {"tokens": tokens, "targets": targets, "index": batch["index"],
                "mask": batch["mask"], "nll": nll, "tokens_count": count}

    def finalize_eval(self, cfg, outputs, context):
        sums = sum_outputs([{k: o[k] for k in ("nll", "tokens_count")} for o in outputs])
        keep = np.concatenate([o["mask"] for o in outputs]) > 0
        tokens = np.concatenate([o["tokens"] for o in outputs])[keep]
        index = np.concatenate([o["index"] for o in outputs])[keep]
        if isinstance(context, References):
            hyps = [context.vocab.decode(row) for row in tokens]
            refs = [context.sentences[i] for i in index]
        elif isinstance(context, TokenIdReferences):
            targets = np.concatenate([o["targets"] for o in outputs])[keep]
            hyps, refs = bleu.ids_as_words(tokens), bleu.ids_as_words(targets)
        else:
            raise TypeError(f"the Transformer's eval scores against References, got {context!r}")
        return {"bleu": bleu.corpus_bleu(hyps, refs),
                "eval_nll": sums["nll"] / max(sums["tokens_count"], 1.0)}

    # ----- data ----------------------------------------------------------
    def batch_spec(self, cfg, split, batch_size):
        if split == "train":
            shape = (batch_size, cfg.max_length)
            names = ("inputs", "inputs_position", "inputs_segmentation", "targets",
                     "targets_position", "targets_segmentation")
            return {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}
        shape = (batch_size, cfg.eval_max_length)
        return {"inputs": jax.ShapeDtypeStruct(shape, jnp.int32),
                "targets": jax.ShapeDtypeStruct(shape, jnp.int32),
                "index": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
                "mask": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

    def _builders(self, cfg, data_dir):
        from input_pipelines import translation

        train = _open_dataset(cfg.train_dataset, data_dir or None)
        evaluation = _open_dataset(cfg.eval_dataset, data_dir or None)
        translation.require_split(train, cfg.train_split)
        translation.require_split(evaluation, cfg.eval_split)
        return train, evaluation

    def _vocab_path(self, cfg, data_dir, train_builder) -> str:
        """The given vocabulary, or one built once from this training data and cached."""
        from input_pipelines import subwords, translation

        if cfg.vocab_path:
            _load_vocab(cfg.vocab_path)  # fails early, in one line, if unusable (cached)
            return cfg.vocab_path
        source = f"{cfg.train_dataset}|{cfg.train_split}|{train_builder.data_dir}|" \
                 f"{cfg.vocab_size}|{cfg.vocab_sentences}"
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        name = f"{cfg.train_dataset.replace('/', '_')}-{cfg.vocab_size}-{digest}.model"
        path = cache_dir("vocab", name)
        if not os.path.exists(path):
            print(f"Building a {cfg.vocab_size}-piece vocabulary from {cfg.train_dataset} "
                  f"(once; cached at {path}).", flush=True)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            subwords.build_vocab(
                translation.train_texts(train_builder, cfg.train_split, cfg.vocab_sentences),
                cfg.vocab_size, path, max_sentences=cfg.vocab_sentences)
        return path

    def data_info(self, cfg, data_dir):
        from input_pipelines import translation

        train, evaluation = self._builders(cfg, data_dir)
        # The resolved vocabulary is part of the run: a fact of its data (recorded in its
        # config.json), copied into its workdir (artifacts), read by its pipelines.
        vocab_path = self._vocab_path(cfg, data_dir, train)
        vocab = _load_vocab(vocab_path)
        if vocab.size != cfg.vocab_size:
            raise UserError(
                f"vocabulary {vocab_path} has {vocab.size} pieces but "
                f"--config.vocab_size={cfg.vocab_size}; pass the matching size")
        rows = translation.packed_rows_per_epoch(train, cfg.train_split, vocab, cfg.max_length)
        return DataInfo(
            train_examples=translation.require_split(train, cfg.train_split),
            eval_examples=translation.require_split(evaluation, cfg.eval_split),
            source=f"{cfg.train_dataset}:{cfg.train_split} -> {cfg.eval_dataset}:"
                   f"{cfg.eval_split} from {train.data_dir}",
            steps_per_epoch=max(1, -(-rows // cfg.global_batch_size)),
            facts={"vocab_path": vocab_path})

    def artifacts(self, cfg, data):
        return {"vocab.model": data.facts["vocab_path"]}

    def train_batches(self, cfg, data, *, local_batch_size, process_index, process_count,
                      seed):
        from input_pipelines import translation

        train, _ = self._builders(cfg, data.data_dir)
        return translation.train_batches(
            train, cfg.train_split, _load_vocab(data.facts["vocab_path"]),
            local_batch_size=local_batch_size,
            max_length=cfg.max_length, process_index=process_index,
            process_count=process_count, seed=seed)

    def eval_batches(self, cfg, data, *, local_batch_size, process_index, process_count):
        from input_pipelines import translation

        _, evaluation = self._builders(cfg, data.data_dir)
        vocab = _load_vocab(data.facts["vocab_path"])
        batches = translation.eval_batches(
            evaluation, cfg.eval_split, vocab, local_batch_size=local_batch_size,
            max_length=cfg.eval_max_length, process_index=process_index,
            process_count=process_count)
        sentences = _references(cfg.eval_dataset, cfg.eval_split, data.data_dir or None)
        return EvalSet(batches, References(tuple(sentences), vocab))

    def synthetic_eval_context(self, cfg):
        return TokenIdReferences()

    # ----- reporting -----------------------------------------------------
    hparams = (
        fixed(C.OPT_NAME, C.ADAM, must_match=True),
        Hparam(C.OPT_BASE_LR, "base_lr"),
        Hparam(C.OPT_LR_WARMUP_STEPS, "warmup_steps"),
        Hparam(C.OPT_ADAM_BETA_1, "adam_b1"),
        Hparam(C.OPT_ADAM_BETA_2, "adam_b2"),
        Hparam(C.OPT_ADAM_EPSILON, "adam_eps"),
        # Longer training pairs are dropped, not cut (input_pipelines.translation.pack).
        Hparam(C.MAX_SEQUENCE_LENGTH,
               log=lambda c, spe: Logged(c.max_length, {"method": "discard"})),
        Hparam("jaxperf_label_smoothing", "label_smoothing"),
        Hparam("jaxperf_beam_search", log=lambda c, spe: Logged(c.beam_size, {
            "length_penalty": c.length_penalty, "extra_length": c.decode_extra_length})),
    )

    def flops_per_example(self, cfg):
        # One packed row: max_length source and max_length target tokens. Backward = 2x.
        return 3.0 * transformer_model.forward_flops(
            self._model_config(cfg), cfg.max_length, cfg.max_length)


@functools.lru_cache(maxsize=4)
def _load_vocab(path: str):
    from input_pipelines import subwords

    return subwords.load_vocab(path)
