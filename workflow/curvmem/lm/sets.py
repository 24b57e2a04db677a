"""The memorized sets, verified against the unedited model (paper section 5).

A candidate becomes a (prefix, suffix) window of token ids: memorized windows take the first
`prefix + suffix` tokens of the text (or the given prefix / suffix strings), quotes keep all but
their last `quote_suffix` tokens as prefix. Windows cut from the start of a text begin with the
tokenizer's start-of-document ids, as in training; windows given as prefix / suffix strings are
mid-document and do not; mined windows (`lm.mining`) arrive as token ids and are kept as cut.
A window counts as memorized only if the unedited
model reproduces its suffix greedily, checked teacher-forced (every suffix token is the argmax
given the true context, which is the same condition in one forward pass).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import SETS
from .recitation import teacher_forced_match
from .tokens import doc_start_ids

log = logging.getLogger(__name__)


@dataclass
class WindowConfig:
    prefix: int = 32          # memorized windows: prefix tokens (paper: 64)
    suffix: int = 24          # memorized windows: suffix tokens to recite (paper: 48)
    quote_suffix: int = 8     # quotes: the last 8 tokens are the suffix (paper)
    max_per_set: int = 500    # verified windows kept per set (paper: 500 train + 500 validation)


def make_window(tokenizer, row, cfg: WindowConfig) -> tuple[list[int], list[int]] | None:
    """(prefix ids, suffix ids) of one candidate, or None when it is too short."""
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    start = doc_start_ids(tokenizer)
    if isinstance(row.get("prefix_ids"), (list, np.ndarray)):  # a mined window (lm.mining): kept as cut
        return list(row["prefix_ids"]), list(row["suffix_ids"])
    if row["set"] == "quotes":
        ids = encode(row["text"])
        if len(ids) < cfg.quote_suffix + 1:
            return None
        return start + ids[: -cfg.quote_suffix], ids[-cfg.quote_suffix:]
    if isinstance(row["prefix"], str) and isinstance(row["suffix"], str):
        prefix, suffix = encode(row["prefix"])[-cfg.prefix:], encode(row["suffix"])[: cfg.suffix]
        return (prefix, suffix) if len(prefix) == cfg.prefix and len(suffix) == cfg.suffix else None
    ids = encode(row["text"])
    if len(ids) < cfg.prefix + cfg.suffix:
        return None
    return start + ids[: cfg.prefix], ids[cfg.prefix: cfg.prefix + cfg.suffix]


def verify(model, tokenizer, candidates: pd.DataFrame, cfg: WindowConfig, batch_size: int, device) -> pd.DataFrame:
    rows = []
    for _, row in candidates.iterrows():
        window = make_window(tokenizer, row, cfg)
        if window is not None:
            rows.append({"set": row["set"], "text": row["text"], "source": row["source"],
                         "prefix_ids": window[0], "suffix_ids": window[1]})
    frame = pd.DataFrame(rows, columns=["set", "text", "source", "prefix_ids", "suffix_ids"])
    frame["memorized"] = False
    # Teacher forcing needs equal lengths within a batch: group by (prefix, suffix) length.
    lengths = frame.apply(lambda r: (len(r["prefix_ids"]), len(r["suffix_ids"])), axis=1) if len(frame) else []
    for (p_len, _), group in frame.groupby(pd.Series(list(lengths), index=frame.index, dtype=object)):
        sequences = [list(p) + list(s) for p, s in zip(group["prefix_ids"], group["suffix_ids"])]
        frame.loc[group.index, "memorized"] = teacher_forced_match(model, sequences, p_len, batch_size, device)
    return frame


def summarize(candidates: pd.DataFrame, frame: pd.DataFrame, kept: pd.DataFrame) -> dict:
    """How many candidates each set had, how many were long enough, memorized, and kept."""
    summary = {}
    for name in SETS:
        n_window = int((frame["set"] == name).sum())
        n_mem = int(frame.loc[frame["set"] == name, "memorized"].sum())
        summary[name] = {"candidates": int((candidates["set"] == name).sum()), "windows": n_window,
                         "memorized": n_mem,
                         "memorized_pct_of_windows": 100 * n_mem / n_window if n_window else float("nan"),
                         "kept": int((kept["set"] == name).sum())}
        log.info("%s: %d candidates, %d long enough, %d memorized (%.1f%%), %d kept", name,
                 summary[name]["candidates"], n_window, n_mem, summary[name]["memorized_pct_of_windows"],
                 summary[name]["kept"])
        if not summary[name]["kept"]:
            log.warning("%s: the model recites none of its windows; its recitation is reported as NaN", name)
    return summary
