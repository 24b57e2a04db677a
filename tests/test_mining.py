"""Mining a memorized set (lm.mine, rule lm_mine): the window geometry and the near-duplicate rule on
hand-made examples, then the rule on the test world's model against its own training stream: it
finds the world's memorized paragraphs, rejects held-out text, and feeds lm_sets."""
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import copy_run, layout, run_module

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


class WordTokenizer:
    """One id per word (unknown words: 0), and id 1 before a document: a tokenizer small enough to
    work the window geometry out by hand."""

    def __call__(self, text, add_special_tokens=False):
        if isinstance(text, list):  # a batch, as fast tokenizers take it
            return {"input_ids": [self(t, add_special_tokens)["input_ids"] for t in text]}
        ids = [2 + WORDS.index(w) if w in WORDS else 0 for w in text.split()]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_windows_fit_documents_and_start_ids_mark_document_starts():
    from curvmem.lm.mining import MiningConfig, sample_windows

    texts = [" ".join(WORDS[:6]), " ".join(WORDS[:3]), " ".join(WORDS[6:10])]  # 6, 3 and 4 words
    windows = sample_windows(WordTokenizer(), texts, 2, 2, MiningConfig(n_windows=4000, seed=1))
    # Starts that fit a 4-token window: 3 in the first document, none in the second, 1 in the third.
    counts = windows.groupby(["doc", "start"]).size()
    assert sorted(counts.index) == [(0, 0), (0, 1), (0, 2), (2, 0)]
    assert np.allclose(counts / counts.sum(), 0.25, atol=0.03)  # uniform over valid start positions
    first = windows[(windows["doc"] == 0) & (windows["start"] == 1)].iloc[0]
    assert list(first["prefix_ids"]) == [3, 4] and list(first["suffix_ids"]) == [5, 6]
    at_start = windows[(windows["doc"] == 2) & (windows["start"] == 0)].iloc[0]
    assert list(at_start["prefix_ids"]) == [1, 8, 9] and list(at_start["suffix_ids"]) == [10, 11]


def test_near_duplicates_are_dropped_and_documents_stay_on_one_side():
    from curvmem.lm.mining import MiningConfig, deduplicate, split_by_document

    base = list(range(100, 120))
    frame = pd.DataFrame({
        "doc": [0, 1, 2, 3],
        "start": [0, 0, 0, 0],
        "prefix_ids": [base[:10], base[:10], base[:10], list(range(300, 310))],
        # 0: original; 1: one token of 20 changed (similarity 0.95); 2: half changed (0.5); 3: unrelated
        "suffix_ids": [base[10:], base[10:19] + [999], base[10:15] + list(range(200, 205)), list(range(310, 320))],
    })
    kept = deduplicate(frame, 0.9)
    assert kept["doc"].tolist() == [0, 2, 3]
    texts = ["a", "b", "a", "c"]  # documents 0 and 2 are the same text
    sides = split_by_document(frame, texts, MiningConfig(val_fraction=0.5, seed=0))
    assert sides[0] == sides[2] and set(sides) <= {"memorized_train", "memorized_val"}


@pytest.mark.pipeline
def test_mining_the_training_stream_finds_the_memorized_paragraphs(test_run, tmp_path):
    from curvmem.common import from_dict
    from curvmem.io import load_json, load_parquet
    from curvmem.lm.mining import MiningConfig, mine
    from curvmem.lm.model import load_model_dir
    from curvmem.lm.world import WorldConfig, build_world

    work = copy_run(test_run, tmp_path / "work")
    config = yaml.safe_load((work / "config/test.yaml").read_text())
    config["lm"]["mine"] = {"source": "train_docs", "n_windows": 3000, "batch_size": 64, "seed": 0, "device": "cpu"}
    (work / "config/test_mine.yaml").write_text(yaml.safe_dump(config))
    art = layout(work, "config/test_mine.yaml")
    assert art["lm_train"].model == layout(work)["lm_train"].model  # mining reuses the trained model
    run_module(work, "snakemake", art["lm_sets"].sets, "--cores", "2", "--configfile", "config/test_mine.yaml")

    summary = load_json(work / art["lm_mine"].summary)
    mined = load_parquet(work / art["lm_mine"].mined)
    docs = load_parquet(work / art["lm_data"].train_docs)["text"].tolist()
    assert summary["sampled"] == 3000 and 0 < summary["recited"] <= 3000 and len(mined) == summary["after_dedupe"]
    # Every world paragraph the model recites (the given sets of the test run) is found in the stream.
    given = load_parquet(work / layout(work)["lm_sets"].sets)
    memorized = set(given.loc[given["set"].str.startswith("memorized"), "text"])
    mined_docs = {docs[int(s.split("#doc")[1].split("@")[0])] for s in mined["source"]}
    assert memorized and memorized <= mined_docs, f"{len(memorized - mined_docs)} of {len(memorized)} missed"
    # Windows of one document text are all on one side of the split.
    sides = mined.assign(doc=[docs[int(s.split("#doc")[1].split("@")[0])] for s in mined["source"]])
    assert (sides.groupby("doc")["set"].nunique() == 1).all()
    # lm_sets took the mined windows as the memorized sets, token ids unchanged.
    sets = load_parquet(work / art["lm_sets"].sets)
    for name in ("memorized_train", "memorized_val"):
        ours = sets[sets["set"] == name]
        assert len(ours) == min(500, (mined["set"] == name).sum())
        assert set(ours["source"]) <= set(mined["source"])

    # Held-out prose, never trained on, is rejected (the world's templated families are predictable
    # by rule, so their held-out documents are not a test of memorization).
    model, tokenizer = load_model_dir(str(work / art["lm_train"].model))
    world = from_dict(WorldConfig, {**config["lm"]["world"], "perplexity_text": "prose"})
    heldout = build_world(world)["heldout"]
    assert not set(heldout) & set(docs)
    _, rejected = mine(model, tokenizer, heldout, 8, 8, MiningConfig(n_windows=1000, batch_size=64), "cpu", "heldout")
    assert rejected["sampled"] == 1000 and rejected["hit_rate_pct"] <= 1.0, rejected
