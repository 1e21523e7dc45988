"""An object store (S3, GCS, Azure) as the home of a sweep's checkpoints, through pyarrow.fs.

pyarrow is what Ray Tune itself writes checkpoints with, so a URI that works
here works for the trials; credentials and endpoints come from the
provider's usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL,
GOOGLE_APPLICATION_CREDENTIALS, ...), never from the config.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs

from sweeper.errors import EnvironmentProblem


def resolve(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and the path inside it of `uri`."""
    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise EnvironmentProblem(f"checkpoints {uri!r}: {exc}") from None


def uri_of(filesystem: pyarrow.fs.FileSystem, path: str) -> str:
    """A path Ray reports with its filesystem, as a URI another process can open (plain for a local path)."""
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return path
    return f"{filesystem.type_name}://{path}"


def write_probe(uri: str) -> str:
    """Write a small object under `uri` from here; its URI. Fails with the store's own reason."""
    filesystem, root = resolve(uri)
    name = f".storage-probe-{secrets.token_hex(4)}"
    try:
        with filesystem.open_output_stream(f"{root}/{name}") as out:
            out.write(b"written by the sweep driver; read back from every Ray node\n")
    except OSError as exc:
        raise EnvironmentProblem(
            f"checkpoints {uri!r}: cannot write there from the driver ({exc}). Check the bucket name and the "
            "provider's credentials and endpoint in the environment (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for a store other than AWS)."
        ) from None
    return f"{uri}/{name}"


def read_error(uri: str) -> str | None:
    """Why the object at `uri` cannot be read from this process, or None if it can."""
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            stream.read()
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def remove(uri: str) -> None:
    """Delete one object; a probe left behind is harmless, so a failure here is not an error."""
    filesystem, path = resolve(uri)
    with contextlib.suppress(OSError):
        filesystem.delete_file(path)


@contextmanager
def local_folder(checkpoint: str) -> Iterator[Path]:
    """A checkpoint as a folder on this machine: a local path as it is, an object-store URI
    downloaded into a temporary folder that is removed afterwards (empty if nothing is there)."""
    if "://" not in checkpoint:
        yield Path(checkpoint)
        return
    filesystem, path = resolve(checkpoint)
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as folder:
        try:
            if filesystem.get_file_info(path).type == pyarrow.fs.FileType.Directory:
                pyarrow.fs.copy_files(
                    path, folder, source_filesystem=filesystem, destination_filesystem=pyarrow.fs.LocalFileSystem()
                )
        except OSError as exc:
            raise EnvironmentProblem(f"cannot download checkpoint {checkpoint}: {exc}") from None
        yield Path(folder)
