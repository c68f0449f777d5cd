"""Workload registry: --workload=<name> or <module>:<Class> -> Workload instance.

Three sources, in this order: jaxperf's own workloads, workloads that installed packages
register under the `jaxperf.workloads` entry-point group (name = module:Class), and any
importable `module:Class`, so that a lab benchmarks its own model without forking.
"""

import importlib
from importlib import metadata

from common.errors import UserError
from suite.workload import Workload

ENTRY_POINTS = "jaxperf.workloads"


def _builtin() -> dict[str, type[Workload]]:
    # Imported here so that listing names does not need every model at import time.
    from suite.workloads.bert import BertWorkload
    from suite.workloads.dlrm import DLRMWorkload
    from suite.workloads.minigo import MiniGoWorkload
    from suite.workloads.resnet import ResNetWorkload
    from suite.workloads.rnnt import RNNTWorkload
    from suite.workloads.transformer import TransformerWorkload

    return {w.name: w for w in (ResNetWorkload, TransformerWorkload, BertWorkload,
                                  DLRMWorkload, RNNTWorkload, MiniGoWorkload)}


def _installed() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def names() -> list[str]:
    return sorted(set(_builtin()) | set(_installed()))


def _load(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"--workload={spec}: cannot import {module_name} ({e}); put it on "
                        "PYTHONPATH or install its package") from e
    if not hasattr(module, attr):
        raise UserError(f"--workload={spec}: {module_name} has no {attr!r}")
    return getattr(module, attr)


def get(name: str) -> Workload:
    builtin, installed = _builtin(), _installed()
    if name in builtin:
        cls = builtin[name]
    elif name in installed:
        cls = _load(installed[name].value)
    elif ":" in name:
        cls = _load(name)
    else:
        raise UserError(f"unknown workload {name!r}; choose one of: {', '.join(names())}, "
                        "or pass <module>:<Class>")
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise UserError(f"--workload={name} is not a suite.workload.Workload subclass")
    return cls()
