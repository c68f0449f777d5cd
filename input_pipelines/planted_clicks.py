"""Built-in click logs from a planted model: tiny DLRM data that needs no download.

Writes days in exactly the reference's multi-hot Criteo layout (see input_pipelines.criteo),
so the tiny preset and the tests read them through the same memory-mapped reader as the
3.8 TB benchmark set. Labels come from a known model, so the best reachable AUC is known:

  dense      13 floats per row, standard normal
  sparse     feature k's bag holds hotness[k] ids drawn from a power law over its vocabulary
             (a few ids are very common, as in Criteo, which is what lets an embedding
             table learn from few rows); each id has a planted effect theta_k[id], smaller
             for rare ids, whose effects no model could learn from a few sightings
  logit      bias + w . dense + sum_k mean(theta_k[bag_k])
             + two crosses: dense_0 * mean(theta_3) and mean(theta_1) * mean(theta_2),
             so that DCNv2's cross layers have something to find
  label      Bernoulli(sigmoid(logit))

The manifest records oracle_auc_val, the AUC of the true probabilities on the val split: the
best any model can expect. Ids are written as the hash-like value id + vocab * r (r fixed per
id), so readers must take them modulo the vocabulary size as they must for the real set.
Everything is drawn from np.random.default_rng with per-day, per-feature sub-seeds: the same
arguments give the same bytes on every machine.
"""

from __future__ import annotations

import json
import os
import statistics
import zipfile

import numpy as np

from common.errors import UserError
from input_pipelines import built_once, criteo
from input_pipelines.criteo import NUM_DENSE
from metrics.auc import roc_auc

MANIFEST = built_once.MANIFEST
# Bumped whenever the generator changes what it writes, so cached copies are rebuilt.
GENERATOR_VERSION = 1

# 26 features like the reference; vocabularies of 3 to 2,000 ids, a few multi-hot bags. Sized
# so that one epoch of an embeddings + linear learner gets within 0.02 of the oracle AUC.
TINY = dict(
    num_days=5,
    rows_per_day=80_000,
    vocab_sizes=(500, 250, 150, 400, 20, 30, 600, 100, 50, 3, 750, 350, 45, 200, 5, 2000, 125,
                 4, 75, 300, 900, 175, 10, 60, 450, 15),
    hotness=(1, 2, 1, 1, 3, 1, 1, 1, 1, 2, 1, 4, 1, 1, 1, 2, 1, 1, 1, 3, 1, 1, 1, 1, 2, 1),
    seed=0,
)
DATASETS = {"tiny": TINY}

# Variances of the logit's parts (bag means, dense, crosses) and the click rate aimed at:
# together they put the oracle AUC near 0.83 and about 30% of rows positive.
_CATEGORICAL_VARIANCE = 1.9
_DENSE_VARIANCE = 0.5
_CROSS_VARIANCE = 0.15
_POSITIVE_RATE = 0.3
# Power-law exponents of id popularity, drawn per feature (Criteo's are near 1).
_ZIPF_EXPONENTS = (1.0, 1.4)
# An id's effect scales with (its popularity / the top id's) ** this.
_RARE_SHRINK = 0.3
# Sub-seed tags: each draw has its own stream, so changing one part leaves the others alone.
_MODEL, _DENSE, _SPARSE, _LABEL = 1, 2, 3, 4


