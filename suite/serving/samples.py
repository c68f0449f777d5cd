"""The query sample library's data: every eval sample, preprocessed once, on disk.

Written by the parent process as .npy files and memory-mapped by each scenario's process:
LoadGen asks for a few hundred or thousand samples at a time (LoadSamplesToRam), and the
whole ImageNet validation set would not fit in host memory as float32 images.
"""

import json
import os

import numpy as np

from common.errors import UserError

LABELS = "labels.npy"
INDEX = "samples.json"


def write(workload, cfg, data, directory: str) -> int:
    """Eval samples in eval order -> directory/<input>.npy and labels.npy; returns the count."""
    os.makedirs(directory, exist_ok=True)
    count = data.eval_examples
    files, labels, filled = {}, np.lib.format.open_memmap(
        os.path.join(directory, LABELS), "w+", np.int32, (count,)), 0
    for inputs, batch_labels in workload.serving_inputs(cfg, data):
        n = len(batch_labels)
        if filled + n > count:
            raise UserError(f"the eval split gave more than its {count} examples; prepare "
                            "the dataset again")
        for name, array in inputs.items():
            if name not in files:
                files[name] = np.lib.format.open_memmap(
                    os.path.join(directory, f"{name}.npy"), "w+", array.dtype,
                    (count, *array.shape[1:]))
            files[name][filled:filled + n] = array
        labels[filled:filled + n] = batch_labels
        filled += n
    if filled != count:
        raise UserError(f"the eval split gave {filled} of its {count} examples; prepare the "
                        "dataset again")
    for array in (*files.values(), labels):
        array.flush()
    with open(os.path.join(directory, INDEX), "w") as f:
        json.dump({"count": count, "inputs": sorted(files)}, f)
    return count


class Samples:
    """Memory-mapped samples: inputs[name][i] and labels[i] for sample index i."""

    def __init__(self, directory: str):
        with open(os.path.join(directory, INDEX)) as f:
            index = json.load(f)
        self.count = index["count"]
        self.inputs = {name: np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")
                       for name in index["inputs"]}
        self.labels = np.load(os.path.join(directory, LABELS))

    def take(self, indices) -> dict[str, np.ndarray]:
        return {name: np.asarray(a[np.asarray(indices)]) for name, a in self.inputs.items()}
