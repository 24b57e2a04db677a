"""LM pieces of the engine on tiny random-weight instances of the paper's architectures."""
import pytest
import torch

from curvmem.kfac import FactorConfig, collect_factors, expectations, factor_tensors
from curvmem.lm.model import LMConfig, build_lm
from curvmem.lm.positions import lm_forward, next_token_positions
from curvmem.lm.recitation import greedy_continuations, recitation_metrics, teacher_forced_match

TINY = dict(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2)


def tiny(arch="olmo2", dtype="float64", seed=0):
    return build_lm(LMConfig(arch=arch, dtype=dtype, **TINY), seed=seed)


def batch_of(seqs, pad_side="right"):
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if pad_side == "right" else slice(width - len(s), width)
        ids[i, sl], mask[i, sl] = torch.tensor(s), 1
    return {"input_ids": ids, "attention_mask": mask}


MLP = ["model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"]


def factors(model, batches, fisher="empirical", modules=MLP):
    sums = collect_factors(model, FactorConfig(modules=modules, fisher=fisher), lambda: batches, lm_forward,
                           progress=False)
    return sums


def test_next_token_positions():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]])
    expected = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(next_token_positions(mask), expected)


@pytest.mark.parametrize("arch", ["olmo2", "llama"])
def test_one_sequence_one_position_equals_gradient_outer_product(arch):
    """Two tokens: only position 0 predicts a next token, and causality keeps position 1 out of
    its loss, so K-FAC is exact: kron(G, A) = vec(dL/dW) vec(dL/dW)^T."""
    model = tiny(arch)
    batch = batch_of([[5, 17]])
    sums = factors(model, [batch])
    modules = dict(model.named_modules())
    logits = model(**batch).logits
    loss = torch.nn.functional.cross_entropy(logits[0, :1], torch.tensor([17]))
    names = list(sums)
    grads = torch.autograd.grad(loss, [modules[n].weight for n in names])
    for name, grad in zip(names, grads):
        G, A = expectations(factor_tensors({name: sums[name]}))[name]
        exact = torch.outer(grad.flatten(), grad.flatten())
        torch.testing.assert_close(torch.kron(G.double(), A.double()), exact, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("pad_side", ["left", "right"])
def test_padding_is_masked(pad_side):
    model = tiny()
    seqs = [[3, 9, 4, 11, 2], [7, 1, 30]]
    padded = factors(model, [batch_of(seqs, pad_side)])
    alone = [factors(model, [batch_of([s])]) for s in seqs]
    for name in padded:
        assert padded[name]["n"].item() == 4 + 2
        for key in ("A", "G"):
            torch.testing.assert_close(padded[name][key], alone[0][name][key] + alone[1][name][key],
                                       rtol=1e-4, atol=1e-6)


def naive_greedy(model, prefix, n_new):
    seq = list(prefix)
    for _ in range(n_new):
        logits = model(input_ids=torch.tensor([seq])).logits
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(prefix):]


@pytest.mark.parametrize("arch", ["olmo2", "llama"])
def test_batched_left_padded_greedy_equals_naive_decoding(arch):
    model = tiny(arch, dtype="float32", seed=3)
    prefixes = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11], [12]]
    batched = greedy_continuations(model, prefixes, n_new=6, pad_id=0, batch_size=3)
    assert batched == [naive_greedy(model, p, 6) for p in prefixes]


def test_teacher_forced_match_agrees_with_greedy():
    model = tiny(dtype="float32", seed=4)
    prefixes = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    cont = greedy_continuations(model, prefixes, n_new=5, pad_id=0)
    seqs = [p + c for p, c in zip(prefixes, cont)]
    seqs[1][-1] = (seqs[1][-1] + 1) % 40  # a different last suffix token: no longer recited
    assert teacher_forced_match(model, seqs, prefix_len=4) == [True, False, True]


def test_recitation_metrics_by_hand():
    suffixes = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]
    generated = [[1, 2, 3, 4], [1, 2, 9, 4], [9, 9, 9, 4]]  # distances 0, 1, 3 of 4
    m = recitation_metrics(generated, suffixes)
    assert m["strict_pct"] == pytest.approx(100 / 3)
    assert m["loose_pct"] == pytest.approx(200 / 3)  # 1 - 1/4 = 0.75 counts as loose
    assert m["levenshtein"] == pytest.approx((0 + 0.25 + 0.75) / 3)


