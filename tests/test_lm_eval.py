"""LM evaluation and selection against hand-worked references and invariants."""
import hashlib
import math

import pytest
import torch

from curvmem.common import InputError, from_dict
from curvmem.lm.data import DataStage, build, read_records, task_frame
from curvmem.lm.evaluate import answer_correct, block_predictions, ndcg_at_10
from curvmem.lm.sets import WindowConfig, make_window
from curvmem.lm.tables import above_chance, select, sweep_table, table1
from curvmem.lm.tokens import doc_start_ids
from curvmem.lm.train import world_tokenizer


def test_ndcg_identical_is_one_and_disjoint_is_zero():
    ref = torch.arange(20).reshape(2, 10)
    assert torch.allclose(ndcg_at_10(ref, ref), torch.ones(2, dtype=torch.float64))
    assert torch.equal(ndcg_at_10(ref, ref + 100), torch.zeros(2, dtype=torch.float64))


def test_ndcg_hand_worked_swap():
    """Swap the top two tokens: gains 9, 10, 8, ..., 1 against the ideal 10, 9, 8, ..., 1."""
    ref = torch.arange(10)[None]
    ranking = torch.tensor([[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]])
    rest = sum((10 - i) / math.log2(i + 2) for i in range(2, 10))
    expected = (9 / 1 + 10 / math.log2(3) + rest) / (10 / 1 + 9 / math.log2(3) + rest)
    assert ndcg_at_10(ref, ranking).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("generated,answer,ok", [
    (" 85\n", " 85", True), (" 85<|endoftext|>", " 85", True), (" 855", " 85", False), (" 8", " 85", False),
    (" true and", " true", True), (" trueish", " true", False), ("85", " 85", True),
])
def test_answer_correct(generated, answer, ok):
    assert answer_correct(generated, answer) is ok


