"""Performance ratios of the curvature engine, measured side by side in one run.

1. K-FAC collection time / plain forward+backward time on the same batches (goal <= 1.15).
2. Time of a sweep of n cutoffs / (one eigendecomposition + n edits' matrix products) (goal <= 1.3).

    python benchmarks/kfac_overhead.py                 # default-scale ViT, ViT-B/16-sized MLP matrix
    python benchmarks/kfac_overhead.py --vit-depth 2 --vit-dim 768 --img 224 --patch 16
    python benchmarks/kfac_overhead.py --lm            # default-scale Olmo2 (every next-token position)
    python benchmarks/kfac_overhead.py --lm --lm-hidden 576 --lm-inter 1536 --lm-layers 30 --lm-heads 9 \
        --lm-vocab 49152 --lm-batch 4                   # SmolLM2-135M dims
    ... --lm-factor-layers '2[123]'                       # factors of three layers only, as at paper scale

Prints ratios, not absolute times, so numbers from different machines can be compared.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from curvmem.basis import eigh_descending
from curvmem.edit import CurvatureEditor
from curvmem.kfac import FactorConfig, collect_factors
from curvmem.vision.factors import cls_forward
from curvmem.vision.model import ViTConfig, build_vit


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def collection_ratio(args) -> float:
    torch.manual_seed(0)
    cfg = ViTConfig(img_size=args.img, patch_size=args.patch, in_chans=3 if args.img > 64 else 1,
                    embed_dim=args.vit_dim, depth=args.vit_depth, num_heads=max(1, args.vit_dim // 64))
    model = build_vit(cfg).eval()
    batches = [(torch.randn(args.batch, cfg.in_chans, args.img, args.img), torch.randint(0, 10, (args.batch,)))
               for _ in range(args.batches)]

    def plain():
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()

    factor_cfg = FactorConfig(modules=["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"], fisher="mc")

    def kfac():
        collect_factors(model, factor_cfg, lambda: batches, cls_forward, progress=False)

    t_plain, t_kfac = timed(plain, args.repeats), timed(kfac, args.repeats)
    print(f"K-FAC collection: {t_kfac:.3f}s, plain forward+backward: {t_plain:.3f}s "
          f"({len(batches)} batches of {args.batch}, ViT dim {args.vit_dim} depth {args.vit_depth})")
    return t_kfac / t_plain


def lm_collection_ratio(args) -> float:
    from curvmem.lm.model import LMConfig, build_lm
    from curvmem.lm.positions import lm_forward

    model = build_lm(LMConfig(arch="olmo2", vocab_size=args.lm_vocab, hidden_size=args.lm_hidden,
                              intermediate_size=args.lm_inter, num_hidden_layers=args.lm_layers,
                              num_attention_heads=args.lm_heads, max_position_embeddings=args.lm_seq))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.lm_vocab, (args.lm_batch, args.lm_seq), generator=g) for _ in range(args.batches)]
    tokens = sum(b.numel() for b in batches)

    def plain():
        for x in batches:
            model.zero_grad(set_to_none=True)
            model(input_ids=x, labels=x).loss.backward()

    modules = [f"model.layers.{args.lm_factor_layers}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    factor_cfg = FactorConfig(modules=modules, fisher="mc")
    lm_batches = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in batches]

    def kfac():
        collect_factors(model, factor_cfg, lambda: lm_batches, lm_forward, progress=False)

    t_plain, t_kfac = timed(plain, args.repeats), timed(kfac, args.repeats)
    print(f"LM K-FAC collection: {tokens / t_kfac:.0f} tokens/s, plain forward+backward: {tokens / t_plain:.0f} "
          f"tokens/s ({len(batches)} batches of {args.lm_batch}x{args.lm_seq}, hidden {args.lm_hidden}, "
          f"{args.lm_layers} layers, gate/up/down of layers {args.lm_factor_layers!r})")
    return t_kfac / t_plain


def sweep_ratio(args) -> float:
    torch.manual_seed(0)
    d_out, d_in = args.d_out, args.d_in
    X = torch.randn(4 * d_out, d_out)
    Y = torch.randn(4 * d_in, d_in)
    G, A = X.T @ X / len(X), Y.T @ Y / len(Y)
    W = torch.randn(d_out, d_in)
    rhos = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9][: args.cutoffs]

    def sweep():
        lam, U_G = eigh_descending(G)
        mu, U_A = eigh_descending(A)
        editor = CurvatureEditor(W, lam, U_G, mu, U_A)
        for rho in rhos:
            editor.edit(rho)

    def reference():
        _, U_G = eigh_descending(G)
        _, U_A = eigh_descending(A)
        for _ in rhos:
            U_G @ W @ U_A.T

    t_sweep, t_ref = timed(sweep, args.repeats), timed(reference, args.repeats)
    print(f"sweep of {len(rhos)} cutoffs on a {d_out}x{d_in} weight: {t_sweep:.3f}s, "
          f"eigendecompositions + {len(rhos)} edits' matrix products: {t_ref:.3f}s")
    return t_sweep / t_ref


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vit-dim", type=int, default=96)
    p.add_argument("--vit-depth", type=int, default=4)
    p.add_argument("--img", type=int, default=28)
    p.add_argument("--patch", type=int, default=7)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--d-out", type=int, default=3072, help="ViT-B/16 fc1: 3072 x 768")
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--cutoffs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lm", action="store_true", help="measure the LM collector instead of the ViT's")
    p.add_argument("--lm-hidden", type=int, default=128)
    p.add_argument("--lm-inter", type=int, default=512)
    p.add_argument("--lm-layers", type=int, default=4)
    p.add_argument("--lm-heads", type=int, default=4)
    p.add_argument("--lm-vocab", type=int, default=2048)
    p.add_argument("--lm-seq", type=int, default=128)
    p.add_argument("--lm-batch", type=int, default=32)
    p.add_argument("--lm-factor-layers", default="*", help="layer-index glob of the collected layers (paper: '2[345]')")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    r1 = lm_collection_ratio(args) if args.lm else collection_ratio(args)
    r2 = sweep_ratio(args)
    print(f"ratio K-FAC collection / plain forward+backward: {r1:.2f} (goal <= 1.15)")
    print(f"ratio cutoff sweep / (eigendecomposition + n edit products): {r2:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
