"""The flags that describe the submitter and the system in a package, shared by
`suite.main` (training packages) and `suite.infer` (inference packages)."""

from absl import flags

SUBMISSION_ORG = flags.DEFINE_string(
    "submission_org", "jaxperf", "The submitter: MLPerf submission_org and the package's org "
    "directory.")
SYSTEM_NAME = flags.DEFINE_string(
    "system_name", None, "Package system name (default: detected from the devices, e.g. "
    "8xNVIDIA_H200 or 1xcpu).")
SYSTEM = flags.DEFINE_multi_string(
    "system", [], "Override a detected system-description field: --system=field=value "
    "(repeatable), e.g. --system=host_processor_model_name='AMD EPYC 9654'.")