class Uniform(torch.nn.Module):
    """A language model whose next-token distribution is uniform: perplexity = vocabulary size."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, **_):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab)})()


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    blocks = torch.randint(0, 37, (10, 9))
    metrics, top10 = block_predictions(Uniform(37), blocks, batch_size=3, device="cpu")
    assert metrics["perplexity"] == pytest.approx(37, rel=1e-5)
    assert metrics["perplexity_batch_mean"] == pytest.approx(37, rel=1e-5)
    assert metrics["perplexity_tokens"] == 10 * 8 and top10.shape == (80, 10)


def _row(method, layer_set, cutoff, recite, ppl, token_ppl=None, setting=None):
    sets = {s: {"strict_pct": recite, "loose_pct": recite, "levenshtein": 0.0, "n": 20}
            for s in ("memorized_train", "memorized_val", "quotes")}
    setting = setting if setting is not None else ("" if method == "none" else repr(float(cutoff)))
    return {"method": method, "layer_set": layer_set, "cutoff": cutoff, "setting": setting, "kept_fraction": 1.0,
            "perplexity": ppl if token_ppl is None else token_ppl, "perplexity_batch_mean": ppl, "ndcg10": 1.0,
            "tasks": {}, **sets}


def test_selection_rule_by_hand():
    rows = [_row("none", "", 1.0, 100, 10.0),
            _row("kfac", "a", 0.5, 0, 20.0),    # lowest recitation but +100% perplexity: out of bound
            _row("kfac", "a", 0.7, 10, 12.0),   # tie on recitation with the next, higher perplexity
            _row("kfac", "b", 0.7, 10, 11.0),   # <- chosen
            _row("kfac", "b", 0.9, 50, 10.5),
            _row("svd", "a", 0.5, 5, 30.0), _row("svd", "a", 0.25, 40, 16.0)]
    sweep = sweep_table(rows)
    kfac = select(sweep, "kfac", 0.25)
    assert (kfac["layer_set"], kfac["cutoff"], kfac["within_bound"]) == ("b", 0.7, 3)
    svd = select(sweep, "svd", 0.25)  # nothing within +25%: the smallest increase is taken and said so
    assert (svd["layer_set"], svd["cutoff"]) == ("a", 0.25) and "no edit within" in svd["rule"]


def test_bsn_grid_points_sharing_a_ratio_are_told_apart():
    """Two BSN points with the same ratio (the cutoff column) differ by their setting: the rule picks
    one of them, and Table 1 finds exactly that row."""
    bsn = {"loss_weight": 0.7, "epochs": 5, "lr": 0.3}
    rows = [_row("none", "", 1.0, 100, 10.0), _row("kfac", "a", 0.5, 0, 11.0), _row("svd", "a", 0.5, 5, 11.0),
            {**_row("bsn", "a", 0.01, 30, 11.0, setting="r0.01-w0.3-e5-lr0.3"), "bsn": {**bsn, "loss_weight": 0.3}},
            {**_row("bsn", "a", 0.01, 20, 11.5, setting="r0.01-w0.7-e5-lr0.3"), "bsn": bsn}]
    sweep = sweep_table(rows)
    choice = select(sweep, "bsn", 0.25)
    assert choice["setting"] == "r0.01-w0.7-e5-lr0.3"
    t1 = table1(sweep, {m: select(sweep, m, 0.25) for m in ("kfac", "svd", "bsn")}).set_index("model")
    assert t1.loc["bsn", "memorized_val_strict_pct"] == 20
    assert t1.loc["bsn", "setting"] == "a, ratio 0.01, loss weight 0.7, 5 epochs, lr 0.3"


def test_selection_bound_is_on_the_reported_perplexity():
    """The bound applies to the mean of per-batch exp (what Table 1 reports), not to exp of the
    mean loss: an edit within +25% on the token measure but +30% on the reported one is out."""
    rows = [_row("none", "", 1.0, 100, 10.0, token_ppl=10.0),
            _row("kfac", "a", 0.5, 0, 13.0, token_ppl=12.4),   # +30% reported, +24% token-level: out
            _row("kfac", "a", 0.7, 20, 12.0, token_ppl=11.0),  # +20% reported: chosen
            _row("svd", "a", 0.5, 5, 11.0)]
    sweep = sweep_table(rows)
    assert sweep.perplexity_increase_pct.round(6).tolist() == [0.0, 30.0, 20.0, 10.0]
    kfac = select(sweep, "kfac", 0.25)
    assert (kfac["layer_set"], kfac["cutoff"]) == ("a", 0.7)


def test_above_chance():
    assert above_chance(61, 50, 200)          # 11 points > 3 standard errors (10.6)
    assert not above_chance(60, 50, 200)      # 10 points < 3 standard errors
    assert not above_chance(54, 50, 200)      # under 5 points
    assert not above_chance(58, 50, 50)       # 8 points < 3 standard errors (21.2)
    assert above_chance(10, 0.5, 200)


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "12 + 34 = 46", "true and false = false"] * 20
    return world_tokenizer(texts, 300)


def test_windows(tokenizer):
    cfg = WindowConfig(prefix=4, suffix=3, quote_suffix=2)
    text = "The quick brown fox jumps over the lazy dog."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    memo = {"set": "memorized_train", "text": text, "prefix": None, "suffix": None}
    eos = tokenizer.eos_token_id  # windows cut from a text's start begin as training documents did
    assert make_window(tokenizer, memo, cfg) == ([eos] + ids[:4], ids[4:7])
    quote = {**memo, "set": "quotes"}
    assert make_window(tokenizer, quote, cfg) == ([eos] + ids[:-2], ids[-2:])
    assert make_window(tokenizer, {**memo, "text": "The"}, cfg) is None  # too short
    given = {**memo, "prefix": "The quick brown fox jumps", "suffix": " over the lazy dog."}
    p, s = make_window(tokenizer, given, cfg)
    assert len(p) == 4 and len(s) == 3 and tokenizer.decode(s).startswith(" over")  # mid-document: no start


def test_doc_start_ids(tokenizer, tmp_path):
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    assert doc_start_ids(tokenizer) == [tokenizer.eos_token_id]  # training packs documents after an EOS
    tokenizer.save_pretrained(tmp_path / "tok")
    assert doc_start_ids(AutoTokenizer.from_pretrained(tmp_path / "tok")) == [tokenizer.eos_token_id]
    # A tokenizer that wraps text as <pad> text <eos> starts documents with <pad> only.
    wrapping = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # a copy: the fixture is shared
    wrapping.post_processor = processors.TemplateProcessing(single="<|pad|> $A <|endoftext|>",
                                                            special_tokens=[("<|pad|>", 0), ("<|endoftext|>", 1)])
    assert doc_start_ids(PreTrainedTokenizerFast(tokenizer_object=wrapping)) == [0]


def test_few_shot_prompts_use_training_items_of_the_same_family():
    evals = {"arithmetic": [{"prompt": "1 + 1 =", "answer": " 2"}], "logic": [{"prompt": "true =", "answer": " true"}]}
    docs = [("3 + 4 = 7", "arithmetic"), ("5 + 1 = 6", "arithmetic"), ("not true = false", "logic"),
            ("false = false", "logic"), ("some prose", "clean")]
    frame = task_frame(evals, docs, few_shot=2, seed=0)
    arith = frame[frame.family == "arithmetic"].iloc[0]
    lines = arith.prompt.split("\n")
    assert sorted(lines[:2]) == ["3 + 4 = 7", "5 + 1 = 6"] and lines[2] == "1 + 1 ="
    assert frame.set_index("family").chance.to_dict() == {"arithmetic": 1.0, "logic": 0.5}


def test_files_source(tmp_path):
    mem = tmp_path / "memorized.jsonl"
    mem.write_text("".join(f'{{"text": "window number {i}", "source": "dolma"}}\n' for i in range(10)))
    quotes = tmp_path / "quotes.jsonl"
    quotes.write_text('{"prefix": "To be or not", "suffix": " to be"}\n')
    clean = tmp_path / "clean.txt"
    clean.write_text("\n\n".join(f"Paragraph {i} of clean text." for i in range(8)))
    assert read_records(str(quotes)) == [{"prefix": "To be or not", "suffix": " to be"}]
    world = dict(arithmetic_train=50, openbook_train=10, logic_train=20, n_eval=5)
    frames, manifest = build(from_dict(DataStage, {"world": world, "files": {"memorized": str(mem),
                                                                               "quotes": str(quotes),
                                                                               "clean": str(clean), "factor_share": 0.25},
                                                   "few_shot": 3}))
    assert manifest["clean"]["documents"] == 8 and manifest["memorized"]["documents"] == 10
    assert manifest["quotes"]["local_files"] == [{"path": str(quotes),
                                                  "sha256": hashlib.sha256(quotes.read_bytes()).hexdigest()}]
    cand = frames["candidates"]
    assert (cand.set.value_counts().to_dict() == {"memorized_train": 5, "memorized_val": 5, "quotes": 1})
    assert set(cand[cand.set == "memorized_train"].text).isdisjoint(cand[cand.set == "memorized_val"].text)
    assert (cand[cand.set != "quotes"].source == "dolma").all()
    assert frames["clean"].split.value_counts().to_dict() == {"perplexity": 6, "factors": 2}
    assert set(frames["tasks"].family) == {"arithmetic", "openbook", "logic"}  # no facts without training on them
    assert (frames["tasks"].prompt.str.count("\n") == 3).all()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"title": "x"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl, line 3: needs a 'text' key"):
        read_records(str(bad))
    bad.write_text('{"text": "fine"}\n{"text": "cut\n')
    with pytest.raises(InputError, match=r"bad.jsonl, line 2: not valid JSON"):
        read_records(str(bad))
