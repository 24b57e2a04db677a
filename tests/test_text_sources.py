"""Text sources (lm/text.py): every local format through `datasets`' streaming path gives the records
an independent reader gives, a hub-style mapping reads like a path, and the manifest is what was read."""
import hashlib
import json

import pandas as pd
import pytest

from curvmem.common import InputError
from curvmem.lm import text

RECORDS = [{"text": f"Document {i} says  something\nover two lines."} for i in range(7)]


def test_jsonl_parquet_and_text_read_as_their_own_readers_do(tmp_path):
    jsonl, parquet, plain = tmp_path / "a.jsonl", tmp_path / "a.parquet", tmp_path / "a.txt"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + '{"prefix": "To be", "suffix": " or not"}\n')
    pd.DataFrame(RECORDS).to_parquet(parquet)
    plain.write_text("\n\n".join(r["text"] for r in RECORDS) + "\n\n\n")

    reference_jsonl = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert text.read(str(jsonl), "k")[0] == reference_jsonl  # mixed shapes: no None-filled keys
    assert text.read(str(parquet), "k")[0] == pd.read_parquet(parquet).to_dict("records")
    paragraphs = [" ".join(p.split()) for p in plain.read_text().split("\n\n") if p.strip()]
    assert [r["text"] for r in text.read(str(plain), "k")[0]] == paragraphs


def test_a_mapping_reads_like_a_path_and_the_manifest_says_what_was_read(tmp_path):
    parquet = tmp_path / "docs.parquet"
    pd.DataFrame({"body": [r["text"] for r in RECORDS], "id": range(7)}).to_parquet(parquet)
    records, manifest = text.read({"data_files": str(parquet), "column": "body", "max_documents": 3}, "k")
    assert [r["text"] for r in records] == [r["text"] for r in RECORDS[:3]]
    assert manifest["documents"] == 3 and manifest["characters"] == sum(len(r["text"]) for r in RECORDS[:3])
    assert manifest["local_files"] == [{"path": str(parquet), "sha256": hashlib.sha256(parquet.read_bytes()).hexdigest()}]
    assert manifest["max_documents"] == 3 and manifest["split"] == "train"
    # a packaged builder named as `dataset` is the hub code path with local files
    same, _ = text.read({"dataset": "parquet", "data_files": str(parquet), "column": "body", "max_documents": 3}, "k")
    assert same == records


def test_bad_sources_name_the_key_and_the_problem(tmp_path):
    with pytest.raises(InputError, match=r"lm.files.clean: cannot read .*missing.jsonl"):
        text.read(str(tmp_path / "missing.jsonl"), "lm.files.clean")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "cut\n')
    with pytest.raises(InputError, match=r"lm.files.quotes: .*bad.jsonl, line 2: not valid JSON"):
        text.read(str(bad), "lm.files.quotes")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="mixes file types"):
        text.read({"data_files": [str(tmp_path / "a.parquet"), str(tmp_path / "a.txt")]}, "k")
    pd.DataFrame({"title": ["x"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(InputError, match=r"k: record 1 of .*t.parquet needs a 'text' field"):
        text.read(str(tmp_path / "t.parquet"), "k")


def test_local_text_files_are_what_the_fingerprint_digests():
    assert text.local_text_files("data/a.jsonl") == ["data/a.jsonl"]
    assert text.local_text_files({"data_files": ["x.parquet", "https://h/y.parquet"]}) == ["x.parquet"]
    assert text.local_text_files({"dataset": "NeelNanda/pile-10k"}) == []
    assert text.local_text_files({"dataset": "parquet", "data_files": "x.parquet"}) == ["x.parquet"]  # a builder
    assert text.local_text_files(None) == []
