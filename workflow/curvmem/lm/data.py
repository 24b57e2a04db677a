"""Text artifacts of the LM arm, written by one rule (lm_data) at every scale.

- `train_docs.parquet`  (text, family): the training stream (from-scratch or continued training);
- `candidates.parquet`  (set, text, prefix, suffix, source): memorized-set candidates, sets
  memorized_train / memorized_val / quotes; verified against the model later (lm_sets);
- `clean.parquet`       (split, text): `factors` (K-FAC text, training distribution) and `perplexity`
  (held out, never trained on);
- `tasks.parquet`       (family, prompt, answer, bucket, chance): the downstream suite, few-shot
  prompts already assembled.

The miniature world (lm/world.py) provides everything at the default scale. At paper scale the
memorized windows, quotes and clean text come from files (JSONL or plain text) and the world only
generates the task families that need no training (arithmetic, open-book QA, logic).
"""
from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..common import InputError
from . import SETS
from .world import WorldConfig, build_world

log = logging.getLogger(__name__)


@dataclass
class FilesConfig:
    """Paper scale: memorized windows, quotes and clean text from files (JSONL or plain text) or URLs."""

    memorized: str | None = ""     # None: mined from a text source instead (lm.mine)
    quotes: str = ""
    clean: str = ""
    factor_share: float = 0.9      # documents for the factors; the rest is held out for perplexity


@dataclass
class DataStage:
    world: WorldConfig = field(default_factory=WorldConfig)
    files: FilesConfig | None = None
    few_shot: int = 0              # solved examples prepended to every task prompt


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


def read_records(path: str) -> list[dict]:
    """The records of a local file or URL (paper scale only; default and test are offline)."""
    if path.startswith(("http://", "https://")):
        with urllib.request.urlopen(path) as response:
            return parse_records(response.read().decode(), path)
    return parse_records(Path(path).read_text(), path)


def _candidates(set_name: str, records: list[dict], source: str) -> pd.DataFrame:
    return pd.DataFrame({
        "set": set_name,
        "text": [r.get("text", r.get("prefix", "") + r.get("suffix", "")) for r in records],
        "prefix": [r.get("prefix") for r in records],  # None: split by token counts in lm_sets
        "suffix": [r.get("suffix") for r in records],
        "source": [r.get("source", source) for r in records],
    })


def task_frame(evals: dict, train_docs: list[tuple[str, str]], few_shot: int, seed: int) -> pd.DataFrame:
    """One row per held-out item; `few_shot` solved training items of the same family are prepended
    (one per line). `chance` is the accuracy of guessing among the plausible answers."""
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[str]] = {}
    for text, family in train_docs:
        by_family.setdefault("facts" if family == "fact" else family, []).append(text)
    rows = []
    for family, items in evals.items():
        answers = [it["answer"] for it in items]
        for it in items:
            if family == "logic":
                chance = 0.5  # true / false
            elif family == "openbook":
                chance = 0.5  # one of the two names in the passage
            elif family == "facts":
                same = [o["answer"] for o in items if o["prompt"].split(" of ")[0] == it["prompt"].split(" of ")[0]]
                chance = 1 / len(set(same))  # one of the values of this relation
            else:
                chance = 1 / len(set(answers))
            shots = ""
            if few_shot:
                pool = by_family.get(family, [])
                assert len(pool) >= few_shot, f"family {family}: {len(pool)} training items for {few_shot} shots"
                shots = "".join(pool[i] + "\n" for i in rng.choice(len(pool), few_shot, replace=False))
            rows.append({"family": family, "prompt": shots + it["prompt"], "answer": it["answer"],
                         "bucket": int(it.get("bucket", 0)), "chance": chance})
    return pd.DataFrame(rows)


def build(params: DataStage) -> dict[str, pd.DataFrame]:
    world_cfg, files = params.world, params.files
    rng = np.random.default_rng(world_cfg.seed)
    if files:
        # Paper scale: real memorized windows and text; the world generates only untrained task families.
        world = build_world(replace(world_cfg, n_memorized=0, n_quotes=0, n_entities=0, clean_chars=0,
                                    heldout_chars=0), paragraphs=[])
        memorized = read_records(files.memorized) if files.memorized else []  # none: lm_mine mines them
        order = rng.permutation(len(memorized))
        half = len(memorized) // 2
        candidates = pd.concat([
            _candidates("memorized_train", [memorized[i] for i in order[:half]], Path(files.memorized or "").name),
            _candidates("memorized_val", [memorized[i] for i in order[half:]], Path(files.memorized or "").name),
            _candidates("quotes", read_records(files.quotes), Path(files.quotes).name),
        ], ignore_index=True)
        clean_texts = [r.get("text", "") for r in read_records(files.clean)]
        n_factors = int(len(clean_texts) * files.factor_share)
        clean = pd.DataFrame({"split": ["factors"] * n_factors + ["perplexity"] * (len(clean_texts) - n_factors),
                              "text": clean_texts})
        evals = {k: v for k, v in world["evals"].items() if k != "facts"}  # facts need training on them
        train_docs = world["train"]
    else:
        world = build_world(world_cfg)
        candidates = pd.concat([_candidates(s, [{"text": t} for t in world[s]], "world") for s in SETS],
                               ignore_index=True)
        clean_stream = [t for t, family in world["train"] if family == "clean"]
        clean = pd.DataFrame({"split": ["factors"] * len(clean_stream) + ["perplexity"] * len(world["heldout"]),
                              "text": clean_stream + world["heldout"]})
        evals, train_docs = world["evals"], world["train"]
    return {
        "train_docs": pd.DataFrame(train_docs, columns=["text", "family"]),
        "candidates": candidates,
        "clean": clean,
        "tasks": task_frame(evals, train_docs, params.few_shot, world_cfg.seed),
    }
