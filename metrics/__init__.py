"""Quality metrics of the benchmarks, cross-checked in tests against scikit-learn and sacrebleu."""
