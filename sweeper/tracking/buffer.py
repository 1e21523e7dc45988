"""Writes to MLflow that outlive a tracking-server outage: queued in order, retried, never dropped.

Every write of a sweep (a trial's run, its status, a report's metrics, a tag,
the end of a run) becomes one operation in a single queue, applied in order.
A write the server cannot take now (connection refused, timeout, HTTP 5xx,
authentication) stays at the head of the queue, and the queue is tried again
on a later event, at most every RETRY_EVERY_S seconds: the Tune event loop is
never held up by MLflow's own retries with backoff, only by one request with
a short timeout. A buffer may hold its writes `hold_s` before writing them,
so that a run's reports of that time go out as one request. While anything
is pending (held, or kept through an outage) the queue is mirrored in
`tracking-pending.jsonl` in the sweep folder, so a driver that dies mid-outage
or a server that never comes back loses nothing: `sweeper resume` reads the
file and writes it.

A write the server rejects for good (an invalid value, say) cannot succeed by
waiting: it goes to `tracking-rejected.jsonl` with the server's reason and the
queue moves on.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeper.uris import redact

PENDING_FILE = "tracking-pending.jsonl"
REJECTED_FILE = "tracking-rejected.jsonl"
PARENT = "parent"  # the run key of the sweep's parent run; any other key is a Ray trial id
RETRY_EVERY_S = 5.0
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
# Per request while writing: no MLflow retries with backoff (minutes with the defaults), a short timeout.
FAST_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# Errors that waiting cannot fix: the write itself is wrong.
PERMANENT_ERRORS = {
    "INVALID_PARAMETER_VALUE",
    "BAD_REQUEST",
    "INVALID_STATE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "MALFORMED_REQUEST",
}


@contextmanager
def fail_fast_http() -> Iterator[None]:
    """One try per request with a short timeout, for this process's MLflow client."""
    saved = {k: os.environ.get(k) for k in FAST_HTTP_ENV}
    os.environ.update(FAST_HTTP_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Store(Protocol):
    """What the buffer needs of `SweepTracking`."""

    tracking_uri: str
    parent_run_id: str

    @property
    def client(self) -> MlflowClient: ...

    def find_trial_run(self, trial_id: str) -> str | None: ...

    def create_trial_run(self, name: str, tags: dict[str, str]) -> str: ...


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, MlflowException) and exc.error_code in PERMANENT_ERRORS


def short_reason(exc: BaseException) -> str:
    """One readable line for a failed request (MLflow's messages are long and nested)."""
    text = str(exc)
    status = re.search(r"error code (\d{3})", text) or re.search(r"\b(\d{3}) (?:Server|Client) Error", text)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("timeout", "timed out"),
        ("Name or service not known", "host not found"),
        ("RemoteDisconnected", "connection closed by the server"),
        ("Connection reset", "connection reset"),
    ):
        if needle in text:
            return reason
    if status:
        return f"HTTP {status.group(1)}"
    if isinstance(exc, MlflowException) and exc.error_code not in ("INTERNAL_ERROR", None):
        return f"{exc.error_code}: {text.strip().splitlines()[0][:160]}" if text.strip() else exc.error_code
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


