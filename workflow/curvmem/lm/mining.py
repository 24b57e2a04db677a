"""Mining a memorized set from a text source, for any causal LM (the paper's protocol, section 5).

The authors never released their memorized TRAIN split; they sampled [prefix | suffix] windows
(64 | 48 tokens) from the model's pretraining text and kept those whose suffix the model
reproduces greedily. Here:

1. sample `n_windows` windows of the study's geometry (`lm.windows` prefix | suffix) uniformly
   over every token position of the source documents where a whole window fits (a repeated
   document is sampled as often as it occurs, as in pretraining data); a window at a document's start begins with the tokenizer's start-of-document ids, as the
   model saw it in training;
2. keep the windows the model recites: the batched teacher-forced check of `lm.sets` (every suffix
   token is the argmax given the true context, the same condition as greedy decoding);
3. drop near-duplicates: a window whose token sequence is at least `dedupe_similarity` similar
   (rapidfuzz normalized Indel similarity) to one already kept;
4. split train / validation by document with a seed (all windows cut from the same document text
   fall on one side, so overlapping windows never straddle the split).

The hit rate (recited / sampled) is the headline number of a mining run.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import Indel

from .recitation import teacher_forced_match
from .tokens import doc_start_ids

log = logging.getLogger(__name__)


@dataclass
class MiningConfig:
    source: str | dict = "train_docs"  # "train_docs": the LM's own training stream; else a text source (lm/text.py)
    n_windows: int = 20000         # windows sampled from the source (their prefix | suffix: lm.windows)
    dedupe_similarity: float = 0.9  # drop a window this similar (normalized Indel) to a kept one
    val_fraction: float = 0.5      # share of the mined windows in the validation split (by document)
    seed: int = 0
    batch_size: int = 32
    device: str = "auto"


def sample_windows(tokenizer, texts: list[str], prefix: int, suffix: int, cfg: MiningConfig) -> pd.DataFrame:
    """(doc, start, prefix_ids, suffix_ids) of `n_windows` windows drawn uniformly, with replacement,
    over every start position of every document long enough to hold one."""
    width = prefix + suffix
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []  # one batched call
    starts_per_doc = np.array([max(0, len(x) - width + 1) for x in ids])  # valid start positions
    total = int(starts_per_doc.sum())
    columns = ["doc", "start", "prefix_ids", "suffix_ids"]
    if total == 0:
        return pd.DataFrame(columns=columns)
    rng = np.random.default_rng(cfg.seed)
    flat = rng.integers(0, total, size=cfg.n_windows)  # a position among all valid ones
    bounds = np.cumsum(starts_per_doc)
    docs = np.searchsorted(bounds, flat, side="right")
    starts = flat - (bounds[docs] - starts_per_doc[docs])
    start_ids = doc_start_ids(tokenizer)
    rows = []
    for d, s in zip(docs.tolist(), starts.tolist()):
        window = ids[d][s:s + width]
        rows.append((d, s, (start_ids if s == 0 else []) + window[:prefix], window[prefix:]))
    return pd.DataFrame(rows, columns=columns)


def recited(model, windows: pd.DataFrame, cfg: MiningConfig, device) -> np.ndarray:
    """Which windows the model recites, checked in batches of equal length (with or without start ids)."""
    hits = np.zeros(len(windows), dtype=bool)
    lengths = windows["prefix_ids"].map(len)
    for p_len, group in windows.groupby(lengths):
        sequences = [list(p) + list(s) for p, s in zip(group["prefix_ids"], group["suffix_ids"])]
        hits[windows.index.get_indexer(group.index)] = teacher_forced_match(model, sequences, int(p_len),
                                                                            cfg.batch_size, device)
    return hits


def deduplicate(windows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Keep, in order, each window less than `threshold` similar to every window kept before it."""
    kept_rows, kept_seqs = [], []
    for i, (p, s) in enumerate(zip(windows["prefix_ids"], windows["suffix_ids"])):
        seq = list(p) + list(s)
        if kept_seqs and process.extractOne(seq, kept_seqs, scorer=Indel.normalized_similarity,
                                            score_cutoff=threshold) is not None:
            continue
        kept_rows.append(i)
        kept_seqs.append(seq)
    return windows.iloc[kept_rows]


def split_by_document(windows: pd.DataFrame, texts: list[str], cfg: MiningConfig) -> pd.Series:
    """'memorized_train' / 'memorized_val' per window; one side per distinct document text."""
    group = windows["doc"].map(lambda d: hashlib.sha256(texts[d].encode()).hexdigest())
    sizes = group.value_counts().sort_index()  # sorted: the split depends on the seed, not on dict order
    order = np.random.default_rng(cfg.seed).permutation(len(sizes))
    side, filled = {}, 0
    for j in order:
        name = sizes.index[j]
        side[name] = "memorized_val" if filled < cfg.val_fraction * len(windows) else "memorized_train"
        filled += int(sizes.iloc[j]) if side[name] == "memorized_val" else 0
    return group.map(side)


def mine(model, tokenizer, texts: list[str], prefix: int, suffix: int, cfg: MiningConfig, device,
         origin: str) -> tuple[pd.DataFrame, dict]:
    """(mined windows as lm_sets candidates, summary). The frame has the candidates' columns (set,
    text, prefix, suffix, source) and the windows' token ids (prefix_ids, suffix_ids)."""
    windows = sample_windows(tokenizer, texts, prefix, suffix, cfg)
    hits = recited(model, windows, cfg, device) if len(windows) else np.zeros(0, dtype=bool)
    found = windows[hits].reset_index(drop=True)
    unique = deduplicate(found, cfg.dedupe_similarity).reset_index(drop=True)
    sets = split_by_document(unique, texts, cfg) if len(unique) else pd.Series([], dtype=object)
    frame = pd.DataFrame({
        "set": sets.tolist(),
        "text": [tokenizer.decode(list(p) + list(s)) for p, s in zip(unique["prefix_ids"], unique["suffix_ids"])],
        "prefix": [None] * len(unique), "suffix": [None] * len(unique),
        "source": [f"{origin}#doc{d}@{s}" for d, s in zip(unique["doc"], unique["start"])],
        "prefix_ids": unique["prefix_ids"].map(list).tolist(), "suffix_ids": unique["suffix_ids"].map(list).tolist(),
    })
    summary = {"source": origin, "documents": len(texts), "sampled": len(windows), "recited": int(hits.sum()),
               "hit_rate_pct": 100 * float(hits.mean()) if len(windows) else float("nan"),
               "after_dedupe": len(unique), "documents_with_hits": int(found["doc"].nunique()) if len(found) else 0,
               "memorized_train": int((frame["set"] == "memorized_train").sum()),
               "memorized_val": int((frame["set"] == "memorized_val").sum())}
    log.info("mined %(source)s: %(sampled)d windows sampled, %(recited)d recited (%(hit_rate_pct).2f%%), "
             "%(after_dedupe)d after removing near-duplicates: %(memorized_train)d train, %(memorized_val)d "
             "validation", summary)
    return frame, summary
