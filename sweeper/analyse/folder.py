"""An output folder a command owns: created by it (or empty), with a marker listing the files it wrote.

`sweeper report` and `sweeper study` write into a folder the user names. A
later run into the same folder deletes only the files the marker lists and
logs only what it writes itself, so nothing a user put there (a `.env`,
figures of their own) is ever uploaded to a run, where every reader of the
experiment could read it, or deleted. A folder that exists, is not empty and
holds no marker of the command was not made by it, and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from sweeper.errors import ConfigError

MAX_MARKER_BYTES = 1 << 20


def claim_folder(out: Path, marker_name: str, command: str) -> None:
    """Create `out`, or take back the folder of an earlier run of `command`: delete only the files it wrote."""
    marker = out / marker_name
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder")
    if out.is_dir() and not marker.is_file() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out}: the folder exists and was not made by `sweeper {command}` (no {marker_name}); "
            "give a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in _written_before(marker, command):
        (out / name).unlink(missing_ok=True)
    write_marker(out, marker_name, [])  # from now on the folder is the command's, even if it stops half-way


def _written_before(marker: Path, command: str) -> list[str]:
    """The file names an earlier run listed in its marker: plain names inside the folder only."""
    if not marker.is_file():
        return []
    try:
        if marker.stat().st_size > MAX_MARKER_BYTES:
            raise ValueError(f"larger than {MAX_MARKER_BYTES} bytes")
        names = json.loads(marker.read_text(encoding="utf-8"))["written"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'written' is not a list of file names")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{marker}: not a marker written by `sweeper {command}` ({exc})") from None
    bad = [n for n in names if Path(n).name != n or n in ("", ".", "..", marker.name)]
    if bad:
        raise ConfigError(f"{marker}: lists names that are not files of the folder: {bad[:3]}")
    return [n for n in names if (marker.parent / n).is_file() and not (marker.parent / n).is_symlink()]


def write_marker(out: Path, marker_name: str, written: list[Path]) -> None:
    (out / marker_name).write_text(json.dumps({"written": sorted(p.name for p in written)}) + "\n", encoding="utf-8")
