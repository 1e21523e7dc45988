"""What the reader tests share: Pillow's Lanczos resize worked out independently, an allocation bound, and\nnpz files cut short."""

from __future__ import annotations

import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


def lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a Lanczos-3 reduction as Pillow defines it: the kernel stretched by the
    reduction factor, centred on each output pixel's centre, taps normalised to sum to one."""
    scale = n_in / n_out
    support = 3 * scale
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        x = (np.arange(low, high) - centre + 0.5) / scale
        taps = np.sinc(x) * np.sinc(x / 3) * (np.abs(x) < 3)
        weights[i, low:high] = taps / taps.sum()
    return weights


@pytest.fixture(scope="session")
def lanczos() -> Callable[[np.ndarray], np.ndarray]:
    """An (H, W) image resized to 64 x 64 in floating point, unrounded."""

    def resize(image: np.ndarray) -> np.ndarray:
        rows, cols = lanczos_matrix(image.shape[0], 64), lanczos_matrix(image.shape[1], 64)
        return rows @ image.astype(np.float64) @ cols.T

    return resize


@pytest.fixture
def allocates_at_most() -> Callable[[int], object]:
    """A context that fails if Python and numpy allocate more than `limit` bytes at once inside it."""

    @contextmanager
    def bound(limit: int) -> Iterator[None]:
        tracemalloc.start()
        try:
            yield
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak <= limit, f"{peak:,} bytes allocated, more than {limit:,}"

    return bound


@pytest.fixture(scope="session")
def cut_member() -> Callable[[Path, Path, str, int], Path]:
    """A copy of an .npz whose member `key` lost its last `drop` bytes, the archive itself intact."""

    def cut(source: Path, target: Path, key: str, drop: int) -> Path:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                dst.writestr(item, data[:-drop] if item.filename == f"{key}.npy" else data)
        return target

    return cut
