"""The positional stress test (paper Table 6): prompt construction against a hand-worked example,
the batched scorer against a naive token-by-token loop."""
import numpy as np

from curvmem.lm.recitation import greedy_continuations
from curvmem.lm.stress import StressConfig, match_length, perturbed_prompts, stress_test
from test_lm_core import naive_greedy, tiny


def test_prompts_by_hand():
    prefix, suffix = [1, 2, 3, 4, 5, 6], [10, 11, 12, 13]  # n = 6, k = 4
    assert perturbed_prompts(prefix, suffix, t=2) == [
        ([1, 2, 3, 4, 5, 6, 10], [11, 12, 13]),       # left-extended by 1 gold token
        ([1, 2, 3, 4, 5, 6, 10, 11], [12, 13]),       # by 2
        ([4, 5, 6], [10, 11, 12, 13]),                # right-shifted: the last m = 3, 4, 5 prefix tokens
        ([3, 4, 5, 6], [10, 11, 12, 13]),
        ([2, 3, 4, 5, 6], [10, 11, 12, 13]),
    ]
    # t >= k: left-extension stops at k - 1 moved tokens; no right shift keeps more than t tokens of 6
    assert [len(g) for _, g in perturbed_prompts(prefix, suffix, t=9)] == [3, 2, 1]


def test_match_length_by_hand():
    assert match_length([1, 2, 3], [1, 2, 3]) == 3
    assert match_length([1, 2, 9, 4], [1, 2, 3, 4]) == 2  # a prefix: later agreement does not count
    assert match_length([9, 2], [1, 2]) == 0
    assert match_length([], [1]) == 0


def naive_scores(model, prefix, suffix, t):
    """The definition, written out: each prompt decoded alone, token by token, without a cache."""
    n, k = len(prefix), len(suffix)
    original = match_length(naive_greedy(model, prefix, k), suffix)
    perturbed = 0
    for i in range(1, min(t, k - 1) + 1):
        gold = suffix[i:]
        perturbed = max(perturbed, match_length(naive_greedy(model, prefix + suffix[:i], len(gold)), gold))
    for m in range(t + 1, n):
        perturbed = max(perturbed, match_length(naive_greedy(model, prefix[-m:], k), suffix))
    return original, perturbed


def test_batched_scorer_equals_the_naive_loop():
    model = tiny(dtype="float32", seed=5)
    prefixes = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20, 21], [3, 1, 4, 1, 5, 9, 2]]
    own = greedy_continuations(model, prefixes, n_new=6, pad_id=0)  # the model "recites" its own continuations
    golds = [own[0], own[1][:3] + [(own[1][3] + 1) % 40] + own[1][4:], [(own[2][0] + 7) % 40] + own[2][1:], own[3]]
    windows = list(zip(prefixes, golds))
    result = stress_test(model, windows, StressConfig(max_shift=3), pad_id=0, batch_size=5, device="cpu")
    reference = [naive_scores(model, p, s, 3) for p, s in windows]
    assert result["original"] == [o for o, _ in reference]
    assert result["perturbed"] == [p for _, p in reference]
    assert result["original"][0] == 6 and result["original"][1] == 3  # the hand-made golds
    assert result["original_mean"] == np.mean([o for o, _ in reference])
    assert result["original_full_match_pct"] == 100 * np.mean([o == 6 for o, _ in reference])
    assert result["prompts_per_window"] == 1 + 3 + (7 - 1 - 3)


def test_no_windows_gives_nan_summary():
    result = stress_test(tiny(dtype="float32"), [], StressConfig(), pad_id=0, batch_size=4, device="cpu")
    assert result["n"] == 0 and np.isnan(result["original_mean"]) and result["original"] == []


def test_generations_table_by_hand():
    """One Markdown row per prompt: the document-start token hidden, pipes escaped, line breaks shown,
    a continuation cut where its document ends."""
    from curvmem.lm.generations import Prompt, markdown_table
    from curvmem.lm.tokens import doc_start_ids
    from curvmem.lm.train import world_tokenizer

    tok = world_tokenizer(["a | b\nc", "hello world"] * 20, 300)
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompts = [Prompt("general", doc_start_ids(tok) + encode("hello"), 8),
               Prompt("quotes", encode("hello"), 2, gold=encode(" world"))]
    outputs = {"baseline": [encode("a | b\nc") + [tok.eos_token_id] + encode("hello"), encode(" world")]}
    lines = markdown_table(tok, prompts, outputs, {"baseline": "unedited"}, "T").splitlines()
    assert lines[2] == "| kind | prompt | gold continuation | unedited |"
    assert lines[4] == "| general | hello |  | a \\| b ⏎ c [end of document] |"
    assert lines[5] == "| quotes | hello | world | world |"
