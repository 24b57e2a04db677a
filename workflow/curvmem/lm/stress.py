"""The positional stress test of the paper's Table 6 (Huang et al. 2024; the authors' script
`metrics/position_perturb_eval.py`): does an edited model still recite a memorized window when the
prompt is moved?

For a window with prefix x_1..x_n and gold continuation y_1..y_k, and a shift budget t:
- left-extended prompts x_1..x_n y_1..y_i for i = 1..min(t, k - 1): i gold tokens move into the
  prompt, and the score is taken against the rest of the continuation;
- right-shifted prompts x_{n-m+1}..x_n for m = t + 1..n - 1: the start of the prompt is cut away,
  the end stays at x_n.
A prompt's score is the length of the longest exact-match prefix of its remaining gold
continuation under greedy decoding. The window's original score is that of the unperturbed prefix;
its perturbed score is the max over the perturbed prompts (the unperturbed one excluded).
(The authors allow i = k; we stop at k - 1 so every perturbed prompt has a continuation to score.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recitation import greedy_continuations


SUMMARY = ("original_mean", "original_sd", "perturbed_mean", "perturbed_sd", "original_full_match_pct",
           "perturbed_full_match_pct", "increased_pct")


@dataclass
class StressConfig:
    max_shift: int = 10            # t (paper: 20 for 64 | 48 windows; scaled to the window here)
    set: str = "memorized_val"     # the verified set it runs on (the paper: the memorized validation split)


def perturbed_prompts(prefix: list[int], suffix: list[int], t: int) -> list[tuple[list[int], list[int]]]:
    """(prompt, remaining gold continuation) for every perturbed prompt of one window."""
    n, k = len(prefix), len(suffix)
    left = [(prefix + suffix[:i], suffix[i:]) for i in range(1, min(t, k - 1) + 1)]
    right = [(prefix[n - m:], suffix) for m in range(t + 1, n)]
    return left + right


def match_length(generated: list[int], gold: list[int]) -> int:
    """Length of the longest common prefix of a generation and its gold continuation."""
    n = 0
    for g, y in zip(generated, gold):
        if g != y:
            break
        n += 1
    return n


def score_prompts(model, prompts: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int,
                  device) -> list[int]:
    """match_length for each (prompt, gold): greedy decoding of exactly |gold| tokens, batched by length."""
    scores = [0] * len(prompts)
    for n_new in sorted({len(gold) for _, gold in prompts}):
        idx = [i for i, (_, gold) in enumerate(prompts) if len(gold) == n_new]
        outs = greedy_continuations(model, [prompts[i][0] for i in idx], n_new, pad_id, batch_size, device)
        for i, out in zip(idx, outs):
            scores[i] = match_length(out, prompts[i][1])
    return scores


def stress_test(model, windows: list[tuple[list[int], list[int]]], cfg: StressConfig, pad_id: int, batch_size: int,
                device) -> dict:
    """Original and perturbed scores of every window, and the summary the paper reports (mean and
    population sd of both, the full-match rates, how often perturbation raised the score)."""
    prompts, owner = [], []
    for w, (prefix, suffix) in enumerate(windows):
        prompts.append((prefix, suffix))  # the unperturbed prompt first: the original score
        owner.append((w, False))
        for p in perturbed_prompts(prefix, suffix, cfg.max_shift):
            prompts.append(p)
            owner.append((w, True))
    scores = score_prompts(model, prompts, pad_id, batch_size, device)
    original = np.zeros(len(windows), dtype=np.int64)
    perturbed = np.zeros(len(windows), dtype=np.int64)
    perturbed_full = np.zeros(len(windows), dtype=bool)
    for (w, is_perturbed), score, (_, gold) in zip(owner, scores, prompts):
        if is_perturbed:
            perturbed[w] = max(perturbed[w], score)
            perturbed_full[w] |= score == len(gold)
        else:
            original[w] = score
    k = np.array([len(s) for _, s in windows])
    summary = {"n": len(windows), "max_shift": cfg.max_shift, "set": cfg.set,
               "prompts_per_window": len(prompts) / max(1, len(windows))}
    if not windows:  # a model that recites nothing of the set: nothing to perturb
        return {**summary, **{key: float("nan") for key in SUMMARY}, "original": [], "perturbed": []}
    return {**summary,
            "original_mean": float(original.mean()), "original_sd": float(original.std()),
            "perturbed_mean": float(perturbed.mean()), "perturbed_sd": float(perturbed.std()),
            "original_full_match_pct": 100 * float(np.mean(original == k)),
            "perturbed_full_match_pct": 100 * float(perturbed_full.mean()),
            "increased_pct": 100 * float(np.mean(perturbed > original)),
            "original": original.tolist(), "perturbed": perturbed.tolist()}
