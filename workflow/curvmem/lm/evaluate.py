"""What an edit does to the LM: what it recites and what it can still do.

- recitation of each verified set (greedy, exactly |S| tokens): strict / loose / Levenshtein;
- perplexity on held-out clean text in fixed blocks: exp(mean token loss), and the paper's mean
  over batches of exp(batch loss);
- nDCG@10 of the edited model's next-token top-10 against the unedited model's (the baseline job
  saves that reference);
- the task suite: exact match per family, facts also per frequency bucket.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import SETS
from .recitation import greedy_continuations, recitation_metrics
from .tokens import doc_start_ids, pack_texts

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    batch_size: int = 64
    device: str = "auto"
    block_len: int = 112           # perplexity blocks (paper: pile-10k in 112-token blocks)
    n_blocks: int = 150


@torch.no_grad()
def block_predictions(model, blocks: torch.Tensor, batch_size: int, device) -> tuple[dict, torch.Tensor]:
    """Perplexity both ways, and the top-10 next-token ids at every position but the last."""
    total_loss, total_tokens, batch_ppl, tops = 0.0, 0, [], []
    for start in range(0, len(blocks), batch_size):
        x = blocks[start:start + batch_size].to(device)
        logits = model(input_ids=x).logits[:, :-1].float()  # (B, T-1, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        n = x[:, 1:].numel()
        total_loss, total_tokens = total_loss + loss.item(), total_tokens + n
        batch_ppl.append(math.exp(loss.item() / n))
        tops.append(logits.topk(10, dim=-1).indices.reshape(-1, 10).int().cpu())
    metrics = {"perplexity": math.exp(total_loss / total_tokens), "perplexity_batch_mean": float(np.mean(batch_ppl)),
               "perplexity_tokens": total_tokens}
    return metrics, torch.cat(tops)


def ndcg_at_10(reference: torch.Tensor, ranking: torch.Tensor) -> torch.Tensor:
    """Per-position nDCG@10 of `ranking` (N, 10) against `reference` (N, 10), both best first.

    The reference's token at rank r (0-based) has graded relevance 10 - r, every other token 0;
    the ideal ranking is the reference itself, so an unchanged model scores exactly 1.
    """
    assert reference.shape == ranking.shape and reference.shape[1] == 10, "expected (N, 10) top-10 ids"
    relevance = torch.arange(10, 0, -1, dtype=torch.float64)  # (10,)
    discount = 1 / torch.log2(torch.arange(2, 12, dtype=torch.float64))  # (10,)
    match = ranking[:, :, None] == reference[:, None, :]  # (N, 10 ranked, 10 reference)
    gains = (match.double() * relevance).sum(-1)  # (N, 10)
    return (gains * discount).sum(1) / (relevance * discount).sum()


def answer_correct(generated: str, answer: str) -> bool:
    """Exact match: the continuation starts with the answer, not followed by more of a word or number."""
    text, answer = generated.lstrip(), answer.strip()
    return text.startswith(answer) and not text[len(answer):len(answer) + 1].isalnum()


class LMEvaluation:
    """Everything an edit is measured on, tokenized once and reused for every cutoff: the verified
    windows of each set, the perplexity blocks, the task prompts."""

    def __init__(self, tokenizer, sets, perplexity_texts: list[str], tasks, cfg: EvalConfig, device):
        self.tokenizer, self.cfg, self.device = tokenizer, cfg, device
        self.windows = {}
        for name in SETS:
            rows = sets[sets["set"] == name]
            self.windows[name] = ([list(p) for p in rows["prefix_ids"]], [list(s) for s in rows["suffix_ids"]])
        self.blocks = pack_texts(tokenizer, perplexity_texts, cfg.block_len)[:cfg.n_blocks]
        assert len(self.blocks), "the held-out text is shorter than one perplexity block"
        start = doc_start_ids(tokenizer)  # prompts begin as training documents did
        self.tasks = tasks.reset_index(drop=True)
        self.prompts = [start + tokenizer(p, add_special_tokens=False)["input_ids"] for p in self.tasks["prompt"]]
        self.answer_tokens = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in self.tasks["answer"]) + 2

    def recitation(self, model, name: str) -> dict:
        prefixes, suffixes = self.windows[name]
        if not suffixes:
            return {"strict_pct": float("nan"), "loose_pct": float("nan"), "levenshtein": float("nan"), "n": 0}
        generated = [None] * len(suffixes)
        for n_new in sorted({len(s) for s in suffixes}):  # one greedy length per group
            idx = [i for i, s in enumerate(suffixes) if len(s) == n_new]
            outs = greedy_continuations(model, [prefixes[i] for i in idx], n_new, self.tokenizer.pad_token_id,
                                        self.cfg.batch_size, self.device)
            for i, out in zip(idx, outs):
                generated[i] = out
        return recitation_metrics(generated, suffixes)

    def task_accuracy(self, model) -> dict:
        tasks, tok = self.tasks, self.tokenizer
        outs = greedy_continuations(model, self.prompts, self.answer_tokens, tok.pad_token_id, self.cfg.batch_size,
                                    self.device)
        correct = np.array([answer_correct(tok.decode(o), a) for o, a in zip(outs, tasks["answer"])])
        result = {}
        for family in tasks["family"].unique():
            sel = (tasks["family"] == family).to_numpy()
            result[family] = {"accuracy_pct": 100 * float(correct[sel].mean()), "n": int(sel.sum()),
                              "chance_pct": 100 * float(tasks.loc[sel, "chance"].mean())}
        facts = (tasks["family"] == "facts").to_numpy()
        result["facts_by_bucket"] = {str(b): 100 * float(correct[facts & (tasks["bucket"] == b).to_numpy()].mean())
                                     for b in sorted(tasks.loc[facts, "bucket"].unique())}
        return result

    def __call__(self, model) -> tuple[dict, torch.Tensor]:
        """(metrics, the top-10 next-token ids at every perplexity position)."""
        out = {name: self.recitation(model, name) for name in SETS}
        ppl, top10 = block_predictions(model, self.blocks, self.cfg.batch_size, self.device)
        out.update(ppl)
        out["tasks"] = self.task_accuracy(model)
        return out, top10
