"""A file-backed dataset read once by the driver and put once into Ray's object store for the trials.

The driver reads and checks the file (`trainables.data.load_stored`: keys,
shapes, dtypes, factor grid, pixel values) before any trial starts, so a bad
file is a ConfigError naming the file, not a failure in every trial. The
packed images then go to the object store with `tune.with_parameters`: one
`ray.put`, after which the driver drops its own copy. Every trial on a node
gets the same shared-memory object (a trial on another node pulls one copy
to its node's store), and numpy arrays come back from `ray.get` as zero-copy
read-only views, so four concurrent trials hold the images once, not four
times. `node_bytes` says, from the file's headers alone, how much that is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import tune

from sweeper.config import SweepConfig
from sweeper.console import byte_size
from sweeper.errors import ConfigError
from trainables.data import DataError, load_stored, make_dataset, stored_bytes, unsupported_metrics


def with_dataset(trainable: Callable[..., Any], config: SweepConfig) -> Callable[..., Any]:
    """`trainable` with the sweep's dataset file passed as `stored=`, or unchanged for a procedural dataset."""
    try:
        stored = load_stored(config.data)
        if stored is None:
            return trainable
        problem = unsupported_metrics(make_dataset(config.data, "cpu", stored), config.eval.metrics)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None
    if problem:
        raise ConfigError(f"eval.metrics: {problem}")
    return tune.with_parameters(trainable, stored=stored)


def node_bytes(config: SweepConfig) -> int:
    """Bytes of the sweep's dataset that every node running its trials holds in Ray's object store, from
    the file's headers alone (0 for procedural dSprites): what a node needs free before a trial starts."""
    try:
        return stored_bytes(config.data)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None


def dataset_name(config: SweepConfig) -> str:
    """The dataset as messages name it: its kind and, for a file, where it is."""
    data = config.data
    return f"the dataset {data.name}" + (f" ({data.path})" if data.path else "")


def memory_line(config: SweepConfig) -> str:
    """The plan's line on what the dataset takes per node, which `launch` checks every node against."""
    need = node_bytes(config)
    if need == 0:
        return "dataset: rendered in each trial (procedural dSprites); nothing in Ray's object store"
    # The driver holds what it read until the put has copied it (docs/benchmarks.md, section 'datasets').
    return (
        f"dataset: {byte_size(need)} ({need:,} bytes) in Ray's object store on each node; "
        "a node with a smaller store is refused before any trial starts; "
        "the driver's machine holds it twice while it puts it there"
    )
