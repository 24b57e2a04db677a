"""The miniature pretraining world (default scale of the LM arm).

SmolLM2-135M, the only pretrained LM available offline, recites almost nothing verbatim, so the
default creates memorization under control: real English text mixed with generated families whose
frequencies the config sets (in the spirit of the TinyMem models of Sakarvadia et al.):

- memorized: windows of real text held out of the clean stream, each duplicated `memorized_repeats` times;
- quotes: short quotes duplicated a few times (evaluated for recitation only, never used for a choice);
- arithmetic: two-digit addition and subtraction; the default world zero-pads answers to a fixed
  width ("45 - 11 = 034"): every digit then sits at a fixed offset from the operand digits it depends
  on, which a 1.6M-parameter model learns in the training budget (natural-width answers: 4.5-18.5%);
- facts: relations of invented entities, each repeated 1..N times (frequency buckets, paper Fig. 5);
- open-book QA: a passage states a fact about a fresh entity, then a question asks for it;
- logic: boolean expressions over true / false.

Every evaluation item is held out: arithmetic pairs and open-book entities never appear in
training; facts are evaluated on exactly the facts trained on (closed-book recall).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np

RELATIONS = {  # relation -> (statement template, prompt template); {e} entity, {v} value
    "capital": ("The capital of {e} is {v}.", "The capital of {e} is"),
    "color": ("The favourite colour of {e} is {v}.", "The favourite colour of {e} is"),
    "river": ("The longest river of {e} is the {v}.", "The longest river of {e} is the"),
}
SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sa", "bel", "qu", "dri", "no", "fa", "zen", "ul", "pa",
             "gor", "ti", "mar", "eb", "sho", "lin", "vo", "dar", "ne", "xu", "ri", "bo", "hal", "te", "wy"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey", "pink"]


@dataclass
class WorldConfig:
    seed: int = 0
    clean_chars: int = 2_000_000     # real text in the clean training stream
    heldout_chars: int = 100_000     # characters of the perplexity text
    perplexity_text: str = "prose"   # "prose": held-out prose only; "mixture": held-out prose and documents
                                     # of every task family, in the training stream's shares (see perplexity_mixture)
    n_memorized: int = 200           # real-text windows duplicated in training (half train, half validation split)
    memorized_repeats: int = 32
    memorized_words: int = 40        # words per memorized window
    n_quotes: int = 100
    quote_repeats: int = 6
    arithmetic_train: int = 20_000
    arithmetic_width: int = 0        # answers zero-padded to this many digits; 0: natural width (pretrained models)
    n_entities: int = 400            # invented entities with one fact each
    fact_repeats: list = field(default_factory=lambda: [1, 3, 9, 27])  # frequency buckets, equal shares
    openbook_train: int = 5_000
    logic_train: int = 10_000
    n_eval: int = 200                # held-out items per task family


def real_text_paragraphs() -> list[str]:
    """English prose shipped with every Python (pydoc topics) plus Debian's fortunes if installed."""
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        paragraphs += [p for p in re.split(r"\n\s*\n", text)]
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if os.path.isfile(path) and not path.endswith((".dat", ".u8")):
            with open(path, encoding="latin-1") as f:
                paragraphs += f.read().split("\n%\n")
    cleaned = [" ".join(p.split()) for p in paragraphs]
    return [p for p in cleaned if len(p.split()) >= 8 and p.isascii()]


def quote_candidates(paragraphs: list[str]) -> list[str]:
    """Short single-sentence texts: the quotes family."""
    return [p for p in paragraphs if 9 <= len(p.split()) <= 25 and p.count(".") <= 2]


