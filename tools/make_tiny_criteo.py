"""Writes small click logs in the layout of MLPerf's DLRM-DCNv2 dataset (the reference's
materialised multi-hot Criteo 1TB), so the real reader can be exercised without 3.8 TB.

    python -m tools.make_tiny_criteo --out /tmp/tiny_criteo [--num_days 24 --rows_per_day 2000]
        [--reference_shape]
    # then: --data_dir /tmp/tiny_criteo

Rows come from input_pipelines.planted_clicks (labels from a known model; manifest.json holds
the oracle AUC). By default the features are the built-in tiny set's; --reference_shape uses
the reference's 26 hotness values and its vocabulary sizes capped at --vocab_cap, so that a
run configured like the reference reads the real layout: 24 days, the last split into
validation and test.
"""

from __future__ import annotations

import argparse
import os
import time

from common.errors import UserError
from flags import flagfile
from input_pipelines import criteo, planted_clicks


def make(out_dir: str, *, num_days: int = criteo.REFERENCE_NUM_DAYS, rows_per_day: int = 2000,
         reference_shape: bool = False, vocab_cap: int = 100_000, seed: int = 0) -> dict:
    """Writes the click logs into out_dir, which must not hold files yet; returns the manifest."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise UserError(f"{out_dir} is not empty; delete it or pass another --out")
    if reference_shape:
        hotness = criteo.REFERENCE_HOTNESS
        vocab_sizes = tuple(min(size, vocab_cap) for size in criteo.REFERENCE_VOCAB_SIZES)
    else:
        hotness = planted_clicks.TINY["hotness"]
        vocab_sizes = planted_clicks.TINY["vocab_sizes"]
    return planted_clicks.write(out_dir, num_days=num_days, rows_per_day=rows_per_day,
                                vocab_sizes=vocab_sizes, hotness=hotness, seed=seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the day files into")
    parser.add_argument("--num_days", type=int, default=criteo.REFERENCE_NUM_DAYS,
                        help="days written; the last is split into validation and test")
    parser.add_argument("--rows_per_day", type=int, default=2000)
    parser.add_argument("--reference_shape", action="store_true",
                        help="the reference's hotness and (capped) vocabulary sizes")
    parser.add_argument("--vocab_cap", type=int, default=100_000,
                        help="largest vocabulary with --reference_shape (the real ones reach 40M)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(flagfile.expand(argv))
    start = time.perf_counter()
    try:
        manifest = make(args.out, num_days=args.num_days, rows_per_day=args.rows_per_day,
                        reference_shape=args.reference_shape, vocab_cap=args.vocab_cap,
                        seed=args.seed)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {manifest['num_days']} days x {manifest['rows_per_day']} rows "
          f"({sum(manifest['hotness'])} sparse ids a row, positive rate "
          f"{manifest['positive_rate']:.3f}, oracle val AUC {manifest['oracle_auc_val']:.4f}) in "
          f"{time.perf_counter() - start:.1f}s; use --data_dir {args.out}")


if __name__ == "__main__":
    main()
