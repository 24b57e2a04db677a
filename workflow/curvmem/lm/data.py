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

import argparse
import json
import logging
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..common import setup_logging
from .world import WorldConfig, build_world

log = logging.getLogger(__name__)
SETS = ("memorized_train", "memorized_val", "quotes")


def read_records(path: str) -> list[dict]:
    """JSONL records ({"text"} or {"prefix", "suffix"}, optional "source") from a path or URL;
    a plain-text file gives one record per blank-line-separated paragraph."""
    if path.startswith(("http://", "https://")):
        with urllib.request.urlopen(path) as response:  # paper scale only; default and test are offline
            raw = response.read().decode()
    else:
        raw = Path(path).read_text()
    if path.endswith((".jsonl", ".json")):
        records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        for i, r in enumerate(records):
            if "text" not in r and not {"prefix", "suffix"} <= set(r):
                raise ValueError(f"{path}: line {i + 1} has neither 'text' nor 'prefix' + 'suffix'")
        return records
    return [{"text": " ".join(p.split())} for p in raw.split("\n\n") if p.strip()]


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


def build(params: dict) -> dict[str, pd.DataFrame]:
    world_cfg = WorldConfig(**params["world"])
    files = params.get("files") or {}
    rng = np.random.default_rng(world_cfg.seed)
    if files:
        # Paper scale: real memorized windows and text; the world generates only untrained task families.
        world = build_world(replace(world_cfg, n_memorized=0, n_quotes=0, n_entities=0, clean_chars=0,
                                    heldout_chars=0), paragraphs=[])
        memorized = read_records(files["memorized"])
        order = rng.permutation(len(memorized))
        half = len(memorized) // 2
        candidates = pd.concat([
            _candidates("memorized_train", [memorized[i] for i in order[:half]], Path(files["memorized"]).name),
            _candidates("memorized_val", [memorized[i] for i in order[half:]], Path(files["memorized"]).name),
            _candidates("quotes", read_records(files["quotes"]), Path(files["quotes"]).name),
        ], ignore_index=True)
        clean_texts = [r.get("text", "") for r in read_records(files["clean"])]
        n_factors = int(len(clean_texts) * files["factor_share"])
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
        "tasks": task_frame(evals, train_docs, params.get("few_shot", 0), world_cfg.seed),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="Write the LM arm's text artifacts (world or files).")
    p.add_argument("--params", required=True, help="JSON: world (WorldConfig), files (optional), few_shot")
    p.add_argument("--out-dir", required=True)
    args = p.parse_args(argv)
    setup_logging()
    params = json.loads(args.params)
    frames = build(params)
    for name, frame in frames.items():
        io.save_parquet(frame, Path(args.out_dir) / f"{name}.parquet", metadata={"params": params})
        log.info("%s: %d rows", name, len(frame))
    log.info("families: %s", frames["train_docs"]["family"].value_counts().to_dict())


if __name__ == "__main__":
    main()
