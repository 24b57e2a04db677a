"""Data parallelism: the rules' `gpu` resource launches that many ranks under torchrun (gloo on this
CPU, NCCL on GPUs: the same code), and two ranks compute what one process computes: the K-FAC
factors of the tiny Olmo2 and the tiny ViT of config/test.yaml to float tolerance, and the ViT
trained with DistributedDataParallel at the same global batch; a failing rank still gives one line."""
import json

import numpy as np
import pytest

from conftest import copy_run, layout, run_module, snakemake

CFG = ("--configfile", "config/test.yaml")


def max_relative_difference(a: dict, b: dict) -> float:
    """max over tensors of max|a - b| / max|b| (an absolute error, relative to each tensor's scale)."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-30))
               for k in a if b[k].is_floating_point())


def test_own_batches_deal_global_batches_round_robin():
    from curvmem.distributed import Ranks, own_batches

    # 10 items in batches of 4: global batches [0-3], [4-7], [8-9]; rank 0 of 2 takes the first and the last.
    rank0 = own_batches(10, 4, Ranks(0, 2))
    rank1 = own_batches(10, 4, Ranks(1, 2))
    assert [i for i, _ in rank0] == [0, 2] and [i for i, _ in rank1] == [1]
    assert [r.tolist() for _, r in rank0] == [[0, 1, 2, 3], [8, 9]] and rank1[0][1].tolist() == [4, 5, 6, 7]
    assert own_batches(3, 4, Ranks(1, 2)) == []  # fewer batches than ranks: a rank may have none
    one = own_batches(10, 4, Ranks(0, 1))
    assert [r.tolist() for _, r in one] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_rank_order_splits_every_global_batch_across_ranks():
    from curvmem.distributed import Ranks
    from curvmem.vision.train import rank_order

    order = np.array([9, 3, 0, 7, 1, 8, 2, 6, 4, 5])  # global batches of 4: [9 3 0 7] [1 8 2 6] [4 5]
    assert rank_order(order, 4, Ranks(0, 2)).tolist() == [9, 3, 1, 8, 4]
    assert rank_order(order, 4, Ranks(1, 2)).tolist() == [0, 7, 2, 6, 5]
    assert rank_order(order, 4, Ranks(0, 1)).tolist() == order.tolist()


def test_batch_seeds_differ_across_batches_and_not_across_calls():
    from curvmem.distributed import batch_seed

    seeds = [batch_seed(0, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and seeds == [batch_seed(0, i) for i in range(1000)]
    assert batch_seed(1, 0) != batch_seed(0, 0) and all(0 <= s < 2**63 for s in seeds)


def _on_ranks(worker, size: int, tmp_path, *args) -> list:
    """Run worker(rank, *args) in `size` gloo processes; each returns a dict of tensors."""
    import torch.multiprocessing as mp

    mp.spawn(_join_and_run, args=(size, str(tmp_path / "store"), str(tmp_path), worker, args), nprocs=size)
    from safetensors.torch import load_file

    return [load_file(tmp_path / f"rank{r}.safetensors") for r in range(size)]


def _join_and_run(rank, size, store, out, worker, args):
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        save_file({k: v.contiguous() for k, v in worker(rank, *args).items()}, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def _vit_and_batch():
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=1,
                              num_heads=2, global_pool="token")
    return model, torch.randn(7, 1, 8, 8), torch.randint(0, 3, (7,))


def _ddp_gradient(rank):
    from torch.nn.parallel import DistributedDataParallel as DDP

    from curvmem.distributed import rank_slice, ranks
    from curvmem.vision.train import global_mean_loss

    model, x, y = _vit_and_batch()
    part = rank_slice(len(y), ranks())  # 4 and 3 images: unequal parts
    net = DDP(model)  # held: a DDP object that is gone before backward reduces nothing
    loss, _ = global_mean_loss(net(x[part]), y[part], len(y), ranks())
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_ddp_gradient_of_unequal_parts_is_the_global_batch_mean(tmp_path):
    import torch.nn.functional as F

    model, x, y = _vit_and_batch()
    F.cross_entropy(model(x), y).backward()  # one process, the whole batch
    for grads in _on_ranks(_ddp_gradient, 2, tmp_path):
        for name, p in model.named_parameters():
            assert (grads[name] - p.grad).abs().max() <= 1e-6 * p.grad.abs().max() + 1e-9, name


def _olmo2_factors(rank, fisher):
    import torch

    from curvmem.distributed import own_batches, ranks
    from curvmem.kfac import FactorConfig, collect_factors, factor_tensors
    from curvmem.lm.model import LMConfig, build_lm
    from curvmem.lm.positions import lm_forward

    torch.manual_seed(0)
    model = build_lm(LMConfig(arch="olmo2", vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=64))
    tokens = torch.randint(0, 50, (10, 12), generator=torch.Generator().manual_seed(1))
    own = own_batches(len(tokens), 3, ranks())  # 4 batches (the last of one sequence): 2 per rank
    batches = [{"input_ids": tokens[rows], "attention_mask": torch.ones_like(tokens[rows])} for _, rows in own]
    cfg = FactorConfig(modules=["model.layers.*.mlp.*"], fisher=fisher, seed=3, max_modules_per_pass=4)
    return factor_tensors(collect_factors(model, cfg, lambda: batches, lm_forward, progress=False))


@pytest.mark.parametrize("fisher", ["mc", "empirical"])
def test_factors_of_two_ranks_equal_one_rank_on_a_tiny_olmo2(tmp_path, fisher):
    one = _olmo2_factors(0, fisher)  # no process group: rank 0 of 1 takes every batch
    for two in _on_ranks(_olmo2_factors, 2, tmp_path, fisher):
        assert all(two[k].item() == one[k].item() for k in one if k.endswith(".n"))
        assert max_relative_difference(two, one) < 1e-5


@pytest.mark.pipeline
def test_two_ranks_give_the_factors_and_the_model_of_one(test_run, tmp_path):
    from curvmem.io import load_tensors

    work = copy_run(test_run, tmp_path / "work")
    art = layout(work)
    factors = [art["vit_factors"].factors, art["lm_factors"].factors]
    one = {path: load_tensors(work / path) for path in factors}

    ranks = ("--set-resources", "vit_factors:gpu=2", "lm_factors:gpu=2")
    run_module(work, "snakemake", *factors, "--cores", "2", *CFG, "--forcerun", "vit_factors", "lm_factors", *ranks)
    for path in factors:
        two = load_tensors(work / path)
        for name in one[path]:
            if name.endswith(".n"):  # every sample counted exactly once
                assert two[name].item() == one[path][name].item(), name
        assert max_relative_difference(two, one[path]) < 1e-5, path
    log = (work / f"logs/lm_factors/{art['lm_factors'].fp}.log").read_text()
    assert "rank 1/2" in log and "on 2 rank(s)" in log, log[-2000:]

    model, metrics = art["vit_train"].model, art["vit_train"].metrics
    one_model, one_history = load_tensors(work / model), json.loads((work / metrics).read_text())["history"]
    snakemake(work, *CFG, "--forcerun", "vit_train", "--set-resources", "vit_train:gpu=2", target=model)
    two_model, two_history = load_tensors(work / model), json.loads((work / metrics).read_text())["history"]
    assert len(two_history) == len(one_history)
    for a, b in zip(two_history, one_history):  # the loss curve and the fit of every epoch
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["train_fit_pct"] == pytest.approx(b["train_fit_pct"], abs=0.5)
    # Adam turns round-off in near-zero gradients into steps of size lr: a few 1e-3 of the weights' scale.
    assert max_relative_difference(two_model, one_model) < 1e-2
    assert "rank 1/2" in (work / f"logs/vit_train/{art['vit_train'].fp}.log").read_text()

    # A failure on two ranks is still one line on the console, the reason a rank gave.
    (work / model).write_bytes((work / model).read_bytes()[:1000])
    proc = run_module(work, "snakemake", factors[0], "--cores", "2", *CFG, "--forcerun", "vit_factors",
                      "--set-resources", "vit_factors:gpu=2", check=False)
    console = (proc.stdout + proc.stderr).splitlines()
    reasons = [line for line in console if line.startswith("rule vit_factors")]
    assert proc.returncode != 0 and len(reasons) == 1, console[-40:]
    assert f"{model}: not a readable safetensors file" in reasons[0]
    assert not any("ChildFailedError" in line or "elastic" in line for line in console), console[-40:]
