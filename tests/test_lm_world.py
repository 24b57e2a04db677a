"""The miniature world: exact frequencies, held-out evaluation items, correct answers."""
import re
from collections import Counter
from dataclasses import replace

import pytest

from curvmem.lm.world import WorldConfig, arithmetic_item, build_world, real_text_paragraphs


def synthetic_paragraphs() -> list[str]:
    """400 long prose paragraphs and 50 quote-sized ones, all distinct."""
    paragraphs = [f"Paragraph {i} says " + " ".join(f"w{i}x{j}" for j in range(50)) + "." for i in range(400)]
    return paragraphs + [f"Quote number {i} is short and wise enough to keep." for i in range(50)]


@pytest.fixture(scope="module")
def world():
    paragraphs = synthetic_paragraphs()
    cfg = WorldConfig(seed=1, clean_chars=20_000, heldout_chars=5_000, n_memorized=20, memorized_repeats=5,
                      n_quotes=10, quote_repeats=3, arithmetic_train=500, n_entities=40, openbook_train=50,
                      logic_train=300, n_eval=30)
    return cfg, build_world(cfg, paragraphs)


def test_frequencies_are_exact(world):
    cfg, w = world
    texts = Counter(t for t, _ in w["train"])
    for seq in w["memorized_train"] + w["memorized_val"]:
        assert texts[seq] == cfg.memorized_repeats
    for q in w["quotes"]:
        assert texts[q] == cfg.quote_repeats
    families = Counter(f for _, f in w["train"])
    assert families["arithmetic"] == 500 and families["logic"] == 300 and families["openbook"] == 50
    buckets = Counter(item["bucket"] for item in w["evals"]["facts"])
    assert set(buckets) == set(cfg.fact_repeats) and len(set(buckets.values())) == 1
    for item in w["evals"]["facts"]:
        statement = item["prompt"] + item["answer"]
        assert sum(t.startswith(statement) for t in texts.elements()) == item["bucket"]


def test_evaluation_items_are_held_out(world):
    _, w = world
    train_text = {t for t, _ in w["train"]}
    for family in ("arithmetic", "logic", "openbook"):
        for item in w["evals"][family]:
            assert item["prompt"] + item["answer"] not in train_text, (family, item)
            assert not any(t.startswith(item["prompt"]) for t in train_text), (family, item["prompt"])
    memorized = set(w["memorized_train"] + w["memorized_val"])
    assert not memorized & set(w["heldout"])
    clean = {t for t, f in w["train"] if f == "clean"}
    assert not (memorized | set(w["heldout"])) & clean


def test_answers_are_correct(world):
    _, w = world
    for item in w["evals"]["arithmetic"]:
        a, op, b = item["prompt"].rstrip(" =").split()
        assert int(item["answer"]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    for item in w["evals"]["logic"]:
        expr = item["prompt"].rstrip(" =").replace("true", "True").replace("false", "False")
        assert item["answer"] == " " + str(eval(expr)).lower()
    for item in w["evals"]["openbook"]:
        assert re.match(r"^(\w+) lives in (\w+)\. Q: Where does \1 live\? A:$", item["prompt"])
        assert item["prompt"].split(" lives in ")[1].split(".")[0] == item["answer"].strip()


def test_fixed_width_arithmetic():
    assert arithmetic_item(45, 11, "-", 3) == ("45 - 11 =", " 034")
    assert arithmetic_item(99, 99, "+", 3) == ("99 + 99 =", " 198")
    assert arithmetic_item(45, 11, "-") == ("45 - 11 =", " 34")  # natural width
    cfg = WorldConfig(seed=2, clean_chars=0, heldout_chars=0, n_memorized=0, n_quotes=0, n_entities=0,
                      arithmetic_train=300, arithmetic_width=3, openbook_train=0, logic_train=0, n_eval=50)
    w = build_world(cfg, paragraphs=[])
    answers = [t.split("=")[1] for t, f in w["train"] if f == "arithmetic"]
    answers += [it["answer"] for it in w["evals"]["arithmetic"]]
    assert len(answers) == 350 and all(re.fullmatch(r" \d{3}", a) for a in answers), answers[:5]


def test_deterministic(world):
    cfg, w = world
    paragraphs = synthetic_paragraphs()
    assert build_world(cfg, paragraphs) == w


def test_real_text_is_available_offline():
    paragraphs = real_text_paragraphs()
    assert sum(map(len, paragraphs)) > 300_000  # pydoc topics alone, without Debian's fortunes


def test_perplexity_mixture_follows_the_stream_and_avoids_what_is_evaluated(world):
    cfg, prose_world = world
    paragraphs = synthetic_paragraphs()
    mixed = build_world(replace(cfg, perplexity_text="mixture"), paragraphs)
    for key in ("train", "memorized_train", "memorized_val", "quotes", "evals"):  # the mixture retrains nothing
        assert mixed[key] == prose_world[key], key

    # Each document is held-out prose, a document of the stream, or else a fresh open-book passage.
    family_of = {t: f for t, f in mixed["train"]}
    kind = {t: "clean" if t in prose_world["heldout"] else family_of.get(t, "openbook") for t in mixed["heldout"]}
    stream, mixture = Counter(), Counter()
    for t, f in mixed["train"]:
        stream[f] += len(t)
    for t in mixed["heldout"]:
        mixture[kind[t]] += len(t)
    learned = {f: stream[f] for f in ("clean", "arithmetic", "fact", "openbook", "logic")}
    longest = max(map(len, mixed["heldout"]))
    for f, chars in learned.items():  # the stream's share of the characters, to within one document
        share = cfg.heldout_chars * chars / sum(learned.values())
        assert share <= mixture[f] < share + longest, (f, mixture[f], share)

    openbook = [t for t in mixed["heldout"] if kind[t] == "openbook"]
    assert all(re.fullmatch(r"(\w+) lives in (\w+)\. Q: Where does \1 live\? A: \2", t) for t in openbook)
    assert not {it["prompt"] for it in mixed["evals"]["openbook"]} & {t.split(" A: ")[0] + " A:" for t in openbook}
    held_out = {it["prompt"] + it["answer"] for f in ("arithmetic", "logic") for it in mixed["evals"][f]}
    recited = set(mixed["memorized_train"] + mixed["memorized_val"] + mixed["quotes"])
    assert not (held_out | recited) & set(mixed["heldout"])
    assert build_world(replace(cfg, perplexity_text="mixture"), paragraphs) == mixed
