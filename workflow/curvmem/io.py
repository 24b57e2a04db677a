"""Artifact I/O: atomic writes, deterministic bytes, and loaders whose errors name the file, the
rule that makes it and what to do.

Every artifact is written under a temporary name in the same directory and renamed when
complete, so a killed job never leaves a file that a rerun would accept. Only safetensors,
JSON and Parquet are read: nothing a user pulled is ever unpickled. Metadata goes into one
sorted JSON string per file, so rebuilding an artifact from the same inputs gives the same bytes.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors import SafetensorError, safe_open

from .artifacts import maker
from .common import crash_point

META_KEY = "curvmem"  # the one metadata entry of our safetensors and Parquet files

_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtifactError(RuntimeError):
    """A missing, truncated, corrupt or mismatched artifact."""


def artifact_error(path, why: str) -> ArtifactError:
    """One line: the file, what is wrong, the rule that makes it and how to rebuild it."""
    path = Path(path)
    rule = maker(path)
    if rule is None:
        return ArtifactError(f"{path}: {why}")
    target = path
    while target.parent != target and maker(target.parent) == rule:  # a file inside a model directory
        target = target.parent
    return ArtifactError(f"{path}: {why} (made by rule {rule}); delete {target} and rerun "
                         f"`snakemake --cores all results/figures` to rebuild it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed earlier attempt
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        crash_point(f"write:{path.name}")  # the failure tests kill the job here: complete temp file, no rename
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmpdir"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    try:
        yield tmp
        crash_point(f"write:{path.name}")
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _meta_json(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"))


def save_tensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """Save torch tensors as safetensors with the metadata as one sorted JSON string."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: _meta_json(metadata or {})})


def load_tensors(path, device: str = "cpu") -> dict:
    """Torch tensors of a safetensors file; NaN or inf anywhere is an error."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise artifact_error(path, "missing")
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise artifact_error(path, f"not a readable safetensors file ({err})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise artifact_error(path, f"tensor {name!r} holds NaN or inf")
    return tensors


def load_metadata(path) -> dict:
    """The metadata a curvmem job wrote into a safetensors file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise artifact_error(path, f"not a readable safetensors file ({err})") from None
    if META_KEY not in meta:
        raise artifact_error(path, "has no curvmem metadata (not written by this pipeline)")
    return json.loads(meta[META_KEY])


def safetensors_keys(path) -> list[str]:
    """Tensor names of a safetensors file, reading only its header (any writer's file)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise artifact_error(path, f"not a readable safetensors file ({err})") from None


def save_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def load_json(path):
    path = Path(path)
    if not path.exists():
        raise artifact_error(path, "missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise artifact_error(path, f"not valid JSON ({err})") from None


def save_parquet(frame, path, metadata: dict | None = None) -> None:
    """Parquet with optional JSON metadata in the file's schema (key b"curvmem")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY.encode(): _meta_json(metadata)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_parquet_metadata(path) -> dict:
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise artifact_error(path, f"not a readable Parquet file ({err})") from None
    if META_KEY.encode() not in meta:
        raise artifact_error(path, "has no curvmem metadata (not written by this pipeline)")
    return json.loads(meta[META_KEY.encode()])


def load_parquet(path, columns: list[str] | None = None):
    """A Parquet table; `columns` that must be present (an error names the missing ones)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise artifact_error(path, "missing")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise artifact_error(path, f"not a readable Parquet file ({err})") from None
    missing = [c for c in columns or [] if c not in frame.columns]
    if missing:
        raise artifact_error(path, f"lacks column(s) {missing}")
    return frame


def save_csv(frame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4g")


def check_model_dir(path) -> None:
    """A saved model directory is complete: config.json and readable safetensors headers."""
    path = Path(path)
    weights = sorted(path.glob("*.safetensors"))
    if not (path / "config.json").exists() or not weights:
        raise artifact_error(path, "not a complete model directory (config.json + safetensors weights)")
    for w in weights:
        safetensors_keys(w)  # header only: a 7B model is not read into memory


def check_loadable(path) -> None:
    """Open an artifact the way the pipeline does; raises ArtifactError naming the file."""
    path = Path(path)
    if path.is_dir():
        check_model_dir(path)
    elif path.suffix == ".safetensors":
        load_metadata(path)
        load_tensors(path)
    elif path.suffix == ".json":
        load_json(path)
    elif path.suffix == ".parquet":
        load_parquet(path)
    elif not path.exists():
        raise artifact_error(path, "missing")
