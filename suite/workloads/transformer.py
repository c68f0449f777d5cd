"""MLPerf translation: Transformer-big on WMT English->German to BLEU 25.0 (newstest2014)."""

import functools
import hashlib
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from mlperf_logging.mllog import constants as C

from models import transformer as transformer_model
from suite import bleu
from suite.errors import UserError
from suite.target import Target
from suite.workdir import cache_dir
from suite.workload import DataInfo, Logged, TrainState, Workload, sum_outputs

NEWSTEST2014_SENTENCES = 3003
WMT17_TRAIN_PAIRS = 5_906_184  # tfds wmt17_translate/de-en train; data_info reads the truth


@functools.lru_cache(maxsize=8)
def _open_dataset(dataset: str, data_dir: str | None):
    """Each tfds builder once per process (data_info, training and every eval share it)."""
    from input_pipelines import translation

    return translation.open_builder(dataset, data_dir or cache_dir("tfds"))


class TransformerWorkload(Workload):
    name = "transformer"
    benchmark = C.TRANSFORMER
    ruleset = "0.7.0"
    target = Target("bleu", 0.25, "max")
    # MLPerf training rules (v0.7), Transformer: the optimizer values a closed run may tune.
    closed_tunable = frozenset({"global_batch_size", "base_lr", "warmup_steps", "adam_b1",
                                "adam_b2"})

    def __init__(self):
        self._references: dict[tuple, list[str]] = {}

    def config(self, preset: str) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
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
        c.compute_dtype = "auto"
        c.target_value = self.target.value
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
        c.mesh = ml_collections.ConfigDict({"fsdp": 1, "model": 1})
        if preset == "tiny":
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
        elif preset != "reference":
            raise ValueError(f"unknown preset {preset!r}")
        return c

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

    def learning_rate(self, cfg) -> optax.Schedule:
        warmup = max(cfg.warmup_steps, 1)

        def schedule(step):
            step = jnp.asarray(step, jnp.float32) + 1.0
            return cfg.base_lr * jnp.minimum(step / warmup, jnp.sqrt(warmup / step))

        return schedule

    def optimizer(self, cfg) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate(cfg), b1=cfg.adam_b1, b2=cfg.adam_b2,
                          eps=cfg.adam_eps)

    def init(self, cfg, rng):
        row = jnp.zeros((1, cfg.max_length), jnp.int32)
        params = self._model(cfg).init(rng, row, row, train=False)["params"]
        return TrainState(jnp.zeros((), jnp.int32), params, self.optimizer(cfg).init(params))

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

    def train_step(self, cfg, state, batch, rng):
        model = self._model(cfg)
        weights = (batch["targets_segmentation"] > 0).astype(jnp.float32)

        def loss_fn(params):
            logits = model.apply(
                {"params": params}, batch["inputs"], batch["targets"],
                inputs_positions=batch["inputs_position"],
                targets_positions=batch["targets_position"],
                inputs_segmentation=batch["inputs_segmentation"],
                targets_segmentation=batch["targets_segmentation"],
                train=True, rngs={"dropout": rng})
            loss, nll, correct, count = self._loss_sums(cfg, logits, batch["targets"], weights)
            count = jnp.maximum(count, 1.0)
            return loss / count, (nll / count, correct / count)

        (loss, (nll, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        tx = self.optimizer(cfg)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(state.step + 1, params, opt_state)
        return new_state, {"loss": loss, "train_nll": nll, "train_token_accuracy": acc}

    def eval_step(self, cfg, state, batch):
        inputs, targets = batch["inputs"], batch["targets"]
        logits = self._model(cfg).apply({"params": state.params}, inputs, targets, train=False)
        weights = (targets > 0).astype(jnp.float32) * batch["mask"][:, None]
        _, nll, _, count = self._loss_sums(cfg, logits, targets, weights)
        tokens = transformer_model.translate(
            self._model(cfg, decode=True), state.params, inputs, beam_size=cfg.beam_size,
            alpha=cfg.length_penalty,
            max_decode_len=cfg.eval_max_length + cfg.decode_extra_length,
            extra_length=cfg.decode_extra_length)
        return {"tokens": tokens, "targets": targets, "index": batch["index"],
                "mask": batch["mask"], "nll": nll, "tokens_count": count}

    def finalize_eval(self, cfg, outputs):
        sums = sum_outputs([{k: o[k] for k in ("nll", "tokens_count")} for o in outputs])
        keep = np.concatenate([o["mask"] for o in outputs]) > 0
        tokens = np.concatenate([o["tokens"] for o in outputs])[keep]
        index = np.concatenate([o["index"] for o in outputs])[keep]
        references = self._references.get(self._eval_key(cfg))
        if references is None:
            # Synthetic data has no text: score the token ids against the target ids.
            targets = np.concatenate([o["targets"] for o in outputs])[keep]
            hyps, refs = bleu.ids_as_words(tokens), bleu.ids_as_words(targets)
        else:
            vocab = self._vocab(cfg)
            hyps = [vocab.decode(row) for row in tokens]
            refs = [references[i] for i in index]
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

    def _eval_key(self, cfg) -> tuple:
        return (cfg.eval_dataset, cfg.eval_split)

    def _vocab(self, cfg):
        return _load_vocab(cfg.vocab_path)

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
        # The resolved vocabulary is part of the run: recorded in its config, copied into
        # its workdir (artifacts), reused by every later step of this process.
        cfg.vocab_path = self._vocab_path(cfg, data_dir, train)
        vocab = self._vocab(cfg)
        if vocab.size != cfg.vocab_size:
            raise UserError(
                f"vocabulary {cfg.vocab_path} has {vocab.size} pieces but "
                f"--config.vocab_size={cfg.vocab_size}; pass the matching size")
        rows = translation.packed_rows_per_epoch(train, cfg.train_split, vocab, cfg.max_length)
        return DataInfo(
            train_examples=translation.require_split(train, cfg.train_split),
            eval_examples=translation.require_split(evaluation, cfg.eval_split),
            source=f"{cfg.train_dataset}:{cfg.train_split} -> {cfg.eval_dataset}:"
                   f"{cfg.eval_split} from {train.data_dir}",
            steps_per_epoch=max(1, -(-rows // cfg.global_batch_size)))

    def artifacts(self, cfg):
        return {"vocab.model": cfg.vocab_path} if cfg.vocab_path else {}

    def train_batches(self, cfg, data_dir, *, local_batch_size, process_index, process_count,
                      seed):
        from input_pipelines import translation

        train, _ = self._builders(cfg, data_dir)
        return translation.train_batches(
            train, cfg.train_split, self._vocab(cfg), local_batch_size=local_batch_size,
            max_length=cfg.max_length, process_index=process_index,
            process_count=process_count, seed=seed)

    def eval_batches(self, cfg, data_dir, *, local_batch_size, process_index, process_count):
        from input_pipelines import translation

        _, evaluation = self._builders(cfg, data_dir)
        self._references[self._eval_key(cfg)] = translation.references(
            evaluation, cfg.eval_split)
        return translation.eval_batches(
            evaluation, cfg.eval_split, self._vocab(cfg), local_batch_size=local_batch_size,
            max_length=cfg.eval_max_length, process_index=process_index,
            process_count=process_count)

    # ----- reporting -----------------------------------------------------
    def mllog_hparams(self, cfg, steps_per_epoch):
        return {
            C.OPT_NAME: C.ADAM,
            C.OPT_BASE_LR: cfg.base_lr,
            C.OPT_LR_WARMUP_STEPS: cfg.warmup_steps,
            C.OPT_ADAM_BETA_1: cfg.adam_b1,
            C.OPT_ADAM_BETA_2: cfg.adam_b2,
            C.OPT_ADAM_EPSILON: cfg.adam_eps,
            # Longer training pairs are dropped, not cut (input_pipelines.translation.pack).
            C.MAX_SEQUENCE_LENGTH: Logged(cfg.max_length, {"method": "discard"}),
            "jaxperf_label_smoothing": cfg.label_smoothing,
            "jaxperf_beam_search": Logged(cfg.beam_size, {
                "length_penalty": cfg.length_penalty, "extra_length": cfg.decode_extra_length}),
        }

    def config_from_hparams(self, hparams):
        if hparams.get(C.OPT_NAME) != C.ADAM:
            raise UserError(f"the log's optimizer is {hparams.get(C.OPT_NAME)!r}; jaxperf's "
                            "transformer borrows Adam hyperparameters only")
        keys = {C.GLOBAL_BATCH_SIZE: "global_batch_size", C.OPT_BASE_LR: "base_lr",
                C.OPT_LR_WARMUP_STEPS: "warmup_steps", C.OPT_ADAM_BETA_1: "adam_b1",
                C.OPT_ADAM_BETA_2: "adam_b2"}
        values = {field: hparams[key] for key, field in keys.items() if key in hparams}
        for field in ("base_lr", "adam_b1", "adam_b2"):
            if field in values:
                values[field] = float(values[field])
        return values

    def flops_per_example(self, cfg):
        # One packed row: max_length source and max_length target tokens. Backward = 2x.
        return 3.0 * transformer_model.forward_flops(
            self._model_config(cfg), cfg.max_length, cfg.max_length)


@functools.lru_cache(maxsize=4)
def _load_vocab(path: str):
    from input_pipelines import subwords

    return subwords.load_vocab(path)
