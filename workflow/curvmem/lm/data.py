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

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..common import InputError
from . import SETS, text
from .world import WorldConfig, build_world

log = logging.getLogger(__name__)


@dataclass
class FilesConfig:
    """Paper scale: memorized windows, quotes and clean text, each a text source (lm/text.py): a local
    JSONL / Parquet / text file, a URL, or a hub dataset streamed through `datasets`."""

    memorized: str | dict | None = ""  # None: mined from a text source instead (lm.mine)
    quotes: str | dict = ""
    clean: str | dict = ""             # the factors' text (the training distribution)
    perplexity: str | dict | None = None  # held-out text for perplexity; None: the rest of `clean`
    factor_share: float = 0.9          # without `perplexity`: documents of `clean` for the factors


@dataclass
class DataStage:
    world: WorldConfig = field(default_factory=WorldConfig)
    files: FilesConfig | None = None
    few_shot: int = 0              # solved examples prepended to every task prompt


def read_records(spec: str | dict, what: str = "text source") -> list[dict]:
    """The records of a text source (lm/text.py); default and test configs read none."""
    return text.read(spec, what)[0]


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


def build(params: DataStage) -> tuple[dict[str, pd.DataFrame], dict]:
    """The four frames of lm_data and the manifest of the text they were read from."""
    world_cfg, files = params.world, params.files
    rng = np.random.default_rng(world_cfg.seed)
    if files:
        # Paper scale: real memorized windows and text; the world generates only untrained task families.
        world = build_world(replace(world_cfg, n_memorized=0, n_quotes=0, n_entities=0, clean_chars=0,
                                    heldout_chars=0), paragraphs=[])
        sources = {key: spec for key in ("memorized", "quotes", "clean", "perplexity")
                   if (spec := getattr(files, key))}  # memorized None: lm_mine mines them
        read = {key: text.read(spec, f"lm.files.{key}") for key, spec in sources.items()}
        manifest = {key: entry for key, (_, entry) in read.items()}
        memorized = read["memorized"][0] if "memorized" in read else []
        order = rng.permutation(len(memorized))
        half = len(memorized) // 2
        origin = {key: text.describe(spec) if text.as_source(spec).dataset else Path(text.describe(spec)).name
                  for key, spec in sources.items()}
        candidates = pd.concat([
            _candidates("memorized_train", [memorized[i] for i in order[:half]], origin.get("memorized", "")),
            _candidates("memorized_val", [memorized[i] for i in order[half:]], origin.get("memorized", "")),
            _candidates("quotes", read["quotes"][0], origin["quotes"]),
        ], ignore_index=True)
        clean_texts = [r.get("text", "") for r in read["clean"][0]]
        if "perplexity" in read:
            held_out = [r.get("text", "") for r in read["perplexity"][0]]
        else:
            n_factors = int(len(clean_texts) * files.factor_share)
            clean_texts, held_out = clean_texts[:n_factors], clean_texts[n_factors:]
        clean = pd.DataFrame({"split": ["factors"] * len(clean_texts) + ["perplexity"] * len(held_out),
                              "text": clean_texts + held_out})
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
        manifest = {"world": {"generated": "lm/world.py", "seed": world_cfg.seed}}
    frames = {
        "train_docs": pd.DataFrame(train_docs, columns=["text", "family"]),
        "candidates": candidates,
        "clean": clean,
        "tasks": task_frame(evals, train_docs, params.few_shot, world_cfg.seed),
    }
    return frames, manifest
