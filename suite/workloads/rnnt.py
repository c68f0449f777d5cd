"""MLPerf speech: RNN-T on LibriSpeech to word error rate 0.058 on dev-clean (ruleset 3.1.0).

The closed reference (MLPerf training's retired PyTorch RNN-T, config baseline_v3-1023sp):
log-mel features stacked by 3, a 1,023-piece sentencepiece vocabulary plus blank, LAMB with a
warmup / hold / exponential-decay schedule, an EMA of the weights for eval, greedy decoding.
The host pipeline (input_pipelines.speech_batches) makes fixed-shape batches per length bucket;
each bucket's step is compiled before run_start.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from input_pipelines import librispeech, speech_features
from metrics import wer
from models import rnnt as rnnt_model
from models import transducer
from suite.hparams import Hparam, fixed
from suite.target import Target
from suite.workload import Workload
from suite.workloads import rnnt_data

DEV_CLEAN_UTTERANCES = 2703
FEATURES = speech_features.N_MELS * speech_features.STACKING


class RNNTWorkload(Workload):
    name = "rnnt"
    benchmark = C.RNNT
    ruleset = "3.1.0"  # the newest training ruleset with closed_rnnt.yaml
    target = Target("wer", 0.058, "min")
    # The closed rules' tunables: the logged keys closed_rnnt.yaml leaves unchecked.
    closed_tunable = frozenset({
        "global_batch_size", "base_lr", "adam_b1", "adam_b2", "warmup_epochs", "hold_epochs",
        "lr_decay_gamma", "ema_decay", "num_buckets"})
    runtime_fields = frozenset({"eval_batch_size", "time_chunk", "read_ahead"})
    data_dir_help = ("the directory holding LibriSpeech/ as extracted from OpenSLR SLR12 "
                     "(or, with --config.layout=manifest, the reference's wav + JSON manifests)")

    def reference_config(self, c):
        c.dataset = "librispeech"
        c.layout = "openslr"  # openslr: LibriSpeech/<split>/...; manifest: JSON + wav files
        c.train_splits = librispeech.TRAIN_SPLITS
        c.eval_splits = librispeech.EVAL_SPLITS
        c.train_manifests = tuple(f"librispeech-{s}-wav.json" for s in librispeech.TRAIN_SPLITS)
        c.eval_manifests = ("librispeech-dev-clean-wav.json",)
        c.train_examples, c.eval_examples = 281_241, DEV_CLEAN_UTTERANCES
        c.vocab_size = 1023  # sentencepiece pieces; the blank makes 1,024 classes
        c.vocab_path = ""  # empty: built once from the training transcripts and cached
        # The reference's 6 buckets (--num_buckets); fixed bounds here, since every bucket
        # is one compiled shape. Most LibriSpeech training utterances last 12-16.7 s.
        c.bucket_seconds = (5.0, 9.0, 12.0, 14.0, 15.5, librispeech.MAX_TRAIN_SECONDS)
        c.num_buckets = len(c.bucket_seconds)
        # Eval keeps every utterance: dev-clean's longest is under 33 s.
        c.eval_bucket_seconds = (4.0, 8.0, 12.0, 17.0, 35.0)
        c.tokens_per_second = 8.0  # label padding per bucket; LibriSpeech speaks ~4/s
        c.augment = True
        c.enc_hidden, c.enc_pre_layers, c.enc_post_layers, c.stack = 1024, 2, 3, 2
        c.pred_embed, c.pred_hidden, c.pred_layers = 512, 512, 2
        c.joint_hidden = 512
        c.enc_dropout, c.pred_dropout, c.joint_dropout = 0.1, 0.3, 0.3
        c.global_batch_size = 1024
        c.grad_accum_steps = 8  # the reference's 1,024 as 8 micro-batches (a runtime choice)
        c.base_lr = 4e-3
        c.adam_b1, c.adam_b2, c.adam_eps = 0.9, 0.999, 1e-9
        c.weight_decay = 1e-3  # on every parameter, as the reference's fused LAMB does
        c.clip_norm = 1.0
        c.warmup_epochs, c.hold_epochs = 6, 40
        c.lr_decay_gamma = 0.935  # per epoch after the hold
        c.min_lr = 1e-5
        c.ema_decay = 0.999
        c.train_epochs = c.max_epochs = 100
        c.epochs_per_block = c.eval_offset_epochs = 1
        c.eval_batch_size = 64
        c.max_symbols_per_frame = 30
        c.max_symbols = 300  # eval_max_prediction_symbols
        c.time_chunk = 32  # frames of joint output alive at once in the loss
        c.read_ahead = 2

    def tiny_preset(self, c):
        # A small RNN-T on the built-in spoken numbers (espeak-ng voices; dev voices held out).
        c.dataset = "spoken_numbers"
        c.train_splits, c.eval_splits = ("train-clean-100",), ("dev-clean",)
        c.train_examples, c.eval_examples = 2000, 200
        c.vocab_size = 40
        c.bucket_seconds = (2.0, 3.5)  # the corpus's utterances last 1-3.5 s
        c.num_buckets = 2
        c.eval_bucket_seconds = (3.5,)
        c.tokens_per_second = 12.0  # fast voices say "one hundred and four" in a second
        c.enc_hidden, c.enc_pre_layers, c.enc_post_layers, c.stack = 128, 1, 1, 4
        c.pred_embed, c.pred_hidden, c.pred_layers = 32, 64, 1
        c.joint_hidden = 64
        c.enc_dropout, c.pred_dropout, c.joint_dropout = 0.0, 0.0, 0.0
        # Small batches, many updates: 248 steps an epoch. A shorter hold and a faster decay
        # than the reference's keep the many small steps from diverging after epoch 5.
        c.global_batch_size = 8
        c.grad_accum_steps = 1
        c.base_lr = 7e-3
        c.warmup_epochs, c.hold_epochs = 1, 3
        c.lr_decay_gamma = 0.8
        c.ema_decay = 0.99
        c.train_epochs = c.max_epochs = 12
        c.eval_batch_size = 200  # the whole dev split at once; divides over 8 devices
        c.target_value = 0.15

    def validate(self, cfg, mesh_sizes):
        if cfg.layout not in ("openslr", "manifest"):
            raise UserError(f"--config.layout must be openslr or manifest, got {cfg.layout!r}")
        if cfg.num_buckets != len(cfg.bucket_seconds):
            raise UserError(f"--config.num_buckets={cfg.num_buckets} but bucket_seconds lists "
                            f"{len(cfg.bucket_seconds)}; set both")
        if cfg.global_batch_size % cfg.grad_accum_steps:
            raise UserError(f"global_batch_size {cfg.global_batch_size} does not split into "
                            f"grad_accum_steps={cfg.grad_accum_steps} micro-batches")
        super().validate(cfg, mesh_sizes)

    def logical_axis_rules(self, cfg):
        # Data parallel over data x fsdp; with --config.mesh.fsdp > 1 every weight's input
        # side (the 'embed' axis of LSTM kernels, projections and the embedding table) is
        # split over fsdp too.
        return [("batch", ("data", "fsdp")), ("embed", "fsdp")]

    # ----- model ---------------------------------------------------------
    def model_config(self, cfg) -> rnnt_model.RNNTConfig:
        return rnnt_model.RNNTConfig(
            features=FEATURES, vocab_size=cfg.vocab_size + 1, enc_hidden=cfg.enc_hidden,
            enc_pre_layers=cfg.enc_pre_layers, enc_post_layers=cfg.enc_post_layers,
            stack=cfg.stack, enc_dropout=cfg.enc_dropout, pred_embed=cfg.pred_embed,
            pred_hidden=cfg.pred_hidden, pred_layers=cfg.pred_layers,
            pred_dropout=cfg.pred_dropout, joint_hidden=cfg.joint_hidden,
            joint_dropout=cfg.joint_dropout,
            dtype=jnp.float32 if cfg.compute_dtype == "auto" else jnp.dtype(cfg.compute_dtype))

    def model_fields(self, cfg):
        return {k: cfg[k] for k in ("vocab_size", "enc_hidden", "enc_pre_layers",
                                    "enc_post_layers", "stack", "pred_embed", "pred_hidden",
                                    "pred_layers", "joint_hidden")}

    def learning_rate(self, cfg, data) -> optax.Schedule:
        """The reference's policy, set before each optimizer step from its 1-based step s and
        epoch e: (s + 1) / (W + 1) of the peak while s < W (W warmup steps), the peak while
        s < W + H (H hold steps), then gamma ** (e - warmup_epochs - hold_epochs); never
        below min_lr."""
        spe = data.epoch_steps(cfg.global_batch_size)
        warmup, hold = cfg.warmup_epochs * spe, cfg.hold_epochs * spe

        def schedule(step):
            s = jnp.asarray(step, jnp.float32) + 1.0  # optax counts from 0
            epoch = jnp.floor((s - 1.0) / spe) + 1.0
            decayed = cfg.lr_decay_gamma ** (epoch - cfg.warmup_epochs - cfg.hold_epochs)
            scale = jnp.where(s < warmup, (s + 1.0) / (warmup + 1.0),
                              jnp.where(s < warmup + hold, 1.0, decayed))
            return jnp.maximum(cfg.base_lr * scale, cfg.min_lr)

        return schedule

    def optimizer(self, cfg, data) -> optax.GradientTransformation:
        # The reference's fused LAMB: weight decay and the trust ratio on every parameter,
        # after clipping the global gradient norm.
        return optax.chain(
            optax.clip_by_global_norm(cfg.clip_norm),
            optax.lamb(self.learning_rate(cfg, data), b1=cfg.adam_b1, b2=cfg.adam_b2,
                       eps=cfg.adam_eps, weight_decay=cfg.weight_decay))

    def init_variables(self, cfg, rng):
        return rnnt_model.init_variables(self.model_config(cfg), rng)["params"], {}

    def loss(self, cfg, params, model_state, batch, rng, *, mesh):
        model_cfg = self.model_config(cfg)
        model = rnnt_model.RNNT(model_cfg)
        enc_p, pred_p, enc_lens = model.apply(
            {"params": params}, batch["feats"], batch["feat_lens"], batch["labels"],
            deterministic=False, rngs={"dropout": rng})

        def joint(slab, pred):
            return model.apply({"params": params}, slab, pred, method=rnnt_model.RNNT.joint)

        losses = transducer.transducer_loss(
            enc_p, pred_p, joint, batch["labels"], jnp.maximum(enc_lens, 1),
            batch["label_lens"], model_cfg.blank, cfg.time_chunk)
        return losses.mean(), ({}, model_state)

    def eval_step(self, cfg, params, model_state, batch, *, mesh):
        tokens, lengths = rnnt_model.decode(
            self.model_config(cfg), {"params": params}, batch["feats"], batch["feat_lens"],
            max_symbols_per_frame=cfg.max_symbols_per_frame, max_symbols=cfg.max_symbols)
        return {"tokens": tokens, "lengths": lengths, "labels": batch["labels"],
                "label_lens": batch["label_lens"], "index": batch["index"],
                "mask": batch["mask"]}

    def finalize_eval(self, cfg, outputs, context):
        def rows(key):
            return np.concatenate([o[key] for o in outputs])

        keep = rows("mask") > 0
        tokens, lengths = rows("tokens")[keep], rows("lengths")[keep]
        hyp_ids = [t[:n] for t, n in zip(tokens, lengths, strict=True)]
        if isinstance(context, rnnt_data.Transcripts):
            hyps = [context.vocab.decode(ids) for ids in hyp_ids]
            refs = [context.texts[i] for i in rows("index")[keep]]
        else:  # synthetic batches carry token labels, no text: score token ids as words
            labels, label_lens = rows("labels")[keep], rows("label_lens")[keep]
            hyps = [" ".join(map(str, ids)) for ids in hyp_ids]
            refs = [" ".join(map(str, t[:n])) for t, n in zip(labels, label_lens, strict=True)]
        errors, words = wer.word_errors(hyps, refs)
        return {"wer": wer.wer_from_sums(errors, words), "eval_utterances": len(refs)}

    # ----- data ----------------------------------------------------------
    def batch_specs(self, cfg, split, batch_size):
        training = split == "train"
        return [self._spec(cfg, split, batch_size, bound)
                for bound in rnnt_data.settings(cfg, training).bounds]

    def batch_spec(self, cfg, split, batch_size):
        return self.batch_specs(cfg, split, batch_size)[-1]  # the largest bucket

    def _spec(self, cfg, split, batch_size, bound):
        shape = rnnt_data.settings(cfg, split == "train").shape(bound)
        spec = {"feats": jax.ShapeDtypeStruct((batch_size, shape.frames, FEATURES), jnp.float32),
                "feat_lens": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
                "labels": jax.ShapeDtypeStruct((batch_size, shape.labels), jnp.int32),
                "label_lens": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
        if split != "train":
            spec["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
            spec["index"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        return spec

    def data_info(self, cfg, data_dir):
        return rnnt_data.data_info(self, cfg, data_dir)

    def artifacts(self, cfg, data):
        return {"vocab.model": data.facts["vocab_path"]}

    def train_batches(self, cfg, data, *, local_batch_size, process_index, process_count,
                      seed):
        return self.train_batches_from(cfg, data, 0, local_batch_size=local_batch_size,
                                       process_index=process_index,
                                       process_count=process_count, seed=seed)

    def train_batches_from(self, cfg, data, first, *, local_batch_size, process_index,
                           process_count, seed):
        # The plan is made without reading audio: a resumed run featurises no skipped batch.
        return rnnt_data.train_batches(cfg, data, local_batch_size=local_batch_size,
                                       process_index=process_index,
                                       process_count=process_count, seed=seed, skip=first)

    def eval_batches(self, cfg, data, *, local_batch_size, process_index, process_count):
        return rnnt_data.eval_batches(cfg, data, local_batch_size=local_batch_size,
                                      process_index=process_index, process_count=process_count)

    def synthetic_high(self, cfg):
        frames, labels = self._largest_train_bucket(cfg)
        return {"labels": cfg.vocab_size, "feat_lens": frames + 1, "label_lens": labels + 1}

    def _largest_train_bucket(self, cfg) -> tuple[int, int]:
        """(frames, labels) of batch_spec's shape: what throughput runs and FLOPs count."""
        spec = self.batch_spec(cfg, "train", 1)
        return spec["feats"].shape[1], spec["labels"].shape[1]

    # ----- reporting -----------------------------------------------------
    hparams = (
        fixed(C.OPT_NAME, C.LAMB, must_match=True),
        Hparam(C.OPT_BASE_LR, "base_lr"),
        Hparam(C.OPT_LAMB_EPSILON, "adam_eps"),
        # The reference logs its per-epoch decay factor under the poly-power key.
        Hparam(C.OPT_LAMB_LR_DECAY_POLY_POWER, "lr_decay_gamma"),
        Hparam(C.OPT_LAMB_LR_HOLD_EPOCHS, "hold_epochs"),
        Hparam(C.OPT_LR_WARMUP_EPOCHS, "warmup_epochs"),
        Hparam(C.OPT_WEIGHT_DECAY, "weight_decay"),
        Hparam(C.OPT_LAMB_BETA_1, "adam_b1"),
        Hparam(C.OPT_LAMB_BETA_2, "adam_b2"),
        Hparam(C.OPT_GRADIENT_CLIP_NORM, "clip_norm"),
        fixed(C.OPT_LR_ALT_DECAY_FUNC, True),
        fixed(C.OPT_LR_ALT_WARMUP_FUNC, True),
        Hparam(C.OPT_LAMB_LR_MIN, "min_lr"),
        fixed(C.DATA_TRAIN_MAX_DURATION, librispeech.MAX_TRAIN_SECONDS),
        Hparam(C.DATA_TRAIN_NUM_BUCKETS, "num_buckets"),
        Hparam(C.DATA_SPEED_PERTURBATON_MIN,
               log=lambda c, spe: speech_features.SPEED_RANGE[0]),
        Hparam(C.DATA_SPEED_PERTURBATON_MAX,
               log=lambda c, spe: speech_features.SPEED_RANGE[1]),
        fixed(C.DATA_SPEC_AUGMENT_FREQ_N, speech_features.FREQ_MASKS),
        fixed(C.DATA_SPEC_AUGMENT_FREQ_MIN, 0),
        fixed(C.DATA_SPEC_AUGMENT_FREQ_MAX, speech_features.MAX_FREQ_MASK),
        fixed(C.DATA_SPEC_AUGMENT_TIME_N, speech_features.TIME_MASKS),
        fixed(C.DATA_SPEC_AUGMENT_TIME_MIN, 0),
        fixed(C.DATA_SPEC_AUGMENT_TIME_MAX, speech_features.MAX_TIME_MASK_FRACTION),
        Hparam(C.MODEL_EVAL_EMA_FACTOR, "ema_decay"),
        Hparam(C.EVAL_MAX_PREDICTION_SYMBOLS, "max_symbols"),
        Hparam("jaxperf_augment", "augment"),
    )

    def flops_per_example(self, cfg):
        # What the step computes for one row of the largest bucket (padded lengths).
        frames, labels = self._largest_train_bucket(cfg)
        return float(rnnt_model.train_flops(self.model_config(cfg), frames, labels))