def tiny_gpt2(seed=0):
    """A model with absolute position embeddings: positions must be counted over real tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2, pad_token_id=0)
    return GPT2LMHeadModel(config).double().eval()


@pytest.mark.parametrize("pad_side", ["left", "right"])
def test_padding_is_masked_with_absolute_positions(pad_side):
    """Left padding shifts every position of a GPT-2 unless position ids count real tokens only:
    factors of a padded batch must equal the sum of each sequence's own. (GPT-2's MLP layers are
    Conv1D; its lm_head is an nn.Linear whose inputs depend on every position.)"""
    model = tiny_gpt2()
    seqs = [[3, 9, 4, 11, 2], [7, 1, 30]]
    cfg = FactorConfig(modules=["lm_head"], fisher="empirical")
    padded = collect_factors(model, cfg, lambda: [batch_of(seqs, pad_side)], lm_forward, progress=False)
    alone = [collect_factors(model, cfg, lambda s=s: [batch_of([s])], lm_forward, progress=False) for s in seqs]
    for key in ("A", "G"):
        torch.testing.assert_close(padded["lm_head"][key], alone[0]["lm_head"][key] + alone[1]["lm_head"][key],
                                   rtol=1e-4, atol=1e-6)


def test_greedy_with_left_padding_and_absolute_positions():
    model = tiny_gpt2(seed=2).float()
    prefixes = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11]]
    assert greedy_continuations(model, prefixes, n_new=5, pad_id=0, batch_size=3) == [
        naive_greedy(model, p, 5) for p in prefixes]


def test_activation_ratio_with_windows_of_different_lengths():
    """Windows of several (prefix, suffix) lengths (quotes, or windows given as strings): each length
    group is compared with clean windows of its own length cut in order from the clean stream, and
    no window is dropped; the result equals assembling the groups by hand."""
    import pandas as pd

    from curvmem.activations import capture_inputs, ratio_table
    from curvmem.basis import curvature_basis
    from curvmem.lm.activations import lm_activation_ratio, suffix_positions

    model = tiny(dtype="float32")
    names = ["model.layers.0.mlp.gate_proj", "model.layers.1.mlp.down_proj"]
    basis = curvature_basis(factor_tensors(factors(model, [batch_of([list(range(1, 20))])], modules=names)))
    windows = pd.DataFrame({"prefix_ids": [[7, 8, 9, 10, 11], [1, 2, 3], [4, 5, 6]],
                            "suffix_ids": [[16, 17, 18], [12, 13], [14, 15]]})
    stream = torch.randint(1, 40, (200,), generator=torch.Generator().manual_seed(0))
    table = lm_activation_ratio(model, names, basis, windows, stream, batch_size=2, device="cpu")

    def inputs(seqs, prefix_len):
        return capture_inputs(model, names, [seqs], lambda m, x: (m(input_ids=x), suffix_positions(x, prefix_len))[1])

    short_mem, long_mem = torch.tensor([[1, 2, 3, 12, 13], [4, 5, 6, 14, 15]]), torch.tensor([[7, 8, 9, 10, 11, 16, 17, 18]])
    short_clean, long_clean = stream[:10].reshape(2, 5), stream[10:18].reshape(1, 8)  # shorter group first
    mem = [inputs(short_mem, 3), inputs(long_mem, 5)]
    clean = [inputs(short_clean, 3), inputs(long_clean, 5)]
    assert sum(len(m[names[0]]) for m in mem) == 2 + 2 + 3  # every suffix-predicting position
    merge = lambda parts: {n: torch.cat([p[n] for p in parts]) for n in names}  # noqa: E731
    expected = ratio_table(model, names, basis, merge(mem), merge(clean))
    pd.testing.assert_frame_equal(table, expected)


def test_gradient_checkpointing_and_bf16_weights_keep_the_factors():
    """The paper-scale collection settings: recomputing each layer in backward changes nothing (and
    does recompute: the hooked layer runs twice per batch), and a bfloat16 model still sums in
    float32, to within bfloat16's precision of the float32 model."""
    from curvmem.lm.factors import checkpoint_layers

    seqs = torch.randint(0, 40, (6, 10), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": seqs[i:i + 3], "attention_mask": torch.ones_like(seqs[i:i + 3])} for i in (0, 3)]
    plain = factor_tensors(factors(tiny(dtype="float32"), batches, fisher="mc"))
    model = tiny(dtype="float32")
    checkpoint_layers(model)
    calls = []
    model.model.layers[1].mlp.register_forward_hook(lambda *_: calls.append(1))
    checkpointed = factor_tensors(factors(model, batches, fisher="mc"))
    assert len(calls) == 2 * len(batches), len(calls)  # the forward and its recomputation in backward
    half = factor_tensors(factors(tiny(dtype="bfloat16"), batches, fisher="empirical"))
    full = factor_tensors(factors(tiny(dtype="float32"), batches, fisher="empirical"))
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-6, atol=1e-7)
        assert half[key].dtype == full[key].dtype, key
        if not key.endswith(".n"):
            scale = full[key].abs().max()
            assert (half[key] - full[key]).abs().max() <= 0.05 * scale, key
