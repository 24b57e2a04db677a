"""Greedy continuations by every headline model, side by side (the paper's Table 12): general
prompts of the scale's domain, the first held-out prompt of each task family, and prefixes of
memorized validation windows and quotes (with the gold continuation beside them)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .recitation import greedy_continuations
from .tokens import doc_start_ids


@dataclass
class GenerationConfig:
    prompts: list = field(default_factory=lambda: ["The capital of France is"])  # general prompts
    per_family: int = 1            # held-out task prompts per family
    memorized: int = 2             # memorized validation windows (prefix -> its suffix's length)
    quotes: int = 2                # quotes (prefix -> its suffix's length)
    max_new_tokens: int = 24       # tokens generated for general and task prompts


@dataclass
class Prompt:
    kind: str                      # "general", a task family, "memorized_val" or "quotes"
    ids: list                      # the prompt's token ids, as the model sees them
    n_new: int                     # tokens to generate
    gold: list | None = None       # the memorized continuation, where there is one


def generation_prompts(tokenizer, cfg: GenerationConfig, tasks: pd.DataFrame, sets: pd.DataFrame) -> list[Prompt]:
    start = doc_start_ids(tokenizer)  # prompts begin as training documents did

    def encode(text: str) -> list[int]:
        return start + tokenizer(text, add_special_tokens=False)["input_ids"]

    prompts = [Prompt("general", encode(p), cfg.max_new_tokens) for p in cfg.prompts]
    for family, rows in tasks.groupby("family", sort=False):
        prompts += [Prompt(family, encode(p), cfg.max_new_tokens) for p in rows["prompt"].head(cfg.per_family)]
    for name, n in (("memorized_val", cfg.memorized), ("quotes", cfg.quotes)):
        rows = sets[sets["set"] == name].head(n)
        prompts += [Prompt(name, list(p), len(s), list(s)) for p, s in zip(rows["prefix_ids"], rows["suffix_ids"])]
    return prompts


def generate(model, prompts: list[Prompt], pad_id: int, batch_size: int, device) -> list[list[int]]:
    """Greedy continuation of each prompt (batched by length)."""
    out: list[list[int] | None] = [None] * len(prompts)
    for n_new in sorted({p.n_new for p in prompts}):
        idx = [i for i, p in enumerate(prompts) if p.n_new == n_new]
        for i, ids in zip(idx, greedy_continuations(model, [prompts[i].ids for i in idx], n_new, pad_id, batch_size,
                                                    device)):
            out[i] = ids
    return out


def _cell(text: str, empty: str = "(nothing)") -> str:
    """Text as one Markdown table cell: pipes escaped, line breaks shown as ⏎."""
    return " ".join(text.replace("|", "\\|").replace("\n", " ⏎ ").split()) or empty


def _until_eos(tokenizer, ids: list[int]) -> str:
    """A continuation up to the end of its document (the next one is another document's start)."""
    eos = tokenizer.eos_token_id
    if eos in ids:
        return tokenizer.decode(ids[:ids.index(eos)]) + " [end of document]"
    return tokenizer.decode(ids)


def markdown_table(tokenizer, prompts: list[Prompt], outputs: dict[str, list[list[int]]], labels: dict[str, str],
                   title: str) -> str:
    """One row per prompt: kind, prompt, gold continuation (memorized prompts), one column per model."""
    start = len(doc_start_ids(tokenizer))
    header = ["kind", "prompt", "gold continuation", *(labels[m] for m in outputs)]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, p in enumerate(prompts):
        shown = p.ids[start:] if p.ids[:start] == doc_start_ids(tokenizer) else p.ids
        cells = [p.kind, _cell(tokenizer.decode(shown)), _cell(tokenizer.decode(p.gold), "") if p.gold else "",
                 *(_cell(_until_eos(tokenizer, outputs[m][i])) for m in outputs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
