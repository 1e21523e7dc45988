"""Joining Ray, and what a cluster must offer before a sweep starts on it.

Each check fails in seconds with a message that says what to fix, instead of
Ray's long reconnect loop or a trial that dies hours later when its first
checkpoint lands on a disk the driver cannot read.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeper import object_store
from sweeper.console import byte_size
from sweeper.errors import EnvironmentProblem

PROBE_TIMEOUT_S = 120.0  # a node may need to start a worker process first


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast with a clear message instead of Ray's long reconnect loop."""
    if address == "auto":
        return
    try:  # urllib raises on an unclosed IPv6 bracket, and on a port that is not a number in 0..65535
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise EnvironmentProblem(f"Ray address {address!r}: expected host:port (or ray://host:port)")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EnvironmentProblem(f"Ray address {address!r} is unreachable: {exc}") from exc


def start_ray(address: str | None) -> bool:
    """Connect to `address`, or start the embedded local Ray; True if this process started it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - any failure to join is an environment problem
        raise EnvironmentProblem(f"cannot start or join Ray ({address or 'local'}): {exc}") from exc
    return address is None


@ray.remote(num_cpus=0)
def _sees(path: str) -> tuple[str, str | None]:
    return socket.gethostname(), None if os.path.exists(path) else "not there"


@ray.remote(num_cpus=0)
def _reads(uri: str) -> tuple[str, str | None]:
    return socket.gethostname(), object_store.read_error(uri)


def _nodes_that_fail(probe: Any, target: str) -> str:
    """Run `probe(target)` once on every alive node; "N of M nodes: ..." for those that answer with a
    problem, or an empty string."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    pinned = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(target)
        for node in nodes
    ]
    answers = ray.get(pinned, timeout=PROBE_TIMEOUT_S)
    failed = [
        f"{node['NodeManagerAddress']} ({host}, node {node['NodeID'][:12]}): {problem}"
        for node, (host, problem) in zip(nodes, answers, strict=True)
        if problem
    ]
    return f"{len(failed)} of {len(nodes)} Ray nodes: {'; '.join(failed)}" if failed else ""


def _multi_node() -> bool:
    return sum(node["Alive"] for node in ray.nodes()) > 1


def check_shared_storage(root: Path) -> None:
    """Refuse a storage folder that some node of the cluster cannot see.

    Ray writes each trial's checkpoints from the node that runs it into the
    sweep's storage path, and restores a failed trial on whichever node is
    free: on a multi-node cluster that path must be one filesystem mounted at
    the same place everywhere. A file written here is looked for from every
    alive node; a node that does not see it would lose its trials' checkpoints.
    """
    if not _multi_node():
        return
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".storage-probe-{secrets.token_hex(4)}"
    marker.write_text("written by the sweep driver; looked for from every Ray node\n")
    try:
        blind = _nodes_that_fail(_sees, str(marker))
    finally:
        marker.unlink()
    if blind:
        if created:
            root.rmdir()
        raise EnvironmentProblem(
            f"storage {str(root)!r} is not shared: these cannot see files the driver writes there: "
            f"{blind}. Trials checkpoint from the node they run on and are restored on any "
            "node, so a multi-node sweep needs `storage` on a filesystem mounted at the same path on every node "
            "(NFS, a ReadWriteMany volume; see deploy/README.md), or `checkpoints` in an object store."
        )


def check_object_store(uri: str) -> None:
    """Refuse checkpoints in an object store that the driver or some node cannot use.

    The driver writes a small object there (a wrong bucket, endpoint or
    credentials fails here, before anything is created) and every node reads
    it back with its own environment, as its trials will write checkpoints.
    """
    probe = object_store.write_probe(uri)
    try:
        blind = _nodes_that_fail(_reads, probe) if _multi_node() else ""
    finally:
        object_store.remove(probe)
    if blind:
        raise EnvironmentProblem(
            f"checkpoints {uri!r}: these cannot read what the driver wrote there: {blind}. "
            "Give every node the store's credentials and endpoint in its environment."
        )


def check_node_memory(need: int, dataset: str) -> None:
    """Refuse a Ray cluster with a node whose object store cannot hold the dataset, before it is read.

    The driver puts the dataset once into its own node's object store and every
    node running a trial pulls one copy into its own: each alive node must hold
    it whole. Ray gives a node's store a fixed size when the node starts (on the
    embedded local Ray, 30% of the memory then available), so the figure is
    known before a byte is read; a store too small would spill the dataset to
    disk or fail the put after minutes of reading.
    """
    if need == 0:
        return
    nodes = [node for node in ray.nodes() if node["Alive"]]
    small = [
        f"{node['NodeManagerAddress']} (node {node['NodeID'][:12]}): {byte_size(int(store))}"
        for node in nodes
        if (store := node["Resources"].get("object_store_memory", 0)) < need
    ]
    if small:
        raise EnvironmentProblem(
            f"{dataset} takes {byte_size(need)} ({need:,} bytes) of Ray's object store on every node, and "
            f"{len(small)} of {len(nodes)} Ray nodes have a smaller one: {'; '.join(small)}. Start those nodes "
            "with a larger store (`ray start --object-store-memory=BYTES`), or on this machine free memory "
            "(the embedded Ray's store is 30% of the memory available when it starts)."
        )
