"""Memory of one node running 1, 2 and 4 concurrent trials on a file-backed dSprites: the images are held once;
and the same for a full-size Shapes3D file, with the time its read takes.

A full-size file in the original format (737,280 images, 64x64, uint8) is
generated once from the procedural renderer into the temp folder (the real
file cannot be downloaded everywhere). Each measurement is a real sweep,
`python -m sweeper launch` on the embedded local Ray, with N seeds of one
configuration running at the same time (0.5 CPU each, so four fit on two
cores), training only (no evaluation), while a sampler reads the memory of
every process of the sweep's tree (driver, Ray's services and workers) twice
a second.

What is counted:
- node total: the sum of PSS (proportional set size) over the whole tree.
  A page shared by k processes counts 1/k in each, so the object store's
  shared memory, mapped by the raylet, the driver and every trial, is counted
  once. This is the memory the node actually uses for the sweep.
- trials, private: the sum of USS (pages only that process has) over the
  trial workers: what each trial adds.
- trials, RSS: the sum of RSS over the trial workers. RSS counts a shared page
  in every process that touched it, so this overstates; it is shown because it
  is what `top` shows.
Peaks are the largest value of each figure over the run's samples.

Shapes3D: a file in `3dshapes.h5`'s layout (480,000 images, 5.9 GB of pixels)
is written once into the temp folder, its images synthetic (a level per row
and channel), which is all a read and a memory measurement need. Its read is
timed in this process as the driver does it (`load_stored`), and its stored
bytes are compared with what the plan computes from the headers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from trainables.data import ProceduralDSprites, dsprites_file, load_stored, shapes3d, stored_bytes
from trainables.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]
FULL_SIZES = (1, 3, 6, 40, 32, 32)
QUICK_SIZES = (1, 3, 6, 40, 8, 8)
SHAPES3D_FULL = (10, 10, 10, 8, 4, 15)
SHAPES3D_QUICK = (10, 10, 10, 8, 1, 2)
MIB = 1 << 20
GIB = 1 << 30


def dataset_file(sizes: tuple[int, ...]) -> Path:
    """A file in the original dSprites format with the grid `sizes`, made once in the temp folder."""
    path = Path(tempfile.gettempdir()) / f"beta-sweeper-dsprites-{'x'.join(map(str, sizes))}.npz"
    if path.is_file():
        return path
    classes = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    images = np.empty((len(classes), 64, 64), dtype=np.uint8)
    renderer = ProceduralDSprites()
    for start in range(0, len(classes), 8192):
        rows = classes[start : start + 8192, 1:]
        images[start : start + len(rows)] = renderer.observations(rows)[:, 0].numpy()
    partial = path.with_suffix(".partial")
    dsprites_file.write(partial, images, classes, compress=False)
    os.replace(partial, path)
    return path


def shapes3d_file(sizes: tuple[int, ...]) -> Path:
    """A file in 3dshapes.h5's layout over the grid `sizes`, made once in the temp folder, a block at a time."""
    path = Path(tempfile.gettempdir()) / f"beta-sweeper-3dshapes-{'x'.join(map(str, sizes))}.h5"
    if path.is_file():
        return path
    count = int(np.prod(sizes))
    level = np.arange(3, dtype=np.int64) * 85 + np.arange(64)[:, None, None]  # (64, 1, 3): rows and channels differ
    partial = path.with_suffix(".partial")
    with h5py.File(partial, "w") as f:
        images = f.create_dataset("images", shape=(count, 64, 64, 3), dtype=np.uint8)
        for start in range(0, count, 8192):
            rows = np.arange(start, min(start + 8192, count))
            block = (rows[:, None, None, None] * 7 + level) % 256
            images[start : start + len(rows)] = np.broadcast_to(block, (len(rows), 64, 64, 3)).astype(np.uint8)
        f.create_dataset("labels", data=shapes3d.grid_labels(sizes))
    os.replace(partial, path)
    return path


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory(pid: int) -> dict[str, int] | None:
    """Rss, Pss and private (USS) bytes of a process from /proc/PID/smaps_rollup; None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    kib = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            kib[key] = int(value.split()[0]) * 1024
    return {"rss": kib.get("Rss", 0), "pss": kib.get("Pss", 0),
            "uss": kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)}


def _is_trial(pid: int) -> bool:
    try:
        return "ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return False


@dataclass
class Peaks:
    node_pss: float = 0.0
    node_pss_training: float = 0.0  # over the samples that saw a trial worker: after the driver's read and put
    trials_uss: float = 0.0
    trials_rss: float = 0.0
    trials_seen: int = 0  # most trial workers alive at one sample
    samples: int = 0

    def sample(self, root: int) -> None:
        node = uss = rss = 0.0
        trials = 0
        for pid in process_tree(root):
            info = memory(pid)
            if info is None:
                continue
            node += info["pss"]
            if _is_trial(pid):
                trials += 1
                uss += info["uss"]
                rss += info["rss"]
        self.node_pss = max(self.node_pss, node)
        if trials:
            self.node_pss_training = max(self.node_pss_training, node)
        self.trials_uss = max(self.trials_uss, uss)
        self.trials_rss = max(self.trials_rss, rss)
        self.trials_seen = max(self.trials_seen, trials)
        self.samples += 1


def measure(trials: int, data: list[str], steps: int) -> Peaks:
    """Peak memory of a sweep of `trials` concurrent trials (one configuration, `trials` seeds)."""
    args = [
        sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"), *data,
        "--set", f"search.seeds={trials}", "--set", "search.objectives.beta_vae.beta=[4.0]", "--set", f"search.max_concurrent={trials}",
        "--set", "resources.cpu=0.5", "--set", f"training.steps={steps}", "--set", "training.batch_size=32",
        "--set", f"training.report_every={steps}", "--set", f"training.checkpoint_every={steps}",
        "--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    peaks = Peaks()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        root = proc.pid
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                peaks.sample(root)
                time.sleep(0.5)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        out, _ = proc.communicate()
        stop.set()
        thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the measured sweep failed (exit {proc.returncode}):\n{out[-3000:]}")
    return peaks


def shapes3d_lines(quick: bool, steps: int) -> list[str]:
    """The Shapes3D paragraph: read time and bytes in this process, then node memory with 1 and 4 trials."""
    sizes = SHAPES3D_QUICK if quick else SHAPES3D_FULL
    path = shapes3d_file(sizes)
    settings = DataSettings(name="shapes3d", path=str(path))
    planned = stored_bytes(settings)
    start = time.perf_counter()
    stored = load_stored(settings)
    read_s = time.perf_counter() - start
    held, count = stored.nbytes, len(stored.pixels)
    del stored
    data = ["--set", "data.name=shapes3d", "--set", f"data.path={path}"]
    results = {}
    for n in (1, 4):
        print(f"bench: datasets: {n} trial(s) on the Shapes3D file", file=sys.stderr, flush=True)
        results[n] = measure(n, data, steps)
    rows = [
        f"| shapes3d | {n} | {p.trials_seen} | {p.node_pss / MIB:,.0f} | {p.node_pss_training / MIB:,.0f} | "
        f"{p.trials_uss / MIB:,.0f} | {p.trials_uss / max(p.trials_seen, 1) / MIB:,.0f} |"
        for n, p in results.items()
    ]
    one, four = results[1], results[4]
    return [
        "### A full-size Shapes3D file",
        "",
        f"A file in `3dshapes.h5`'s layout, {count:,} images{' (quick run: a smaller grid)' if quick else ''}, "
        f"written by the benchmark (synthetic images). The driver's read (`load_stored`: HDF5 in blocks, checked, "
        f"channels-first) took {read_s:,.1f} s on this shared machine; it holds {held / GIB:,.2f} GiB "
        f"({held:,} bytes), which the plan computes from the headers alone as {planned:,} bytes, and which "
        "Ray's object store holds once per node. The same sweeps as above, "
        f"{steps} steps of batch 32, no evaluation:",
        "",
        "| dataset | concurrent trials | trial workers seen | node (PSS) MiB, whole run | node (PSS) MiB while "
        "trials run | trials private (USS) MiB | private per trial MiB |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"With one trial the whole run's peak is {(one.node_pss - one.node_pss_training) / MIB:,.0f} MiB above "
        f"the peak while trials run ({(one.node_pss - one.node_pss_training) / held:.2f} times the images' "
        "bytes): that peak comes before any trial starts, while the driver holds the images it read and puts "
        "them into the object store, so the driver's node needs that much more for a moment. While trials run, "
        f"four trials take {four.node_pss_training / one.node_pss_training:.2f} times the node memory of one; "
        f"a copy of the images per trial would add {held / MIB:,.0f} MiB for each.",
    ]


def run(quick: bool) -> str:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    steps = 30 if quick else 100
    path = dataset_file(sizes)
    images = int(np.prod(sizes))
    packed_mib = images * 64 * 64 / 8 / MIB
    unpacked_mib = images * 64 * 64 / MIB
    file_data = ["--set", "data.name=dsprites_file", "--set", f"data.path={path}"]
    rows = []
    results = {}
    for n in (1, 2, 4):
        print(f"bench: datasets: {n} trial(s) on the file", file=sys.stderr, flush=True)
        results[("file", n)] = measure(n, file_data, steps)
    for n in (1, 4):
        print(f"bench: datasets: {n} trial(s) on the procedural dataset", file=sys.stderr, flush=True)
        results[("procedural", n)] = measure(n, [], steps)
    for (kind, n), p in results.items():
        rows.append(
            f"| {kind} | {n} | {p.trials_seen} | {p.node_pss / MIB:,.0f} | {p.trials_uss / MIB:,.0f} | "
            f"{p.trials_rss / MIB:,.0f} |"
        )
    one, four = results[("file", 1)], results[("file", 4)]
    extra = (four.node_pss - one.node_pss) / MIB / 3
    lines = [
        "## Datasets: memory of one node with a file-backed dataset",
        "",
        f"A file in the original dSprites format, {images:,} images ({unpacked_mib:,.0f} MiB of uint8 pixels; "
        f"{packed_mib:,.0f} MiB bit-packed), generated from the procedural renderer"
        f"{' (quick run: a smaller grid, not representative)' if quick else ''}. Each row is a real sweep on the "
        f"embedded local Ray: N seeds of one configuration at the same time (0.5 CPU each), {steps} training "
        "steps of batch 32, no evaluation. The driver reads the file once, packs it and puts it into Ray's "
        "object store; every trial reads it from there (zero-copy). Rows marked procedural need no file and "
        "show what the same sweep costs without one.",
        "",
        "Counted, peak over samples taken twice a second: *node* = PSS summed over every process of the "
        "sweep (driver, Ray services, workers), which counts shared memory, the object store included, once; "
        "*trials private* = USS summed over the trial workers (what trials hold alone); *trials RSS* = RSS "
        "summed over the trial workers, which counts the shared images once per trial that touched them and so "
        "overstates. The machine is shared: memory figures are meaningful, timings are not reported.",
        "",
        "| dataset | concurrent trials | trial workers seen | node (PSS) MiB | trials private (USS) MiB "
        "| trials RSS MiB |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Each trial beyond the first adds about {extra:,.0f} MiB to the node: its own process (Python, torch, "
        f"Ray, the model), not the images. Four trials peak at {four.node_pss / one.node_pss:.1f} times the "
        f"memory of one; a copy of the images per trial would add {packed_mib:,.0f} MiB (bit-packed) or "
        f"{unpacked_mib:,.0f} MiB (as uint8, as `np.load` returns them) for each trial.",
        "",
        *shapes3d_lines(quick, steps),
    ]
    return "\n".join(lines) + "\n"