class _PlantedModel:
    """The planted parameters of one (vocab_sizes, hotness, seed)."""

    def __init__(self, vocab_sizes: tuple[int, ...], hotness: tuple[int, ...], seed: int):
        rng = np.random.default_rng([seed, _MODEL])
        self.hotness = hotness
        self.cdfs, self.thetas, self.raw_ids, self.bag_std = [], [], [], []
        # How much each feature matters: uneven, as in real logs, and summing to 1.
        importance = rng.exponential(size=len(vocab_sizes))
        importance /= importance.sum()
        for vocab, hot, share in zip(vocab_sizes, hotness, importance, strict=True):
            popularity = np.arange(1, vocab + 1, dtype=np.float64) ** -rng.uniform(
                *_ZIPF_EXPONENTS)
            popularity = popularity[rng.permutation(vocab)]  # popular ids anywhere in range
            popularity /= popularity.sum()
            # Rare ids get smaller effects (seen a handful of times, an effect could not be
            # learned anyway), which keeps the oracle within reach of one epoch.
            theta = rng.standard_normal(vocab) * (popularity / popularity.max()) ** _RARE_SHRINK
            # Centre and scale under the popularity actually drawn, so that a bag mean of
            # `hot` independent ids has variance share * _CATEGORICAL_VARIANCE.
            theta -= popularity @ theta
            theta *= np.sqrt(share * _CATEGORICAL_VARIANCE * hot / max(popularity @ theta**2,
                                                                       1e-12))
            self.cdfs.append(np.cumsum(popularity))
            self.bag_std.append(np.sqrt(share * _CATEGORICAL_VARIANCE))
            self.thetas.append(theta)
            spread = max(1, min(8, np.iinfo(np.int32).max // vocab))
            self.raw_ids.append(
                (np.arange(vocab) + vocab * rng.integers(0, spread, vocab)).astype(np.int32))
        weights = rng.standard_normal(NUM_DENSE)
        self.dense_weights = weights * np.sqrt(_DENSE_VARIANCE / (weights @ weights))
        self.crosses = len(vocab_sizes) >= 4
        # Each cross is a product of two unit-variance-scaled parts; split the budget evenly.
        self.cross_scale = np.sqrt(_CROSS_VARIANCE / 2) if self.crosses else 0.0
        # Probit approximation of E[sigmoid(N(bias, var))] = rate, solved for the bias.
        variance = _CATEGORICAL_VARIANCE + _DENSE_VARIANCE + (_CROSS_VARIANCE * self.crosses)
        lam2 = np.pi / 8
        self.bias = statistics.NormalDist().inv_cdf(_POSITIVE_RATE) * np.sqrt(
            1 + lam2 * variance) / np.sqrt(lam2)

    def day(self, seed: int, day: int, rows: int) -> tuple[np.ndarray, list, np.ndarray]:
        """(dense, raw sparse ids per feature, true click probabilities) of one day."""
        dense = np.random.default_rng([seed, _DENSE, day]).standard_normal(
            (rows, NUM_DENSE), dtype=np.float32)
        logit = self.bias + dense.astype(np.float64) @ self.dense_weights
        sparse, means = [], []
        parts = zip(self.cdfs, self.thetas, self.raw_ids, strict=True)
        for k, (cdf, theta, raw) in enumerate(parts):
            uniform = np.random.default_rng([seed, _SPARSE, day, k]).random(
                (rows, self.hotness[k]))
            ids = np.minimum(np.searchsorted(cdf, uniform, side="right"), len(cdf) - 1)
            sparse.append(raw[ids])
            means.append(theta[ids].mean(axis=1))
            logit += means[-1]
        if self.crosses:
            # Unit-variance parts, so cross_scale alone sets each cross's variance.
            part = [means[k] / self.bag_std[k] for k in range(4)]
            logit += self.cross_scale * (dense[:, 0] * part[3] + part[1] * part[2])
        return dense, sparse, 1.0 / (1.0 + np.exp(-logit))


def _write_npz(path: str, arrays: list[np.ndarray]) -> None:
    """np.savez's layout (stored members 0.npy, 1.npy, ..., zip64 headers), but with a fixed
    timestamp: np.savez stamps each member with the current time, so the bytes would change
    from run to run."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for k, array in enumerate(arrays):
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array))


def write(out_dir: str, *, num_days: int, rows_per_day: int, vocab_sizes: tuple[int, ...],
          hotness: tuple[int, ...], seed: int = 0) -> dict:
    """Writes num_days days of planted click logs into out_dir (created if needed) and
    manifest.json; returns the manifest."""
    vocab_sizes, hotness = tuple(int(v) for v in vocab_sizes), tuple(int(h) for h in hotness)
    if len(vocab_sizes) != len(hotness) or num_days < 2 or rows_per_day < 2:
        raise UserError(f"planted click logs need one hotness per vocabulary, >= 2 days and "
                        f">= 2 rows a day; got {len(hotness)} hotness, {len(vocab_sizes)} "
                        f"vocabularies, {num_days} days, {rows_per_day} rows a day")
    os.makedirs(out_dir, exist_ok=True)
    model = _PlantedModel(vocab_sizes, hotness, seed)
    positives = 0
    for day in range(num_days):
        dense, sparse, probability = model.day(seed, day, rows_per_day)
        labels = np.random.default_rng([seed, _LABEL, day]).random(rows_per_day) < probability
        positives += int(labels.sum())
        dense_path, labels_path, sparse_path = criteo.day_paths(out_dir, day)
        np.save(dense_path, dense)
        np.save(labels_path, labels.astype(np.int32).reshape(-1, 1))
        _write_npz(sparse_path, sparse)
    val_rows = (rows_per_day + 1) // 2
    manifest = dict(
        generator_version=GENERATOR_VERSION,
        num_days=num_days, rows_per_day=rows_per_day, vocab_sizes=list(vocab_sizes),
        hotness=list(hotness), seed=seed,
        train_rows=(num_days - 1) * rows_per_day, val_rows=val_rows,
        test_rows=rows_per_day - val_rows,
        positive_rate=positives / (num_days * rows_per_day),
        # The last day's first rows are val, so its probabilities and labels are still here.
        oracle_auc_val=roc_auc(probability[:val_rows], labels[:val_rows]),
    )
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _matches(manifest: dict, params: dict) -> bool:
    return manifest.get("generator_version") == GENERATOR_VERSION and all(
        manifest.get(key) == (list(value) if isinstance(value, tuple) else value)
        for key, value in params.items())


def prepare(cache_root: str, name: str = "tiny") -> tuple[str, dict]:
    """The built-in dataset `name` under cache_root/criteo_<name>/, written once (atomically,
    see input_pipelines.built_once); returns (data_dir, manifest)."""
    if name not in DATASETS:
        raise UserError(f"no built-in click logs named {name!r}; choose one of "
                        f"{', '.join(DATASETS)}")
    params = DATASETS[name]
    return built_once.prepare(cache_root, f"criteo_{name}",
                              f"the built-in criteo_{name} click logs",
                              lambda manifest: _matches(manifest, params),
                              lambda staging: write(staging, **params))