class TrackingBuffer:
    """An ordered queue of MLflow writes, flushed as far as the server takes them."""

    def __init__(
        self, store: Store, folder: Path | None, echo: Callable[[str], None] = print, hold_s: float = 0.0
    ) -> None:
        self.store = store
        self.folder = folder
        self.echo = echo
        self.hold_s = hold_s
        self._oldest_at = 0.0  # when the queue's oldest write was queued, or the last flush that wrote
        self._queue: deque[dict[str, Any]] = deque()
        self._seq = 0
        self._file_seqs: tuple[int, int] | None = None  # first and last seq the pending file holds
        self._run_ids: dict[str, str] = {}
        self._logged_step: dict[str, int] = {}  # the last step MLflow holds, per run key
        self._down_since: float | None = None
        self._next_try = 0.0
        self._flushed_in_outage = 0
        self.written = 0
        self.rejected = 0

    # -- the queue ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def pending_file(self) -> Path | None:
        return self.folder / PENDING_FILE if self.folder is not None else None

    def ops(self) -> list[dict[str, Any]]:
        return list(self._queue)

    def add(self, op: str, run: str, **fields: Any) -> None:
        if not self._queue:
            self._oldest_at = time.monotonic()
        self._seq += 1
        self._queue.append({"seq": self._seq, "op": op, "run": run, **fields})

    def load(self) -> list[dict[str, Any]]:
        """Queue what an earlier process left pending (before anything new); returns those operations."""
        path = self.pending_file
        if path is None or not path.is_file():
            return []
        loaded = []
        for line in path.read_text().splitlines():
            try:
                loaded.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash while it was written: its event comes again
        if not loaded:
            return []
        offset = self._seq
        for number, op in enumerate(loaded, start=1):
            op["seq"] = offset + number
        self._queue.extendleft(reversed(loaded))
        self._seq = max(op["seq"] for op in self._queue)
        self._file_seqs = None
        self._sync_file(rewrite=True)
        return loaded

    # -- writing -----------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Write the queue as far as the server takes it; True when nothing is left.

        Without `force`, writes wait until the oldest has been queued `hold_s`, and a server that
        failed recently is not tried again before RETRY_EVERY_S; the pending file holds them meanwhile.
        """
        now = time.monotonic()
        if self._queue and (force or (now >= self._next_try and now - self._oldest_at >= self.hold_s)):
            with fail_fast_http():
                while self._queue and self._write_pass():
                    pass
            if not self._queue:
                self._came_back()
        self._sync_file()
        return not self._queue

    def _write_pass(self) -> bool:
        """One request per group of the queue, in order; True when another pass has writes to make now
        (a rejected write held its run's later writes back), False when done or the server went down."""
        written: set[int] = set()
        held: set[str] = set()  # runs with a write left for the next pass: their later ones wait too
        down = False
        for group in self._groups():
            if group[0]["run"] in held:
                continue
            try:
                self._apply_group(group)
            except Exception as exc:  # noqa: BLE001 - whatever the cause, the writes are kept
                if not is_permanent(exc):
                    self._went_down(exc)
                    down = True
                    break
                if len(group) > 1:
                    # Find the write the server refuses: the first one alone, the rest on the next pass.
                    group = group[:1]
                    held.add(group[0]["run"])
                    try:
                        self._apply_group(group)
                    except Exception as single:  # noqa: BLE001
                        if not is_permanent(single):
                            self._went_down(single)
                            down = True
                            break
                        self._reject(group[0], single)
                else:
                    self._reject(group[0], exc)
            written.update(op["seq"] for op in group)
        self._remove(written)
        return bool(held) and not down

    def _groups(self) -> list[list[dict[str, Any]]]:
        """The queue as requests, in the order of their first write: each run's reports that follow
        each other in its own order, up to MAX_BATCH values, are one request.

        Only a run's own order matters, so the writes of other runs in between do not split its reports;
        its next write of another kind does. One pass over the queue, however many runs it holds.
        """
        groups: list[list[dict[str, Any]]] = []
        open_group: dict[str, tuple[list[dict[str, Any]], int]] = {}  # run -> its reports' group, values in it
        for op in self._queue:
            run = op["run"]
            if op["op"] != "metrics":
                open_group.pop(run, None)
                groups.append([op])
                continue
            group, size = open_group.get(run, (None, 0))
            if group is None or size + len(op["metrics"]) > MAX_BATCH:
                group, size = [], 0
                groups.append(group)
            group.append(op)
            open_group[run] = (group, size + len(op["metrics"]))
        return groups

    def _remove(self, written: set[int]) -> None:
        if not written:
            return
        self._queue = deque(op for op in self._queue if op["seq"] not in written)
        self.written += len(written)
        if self._down_since is not None:
            self._flushed_in_outage += len(written)
        self._oldest_at = time.monotonic()

    def _apply_group(self, group: list[dict[str, Any]]) -> None:
        if len(group) == 1:
            self._apply(group[0])
            return
        key = group[0]["run"]
        run_id = self._run_id(group[0])
        new = [op for op in group if op["step"] > self._logged_step[key]]
        tags: dict[str, str] = {}
        for op in group:  # a report MLflow holds already may carry the placement the later ones leave out
            tags.update(op["tags"])
        if not new and not tags:
            return
        metrics = [Metric(k, v, ts, step) for op in new for k, v, ts, step in op["metrics"]]
        self.store.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        if new:
            self._logged_step[key] = max(op["step"] for op in new)

    def drain(self, wait_s: float, every_s: float = 2.0) -> bool:
        """Flush, retrying until the queue is empty or `wait_s` has passed; True when all is written."""
        deadline = time.monotonic() + wait_s
        while not self.flush(force=True):
            if time.monotonic() + every_s > deadline:
                return False
            time.sleep(every_s)
        return True

    def _went_down(self, exc: BaseException) -> None:
        self._next_try = time.monotonic() + RETRY_EVERY_S
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._flushed_in_outage = 0
            self.echo(
                f"tracking: MLflow at {redact(self.store.tracking_uri)} is not taking writes ({short_reason(exc)}); "
                f"training goes on, its tracking is kept and retried every {RETRY_EVERY_S:g} s"
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            seconds = time.monotonic() - self._down_since
            self.echo(
                f"tracking: MLflow at {redact(self.store.tracking_uri)} is back after {seconds:.0f} s; "
                f"{self._flushed_in_outage} kept writes flushed"
            )
            self._down_since = None

    def _reject(self, op: dict[str, Any], exc: BaseException) -> None:
        self.rejected += 1
        reason = short_reason(exc)
        self.echo(f"tracking: MLflow rejected a write ({op['op']} of run {op['run']}): {reason}")
        if self.folder is not None:
            with (self.folder / REJECTED_FILE).open("a") as out:
                out.write(json.dumps({**op, "error": str(exc)[:2000]}) + "\n")

    def _sync_file(self, rewrite: bool = False) -> None:
        """The pending file holds exactly the queue: appended while it grows, rewritten once written from."""
        path = self.pending_file
        if path is None:
            return
        if not self._queue:
            if self._file_seqs is not None or path.exists():
                path.unlink(missing_ok=True)
            self._file_seqs = None
            return
        first, last = self._queue[0]["seq"], self._queue[-1]["seq"]
        if rewrite or self._file_seqs is None or self._file_seqs[0] < first:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(json.dumps(op) + "\n" for op in self._queue))
            os.replace(tmp, path)
        elif self._file_seqs[1] < last:
            with path.open("a") as out:
                out.write("".join(json.dumps(op) + "\n" for op in self._queue if op["seq"] > self._file_seqs[1]))
        self._file_seqs = (first, last)

    # -- one operation -----------------------------------------------------------------------
    def _run_id(self, op: dict[str, Any]) -> str:
        key = op["run"]
        if key not in self._run_ids:
            if key == PARENT:
                run_id = self.store.parent_run_id
            else:
                run_id = self.store.find_trial_run(key)
                if run_id is None:
                    if op["op"] != "open":
                        raise MlflowException(f"no MLflow run for trial {key}", error_code="RESOURCE_DOES_NOT_EXIST")
                    run_id = self.store.create_trial_run(op["name"], op["tags"])
            logged = self.store.client.get_run(run_id).data.metrics.get("step")
            self._run_ids[key] = run_id
            self._logged_step[key] = int(logged) if logged is not None else -1
        return self._run_ids[key]

    def _apply(self, op: dict[str, Any]) -> None:
        run_id = self._run_id(op)
        client = self.store.client
        kind = op["op"]
        if kind == "open":
            return
        if kind == "status":
            client.update_run(run_id, status=op["status"])
        elif kind == "tag":
            client.set_tag(run_id, op["key"], op["value"])
        elif kind == "terminate":
            client.set_terminated(run_id, op["status"])
        elif kind == "metrics":
            # A trial resumed from a checkpoint reports again steps MLflow already holds.
            if op["step"] <= self._logged_step[op["run"]]:
                if op["tags"]:  # the placement, which the later reports leave out while it is the same
                    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
                return
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in op["metrics"]]
            tags = [RunTag(k, v) for k, v in op["tags"].items()]
            done = op.get("done", 0)  # batches of this report already written, if it needs several
            for start in range(done * MAX_BATCH, len(metrics), MAX_BATCH):
                client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH], tags=tags if start == 0 else [])
                op["done"] = start // MAX_BATCH + 1
            self._logged_step[op["run"]] = op["step"]
        elif kind == "params":
            items = [Param(k, v) for k, v in op["params"].items()]
            for start in range(0, len(items), 100):
                client.log_batch(run_id, params=items[start : start + 100])
        else:
            raise MlflowException(f"unknown tracking operation {kind!r}", error_code="BAD_REQUEST")

