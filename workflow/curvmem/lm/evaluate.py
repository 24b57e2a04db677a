"""Edit the LM (or not) and measure what it recites and what it can still do.

- recitation of each verified set (greedy, exactly |S| tokens): strict / loose / Levenshtein;
- perplexity on held-out clean text in fixed blocks: exp(mean token loss), and the paper's mean
  over batches of exp(batch loss);
- nDCG@10 of the edited model's next-token top-10 against the unedited model's (the baseline job
  saves that reference);
- the task suite: exact match per family, facts also per frequency bucket.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import io
from ..common import pick_device, setup_logging, setup_torch
from ..edit import edit_model
from ..kfac import match_modules
from .model import load_model_dir
from .recitation import greedy_continuations, recitation_metrics
from .tokens import doc_start_ids, pack

log = logging.getLogger(__name__)
SETS = ("memorized_train", "memorized_val", "quotes")


def perplexity_blocks(tokenizer, texts: list[str], block_len: int, n_blocks: int) -> torch.Tensor:
    """(n, block_len) token blocks of the held-out text (documents joined by EOS)."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    blocks = torch.from_numpy(pack(ids, block_len, eos)).long()
    assert len(blocks) >= 1, "the held-out text is shorter than one perplexity block"
    return blocks[:n_blocks]


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


def task_accuracy(model, tokenizer, tasks, batch_size: int, device) -> dict:
    start = doc_start_ids(tokenizer)  # prompts begin as training documents did
    prompts = [start + tokenizer(p, add_special_tokens=False)["input_ids"] for p in tasks["prompt"]]
    n_new = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in tasks["answer"]) + 2
    outs = greedy_continuations(model, prompts, n_new, tokenizer.pad_token_id, batch_size, device)
    correct = np.array([answer_correct(tokenizer.decode(o), a) for o, a in zip(outs, tasks["answer"])])
    result = {}
    for family in tasks["family"].unique():
        sel = (tasks["family"] == family).to_numpy()
        result[family] = {"accuracy_pct": 100 * float(correct[sel].mean()), "n": int(sel.sum()),
                          "chance_pct": 100 * float(tasks.loc[sel, "chance"].mean())}
    facts = (tasks["family"] == "facts").to_numpy()
    result["facts_by_bucket"] = {str(b): 100 * float(correct[facts & (tasks["bucket"] == b).to_numpy()].mean())
                                 for b in sorted(tasks.loc[facts, "bucket"].unique())}
    return result


def lm_metrics(model, tokenizer, sets, blocks, tasks, batch_size: int, device) -> tuple[dict, torch.Tensor]:
    out = {}
    for name in SETS:
        rows = sets[sets["set"] == name]
        if not len(rows):
            out[name] = {"strict_pct": float("nan"), "loose_pct": float("nan"), "levenshtein": float("nan"), "n": 0}
            continue
        prefixes = [list(p) for p in rows["prefix_ids"]]
        suffixes = [list(s) for s in rows["suffix_ids"]]
        generated = []
        for n_new in sorted({len(s) for s in suffixes}):  # one greedy length per group
            idx = [i for i, s in enumerate(suffixes) if len(s) == n_new]
            outs = greedy_continuations(model, [prefixes[i] for i in idx], n_new, tokenizer.pad_token_id,
                                        batch_size, device)
            generated += list(zip(idx, outs))
        generated = [g for _, g in sorted(generated)]
        out[name] = recitation_metrics(generated, suffixes)
    ppl, top10 = block_predictions(model, blocks, batch_size, device)
    out.update(ppl)
    out["tasks"] = task_accuracy(model, tokenizer, tasks, batch_size, device)
    return out, top10


def main(argv=None):
    p = argparse.ArgumentParser(description="Edit the LM and evaluate recitation, perplexity, nDCG and tasks.")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--sets", required=True)
    p.add_argument("--clean", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--eval-config", required=True, help="JSON: batch_size, device, block_len, n_blocks")
    p.add_argument("--method", choices=["none", "kfac", "svd"], required=True)
    p.add_argument("--cutoff", type=float, default=1.0)
    p.add_argument("--modules", default="[]", help="JSON list of module-name patterns to edit")
    p.add_argument("--basis")
    p.add_argument("--layer-set", default="")
    p.add_argument("--reference", required=True, help="top-10 of the unedited model (written when --method none)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    setup_torch(args.threads)
    ev = json.loads(args.eval_config)
    device = pick_device(ev["device"])
    model, tokenizer = load_model_dir(args.model, device)
    names = match_modules(model, json.loads(args.modules))  # patterns -> module names
    t0 = time.time()
    kept = {}
    if args.method != "none":
        basis = io.load_tensors(args.basis) if args.method == "kfac" else None
        kept = edit_model(model, names, args.method, args.cutoff, basis)
    clean = io.load_parquet(args.clean)
    blocks = perplexity_blocks(tokenizer, clean.loc[clean["split"] == "perplexity", "text"].tolist(),
                               ev["block_len"], ev["n_blocks"])
    metrics, top10 = lm_metrics(model, tokenizer, io.load_parquet(args.sets), blocks, io.load_parquet(args.tasks),
                                ev["batch_size"], device)
    if args.method == "none":
        io.save_tensors({"top10": top10}, args.reference, {"model": args.model, "blocks": len(blocks)})
        reference = top10
    else:
        reference = io.load_tensors(args.reference)["top10"]
        assert reference.shape == top10.shape, "the reference top-10 was computed on other perplexity blocks"
    metrics["ndcg10"] = float(ndcg_at_10(reference, top10).mean())
    row = {"method": args.method, "layer_set": args.layer_set, "cutoff": args.cutoff, "modules": names,
           "kept_fraction": float(np.mean(list(kept.values()))) if kept else 1.0, **metrics}
    io.save_json(row, args.out)
    log.info("%s %s %g: recitation train %.1f%% val %.1f%% quotes %.1f%%, perplexity %.3f, nDCG@10 %.3f (%.1fs)",
             args.method, args.layer_set, args.cutoff, row["memorized_train"]["strict_pct"],
             row["memorized_val"]["strict_pct"], row["quotes"]["strict_pct"], row["perplexity"], row["ndcg10"],
             time.time() - t0)


if __name__ == "__main__":
    main()
