"""Artifact I/O: atomic writes and loaders that name the file and the rule that makes it.

Every artifact is written under a temporary name in the same directory and renamed when
complete, so a killed job never leaves a file that a rerun would accept. Only safetensors,
JSON and Parquet are read: nothing a user pulled is ever unpickled.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .common import crash_point

# Which rule makes which artifact, so a corrupt file can be traced to the job to rerun.
# Keys are file-name suffixes; the first match wins.
_MAKERS = {
    "corruption.json": "corrupt_labels",
    "model.safetensors": "train_vit",
    "train_metrics.json": "train_vit",
    "factors.safetensors": "vit_factors",
    "basis.safetensors": "vit_basis",
    "spectra.parquet": "vit_basis",
    "activation_ratio.parquet": "vit_activation_ratio",
}
_LM_MAKERS = {  # files under results/lm/ and data/lm/
    "train_docs.parquet": "lm_data", "candidates.parquet": "lm_data", "clean.parquet": "lm_data",
    "tasks.parquet": "lm_data", "model.safetensors": "lm_train", "train_metrics.json": "lm_train",
    "sets.parquet": "lm_sets", "factors.safetensors": "lm_factors", "basis.safetensors": "lm_basis",
    "spectra.parquet": "lm_basis", "reference_top10.safetensors": "lm_baseline",
    "activation_ratio.parquet": "lm_activation_ratio",
}


_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtifactError(RuntimeError):
    """A missing, truncated or corrupt artifact."""


def _maker(path: Path) -> str:
    if "lm" in path.parts:
        if "pretrained" in path.parts:
            return "lm_import"
        return next((rule for suffix, rule in _LM_MAKERS.items() if path.name.endswith(suffix)), "the rule that writes it")
    for suffix, rule in _MAKERS.items():
        if path.name.endswith(suffix):
            return rule
    if path.parent.name in ("train", "val") or path.name in ("train.safetensors", "val.safetensors"):
        return "prepare_vision_data"
    return "the rule that writes it"


def _fail(path: Path, why: str) -> ArtifactError:
    return ArtifactError(
        f"{path}: {why}; delete it and rerun snakemake to rebuild it (made by rule {_maker(path)})"
    )


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
    import shutil

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


def save_tensors(tensors: dict[str, torch.Tensor], path, metadata: dict | None = None) -> None:
    """Save tensors as safetensors; metadata values are JSON-encoded strings."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_tensors(path, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise _fail(path, "missing")
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(path, f"not a readable safetensors file ({err})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise _fail(path, f"tensor {name!r} holds NaN or inf")
    return tensors


def load_metadata(path) -> dict:
    """The JSON-decoded metadata of a safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(path, f"not a readable safetensors file ({err})") from None
    return {k: json.loads(v) for k, v in meta.items()}


def safetensors_keys(path) -> list[str]:
    """Tensor names of a safetensors file, reading only its header (any writer's metadata)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(path, f"not a readable safetensors file ({err})") from None


def save_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def load_json(path):
    path = Path(path)
    if not path.exists():
        raise _fail(path, "missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None


def save_parquet(frame, path, metadata: dict | None = None) -> None:
    """Parquet with optional JSON metadata stored in the file's schema (key b"curvmem")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"curvmem": json.dumps(metadata)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_parquet_metadata(path) -> dict:
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise _fail(path, f"not a readable Parquet file ({err})") from None
    if b"curvmem" not in meta:
        raise _fail(path, "has no curvmem metadata")
    return json.loads(meta[b"curvmem"])


def load_parquet(path):
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise _fail(path, "missing")
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise _fail(path, f"not a readable Parquet file ({err})") from None


def save_csv(frame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4g")