class Names:
    """Unique invented names from syllables, seeded."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.used = rng, set()

    def __call__(self) -> str:
        while True:
            n = int(self.rng.integers(2, 4))
            name = "".join(SYLLABLES[i] for i in self.rng.integers(0, len(SYLLABLES), n)).capitalize()
            if name not in self.used:
                self.used.add(name)
                return name


def arithmetic_item(a: int, b: int, op: str, width: int = 0) -> tuple[str, str]:
    """(prompt, answer) for two-digit addition or subtraction (a >= b for subtraction); the answer
    is zero-padded to `width` digits (0: natural width)."""
    answer = a + b if op == "+" else a - b
    return f"{a} {op} {b} =", f" {answer:0{width}d}" if width else f" {answer}"


def logic_item(rng: np.random.Generator) -> tuple[str, str]:
    """A boolean expression of two to four operands (Python precedence: not > and > or) and its value."""
    def operand():
        v = bool(rng.integers(0, 2))
        return ("not " if rng.integers(0, 2) else "") + str(v).lower()
    ops = [("and", "or")[int(rng.integers(0, 2))] for _ in range(int(rng.integers(1, 4)))]
    expr = operand()
    for op in ops:
        expr = f"{expr} {op} {operand()}"
    value = eval(expr.replace("true", "True").replace("false", "False"))  # noqa: S307 - our own grammar
    return f"{expr} =", f" {str(value).lower()}"


def build_world(cfg: WorldConfig, paragraphs: list[str] | None = None) -> dict:
    """Training documents and held-out evaluation sets, all plain Python data (written as Parquet)."""
    rng = np.random.default_rng(cfg.seed)
    paragraphs = real_text_paragraphs() if paragraphs is None else paragraphs
    order = rng.permutation(len(paragraphs))
    quotes_pool = set(quote_candidates(paragraphs))
    quotes = [paragraphs[i] for i in order if paragraphs[i] in quotes_pool][: cfg.n_quotes]
    prose = [paragraphs[i] for i in order if paragraphs[i] not in quotes_pool]

    # Memorized windows and the held-out text come from prose the clean stream never sees.
    memorized, heldout, clean, cursor = [], [], [], 0
    while len(memorized) < cfg.n_memorized and cursor < len(prose):
        words = prose[cursor].split()
        cursor += 1
        if len(words) >= cfg.memorized_words:
            memorized.append(" ".join(words[: cfg.memorized_words]))
    assert len(memorized) == cfg.n_memorized, f"only {len(memorized)} paragraphs are long enough to memorize"
    while sum(map(len, heldout)) < cfg.heldout_chars and cursor < len(prose):
        heldout.append(prose[cursor])
        cursor += 1
    while sum(map(len, clean)) < cfg.clean_chars and cursor < len(prose):
        clean.append(prose[cursor])
        cursor += 1

    docs = [(t, "clean") for t in clean]
    docs += [(t, "memorized") for t in memorized for _ in range(cfg.memorized_repeats)]
    docs += [(t, "quote") for t in quotes for _ in range(cfg.quote_repeats)]

    # Arithmetic: every (a, op, b) is either trained on or held out, never both.
    problems = [(a, b, op) for a in range(10, 100) for b in range(10, 100) for op in "+-" if op == "+" or a >= b]
    picks = rng.permutation(len(problems))
    eval_arith = [problems[i] for i in picks[: cfg.n_eval]]
    pool = [problems[i] for i in picks[cfg.n_eval:]]
    train_arith = [pool[i % len(pool)] for i in range(cfg.arithmetic_train)]  # cycles past the ~12k distinct
    docs += [("".join(arithmetic_item(a, b, op, cfg.arithmetic_width)), "arithmetic") for a, b, op in train_arith]

    names = Names(rng)
    facts = []
    relations = list(RELATIONS)
    for i in range(cfg.n_entities):
        relation = relations[i % len(relations)]
        value = COLOURS[int(rng.integers(0, len(COLOURS)))] if relation == "color" else names()
        repeats = cfg.fact_repeats[i % len(cfg.fact_repeats)]
        facts.append({"entity": names(), "relation": relation, "value": value, "repeats": repeats})
    for f in facts:
        statement = RELATIONS[f["relation"]][0].format(e=f["entity"], v=f["value"])
        docs += [(statement, "fact")] * f["repeats"]

    def openbook(rng):
        e, v = names(), names()
        return f"{e} lives in {v}. Q: Where does {e} live? A:", f" {v}"
    docs += [("".join(openbook(rng)), "openbook") for _ in range(cfg.openbook_train)]
    eval_logic = {}
    while len(eval_logic) < cfg.n_eval:
        prompt, answer = logic_item(rng)
        eval_logic[prompt] = answer
    n_logic = 0
    while n_logic < cfg.logic_train:  # training expressions exclude the held-out ones
        prompt, answer = logic_item(rng)
        if prompt not in eval_logic:
            docs.append((prompt + answer, "logic"))
            n_logic += 1

    shuffled = [docs[i] for i in rng.permutation(len(docs))]
    evals = {
        "arithmetic": [dict(zip(("prompt", "answer"), arithmetic_item(a, b, op, cfg.arithmetic_width)))
                       for a, b, op in eval_arith],
        "facts": [{"prompt": RELATIONS[f["relation"]][1].format(e=f["entity"]), "answer": f" {f['value']}",
                   "bucket": f["repeats"]} for f in facts],
        "openbook": [dict(zip(("prompt", "answer"), openbook(rng))) for _ in range(cfg.n_eval)],
        "logic": [{"prompt": p, "answer": a} for p, a in eval_logic.items()],
    }
    if cfg.perplexity_text == "mixture":
        heldout = perplexity_mixture(cfg.heldout_chars, heldout, docs, lambda: "".join(openbook(rng)), rng)
    half = cfg.n_memorized // 2
    return {
        "train": shuffled,
        "memorized_train": memorized[:half],   # for choosing layers and rho
        "memorized_val": memorized[half:],     # reported
        "quotes": quotes,                      # reported, never used for a choice
        "heldout": heldout,                    # perplexity (prose never trained on; see perplexity_text)
        "evals": evals,
    }


MIXTURE_FAMILIES = ("clean", "arithmetic", "fact", "openbook", "logic")  # what the model learned; not the recited sets


def perplexity_mixture(n_chars: int, prose: list[str], docs: list[tuple[str, str]], openbook, rng) -> list[str]:
    """Perplexity text of the training distribution: each family gets the share of `n_chars` that
    its characters have in the training stream (memorized windows and quotes excluded: recitation is
    what the edit removes). Prose comes from the held-out paragraphs; open-book QA from fresh
    passages (`openbook()`); arithmetic, facts and logic are drawn from the stream's own documents,
    as a new document of the same distribution would be: they restate trained content, like web
    text restating what a pretrained model knows, and never an evaluation item (the generators
    exclude those from training)."""
    by_family = {f: [t for t, family in docs if family == f] for f in MIXTURE_FAMILIES}
    stream_chars = {f: sum(map(len, texts)) for f, texts in by_family.items()}
    total = sum(stream_chars.values())
    assert total, "the training stream holds no document of a learned family"
    out, prose = [], iter(prose)
    for family, texts in by_family.items():
        budget, drawn = n_chars * stream_chars[family] / total, 0
        while drawn < budget:
            if family == "clean":
                text = next(prose, None)
                assert text is not None, "the held-out prose is shorter than its share of the perplexity text"
            else:
                text = openbook() if family == "openbook" else texts[int(rng.integers(0, len(texts)))]
            out.append(text)
            drawn += len(text)
    return [out[i] for i in rng.permutation(len(out))]
