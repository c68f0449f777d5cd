"""Workload registry: --workload=<name> -> Workload instance."""

from suite.errors import UserError
from suite.workload import Workload


def _workloads() -> dict[str, type[Workload]]:
    # Imported here so that listing names does not need every model at import time.
    from suite.workloads.bert import BertWorkload
    from suite.workloads.dlrm import DLRMWorkload
    from suite.workloads.resnet import ResNetWorkload
    from suite.workloads.transformer import TransformerWorkload

    return {w.name: w for w in (ResNetWorkload, TransformerWorkload, BertWorkload,
                                  DLRMWorkload)}


def names() -> list[str]:
    return sorted(_workloads())


def get(name: str) -> Workload:
    workloads = _workloads()
    if name not in workloads:
        raise UserError(
            f"unknown workload {name!r}; choose one of: {', '.join(sorted(workloads))}"
        )
    return workloads[name]()
