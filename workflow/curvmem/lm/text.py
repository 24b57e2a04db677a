"""Text sources of the LM arm: local files, URLs and hub datasets, all read through one `datasets` path.

A source is either a string, a local path or URL whose extension picks the `datasets` builder
(`.jsonl`/`.json` -> json, `.parquet` -> parquet, anything else -> text, one record per
blank-line-separated paragraph), or a mapping naming a hub dataset:

    {dataset: NeelNanda/pile-10k, split: train, revision: <commit>, column: text, max_documents: 2000}

Every source is streamed (`load_dataset(..., streaming=True)`): a hub dataset is read only as far as
`max_documents`, and nothing is cached. What was read is returned as a manifest (the dataset, its
files with their sha256 for local ones, the revision, documents and characters read) that lm_data
writes beside its artifacts, so a rebuild can be checked to read the same text. An unpinned hub
source records the commit it resolved to; pin `revision` to that commit to read it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..common import InputError, from_dict

log = logging.getLogger(__name__)

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # anything else: "text"
PACKAGED = {"json", "parquet", "text", "csv"}  # `datasets` builders of local files: no hub behind them


@dataclass
class TextSource:
    dataset: str = ""                  # hub id; "" for local files / URLs (the builder by extension)
    data_files: str | list[str] | None = None  # local paths or URLs; for a hub id, files inside it
    name: str | None = None            # the hub dataset's configuration
    split: str = "train"
    revision: str | None = None        # hub commit to read (None: the newest; the manifest records it)
    column: str = "text"               # the text column (json records may instead hold prefix + suffix)
    max_documents: int | None = None   # stop after this many records (a stream reads no further)


def as_source(spec: str | dict) -> TextSource:
    """A config value (a path / URL, or a mapping) as a TextSource."""
    if isinstance(spec, str):
        return TextSource(data_files=spec)
    return from_dict(TextSource, spec, "text source")


def local_text_files(spec: str | dict | None) -> list[str]:
    """The local files a text source reads (none for a hub dataset or URL: checked when streamed)."""
    if not spec or (isinstance(spec, dict) and spec.get("dataset") not in (None, "", *PACKAGED)):
        return []
    files = spec if isinstance(spec, str) else spec.get("data_files")
    return [f for f in ([files] if isinstance(files, str) else files or []) if not f.startswith(("http://", "https://"))]


def describe(spec: str | dict) -> str:
    source = as_source(spec)
    return source.dataset or (source.data_files if isinstance(source.data_files, str) else ", ".join(source.data_files))


def parse_records(raw: str, path: str) -> list[dict]:
    """Records of a JSONL file ({"text"} or {"prefix", "suffix"} per line, optional "source") or of
    plain text (one per blank-line-separated paragraph); a bad line is an InputError naming it."""
    if not path.endswith((".jsonl", ".json")):
        return [{"text": " ".join(p.split())} for p in raw.split("\n\n") if p.strip()]
    records = []
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}, line {i}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or ("text" not in record and not {"prefix", "suffix"} <= set(record)):
            raise InputError(f"{path}, line {i}: needs a 'text' key, or 'prefix' and 'suffix'")
        records.append(record)
    if not records:
        raise InputError(f"{path}: holds no records")
    return records


def _builder(source: TextSource) -> tuple[str, dict]:
    """The `load_dataset` path and keyword arguments of a source."""
    if source.dataset:
        kwargs = {"name": source.name, "revision": source.revision}
        if source.data_files:
            kwargs["data_files"] = source.data_files
        return source.dataset, kwargs
    files = [source.data_files] if isinstance(source.data_files, str) else list(source.data_files or [])
    if not files:
        raise InputError("a text source needs `dataset` or `data_files`")
    suffixes = {Path(f.split("?")[0]).suffix for f in files}
    builders = {BUILDERS.get(s, "text") for s in suffixes}
    if len(builders) > 1:
        raise InputError(f"text source {files}: mixes file types {sorted(suffixes)}")
    builder = builders.pop()
    return builder, {"data_files": files, **({"sample_by": "paragraph"} if builder == "text" else {})}


def _records(source: TextSource):
    """The source's records as dicts (None values dropped: json rows of mixed shapes carry them)."""
    import datasets

    path, kwargs = _builder(source)
    stream = datasets.load_dataset(path, split=source.split, streaming=True, **kwargs)
    for i, row in enumerate(stream):
        if source.max_documents is not None and i >= source.max_documents:
            break
        record = {k: v for k, v in row.items() if v is not None}
        if path == "text":  # paragraphs of plain text, whitespace collapsed
            record["text"] = " ".join(record["text"].split())
            if not record["text"]:
                continue
        elif source.column != "text" and source.column in record:
            record["text"] = record.pop(source.column)
        yield record


def _revision(source: TextSource) -> str | None:
    """The hub commit a source reads: its pinned revision, else the newest one (None offline)."""
    if not source.dataset or source.dataset in PACKAGED:
        return source.revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source.dataset, revision=source.revision).sha
    except Exception as err:  # offline, or a hub error: the manifest says so instead of guessing
        log.warning("%s: could not resolve the hub revision (%s)", source.dataset, type(err).__name__)
        return source.revision


def _local_files(source: TextSource) -> list[dict]:
    return [{"path": f, "sha256": hashlib.sha256(Path(f).read_bytes()).hexdigest()}
            for f in local_text_files(asdict(source)) if Path(f).is_file()]


def read(spec: str | dict, what: str) -> tuple[list[dict], dict]:
    """All records of a source and its manifest entry; `what` names it in messages (a config key)."""
    source = as_source(spec)
    for f in local_text_files(asdict(source)):  # local JSON lines: a bad line is named before streaming
        if f.endswith((".jsonl", ".json")) and Path(f).is_file():  # (as the pre-job check does)
            try:
                parse_records(Path(f).read_text(), f)
            except InputError as err:
                raise InputError(f"{what}: {err}") from None
    try:
        records = list(_records(source))
    except InputError:
        raise
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{what}: cannot read {describe(spec)} ({type(err).__name__}: {err})") from None
    bad = next((i for i, r in enumerate(records) if "text" not in r and not {"prefix", "suffix"} <= set(r)), None)
    if bad is not None:
        raise InputError(f"{what}: record {bad + 1} of {describe(spec)} needs a '{source.column}' field, "
                         f"or 'prefix' and 'suffix'")
    if not records:
        raise InputError(f"{what}: {describe(spec)} holds no records")
    manifest = {**{k: v for k, v in asdict(source).items() if v is not None}, "revision": _revision(source),
                "local_files": _local_files(source), "documents": len(records),
                "characters": sum(len(r.get("text") or r.get("prefix", "") + r.get("suffix", "")) for r in records)}
    log.info("%s: %d records, %d characters from %s", what, manifest["documents"], manifest["characters"],
             describe(spec))
    return records, manifest
