"""The paper-scale LM engine on one GPU: a random-weight model of OLMo-2-7B's shape in bf16.

1. K-FAC collection of layers 23-25 gate/up/down at sequence length 512 (tokens/s, peak memory),
   beside a plain forward+backward (every weight's gradient) on the same batches. Goal: >= 10k
   tokens/s on one H100 (the authors' own comment implies ~6.7k tokens/s for 4 layers).
2. Eigendecompositions of the collected 11008^2 and 4096^2 factors in float32 and float64: time,
   eigenvalue agreement, agreement of the top eigenvectors, and of the kept pairs at rho = 0.6.
3. The edit of the paper's layer set (gate + up of layers 23-25) at 6 cutoffs from one basis.

    python benchmarks/gpu_paper_scale.py                          # OLMo-2-7B shape on cuda (~40 GB)
    python benchmarks/gpu_paper_scale.py --toy --device cpu       # toy dimensions (tests/test_benchmarks.py)
    python benchmarks/gpu_paper_scale.py --json out.json          # the numbers, also as JSON

Weights are random, so the numbers measure the engine's cost, not the paper's spectra.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from curvmem.basis import eigh_descending
from curvmem.edit import CurvatureEditor
from curvmem.kfac import FactorConfig, collect_factors, expectations, factor_tensors
from curvmem.lm.model import LMConfig, build_lm
from curvmem.lm.positions import lm_forward

OLMO2_7B = dict(vocab_size=100352, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32)
TOY = dict(vocab_size=256, hidden_size=32, intermediate_size=88, num_hidden_layers=4, num_attention_heads=4)
RHOS = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory since the last reset (None on CPU, where torch does not track it)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} GiB"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def collection(model, layers: list[int], batches: list[torch.Tensor], device) -> tuple[dict, dict]:
    """(numbers, factor sums) of the K-FAC collection and of a plain forward+backward."""
    tokens = sum(b.numel() for b in batches)
    lm_batches = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in batches]
    modules = [f"model.layers.{i}.mlp.{p}" for i in layers for p in ("gate_proj", "up_proj", "down_proj")]
    cfg = FactorConfig(modules=modules, fisher="mc", seed=0)
    collect_factors(model, cfg, lambda: lm_batches[:1], lm_forward, device=device, progress=False)  # warm-up

    reset_peak(device)
    sums = {}
    t_kfac = timed(lambda: sums.update(collect_factors(model, cfg, lambda: lm_batches, lm_forward, device=device,
                                                       progress=False)), device)
    peak_kfac = peak_gib(device)

    def plain():
        for x in batches:
            model.zero_grad(set_to_none=True)
            model(input_ids=x, labels=x, use_cache=False).loss.backward()
        model.zero_grad(set_to_none=True)

    plain()  # warm-up
    reset_peak(device)
    t_plain = timed(plain, device)
    peak_plain = peak_gib(device)
    assert len(sums) == 3 * len(layers), sorted(sums)
    return {"tokens": tokens, "kfac_s": t_kfac, "kfac_tokens_per_s": tokens / t_kfac, "kfac_peak_gib": peak_kfac,
            "plain_s": t_plain, "plain_tokens_per_s": tokens / t_plain, "plain_peak_gib": peak_plain,
            "kfac_over_plain": t_kfac / t_plain, "modules": sorted(sums)}, sums


def eigh_in(M: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    evals, evecs = torch.linalg.eigh(M.to(dtype))
    return evals.flip(0).clamp(min=0), evecs.flip(1)


def eigendecompositions(G: torch.Tensor, A: torch.Tensor, W: torch.Tensor, top: int, device) -> dict:
    """float32 vs float64 eigendecompositions of one module's factors: time and agreement."""
    out = {}
    bases = {}
    for name, M in (("G", G), ("A", A)):
        M = M.to(device)
        M = 0.5 * (M + M.T)
        t64 = timed(lambda: bases.__setitem__((name, 64), eigh_in(M, torch.float64)), device)
        t32 = timed(lambda: bases.__setitem__((name, 32), eigh_in(M, torch.float32)), device)
        (l64, U64), (l32, U32) = bases[(name, 64)], bases[(name, 32)]
        k = min(top, M.shape[0] // 2)  # a proper subspace: the whole space always agrees
        # Cosines of the principal angles between the top-k eigenspaces: all 1 when they agree.
        cosines = torch.linalg.svdvals(U32[:, :k].double().T @ U64[:, :k])
        out[name] = {"size": M.shape[0], "float64_s": t64, "float32_s": t32,
                     "eigenvalue_error": float((l32.double() - l64).abs().max() / l64[0]),
                     f"top{k}_min_cosine": float(cosines.min())}
    editors = {bits: CurvatureEditor(W.float().to(device), bases[("G", bits)][0].float(), bases[("G", bits)][1].float(),
                                     bases[("A", bits)][0].float(), bases[("A", bits)][1].float()) for bits in (32, 64)}
    m32, m64 = editors[32].mask(0.6), editors[64].mask(0.6)
    out["kept_pairs_rho0.6"] = {"float32": int(m32.sum()), "float64": int(m64.sum()),
                                "same_pairs_fraction": float((m32 & m64).sum() / max(1, int(m64.sum())))}
    return out


def edits(model, sums: dict, layers: list[int], device) -> dict:
    """Decompose each edited matrix once (the pipeline's float64 eigh), then edit at every cutoff."""
    factors = expectations(factor_tensors(sums))
    modules = dict(model.named_modules())
    names = [f"model.layers.{i}.mlp.{p}" for i in layers for p in ("gate_proj", "up_proj")]
    basis = {}

    def decompose():
        for name in names:
            G, A = factors[name]
            basis[name] = (*eigh_descending(G.to(device)), *eigh_descending(A.to(device)))

    t_basis = timed(decompose, device)

    def sweep():
        for name in names:
            editor = CurvatureEditor(modules[name].weight.detach(), *basis[name])
            for rho in RHOS:
                editor.edit(rho)

    t_sweep = timed(sweep, device)
    return {"matrices": len(names), "cutoffs": len(RHOS), "basis_s": t_basis, "sweep_s": t_sweep,
            "per_cutoff_s": t_sweep / len(RHOS)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", action="store_true", help="toy dimensions (a test on CPU)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", default="23,24,25", help="factor layers (toy: 1,2,3)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--top", type=int, default=256, help="eigenvectors compared between float32 and float64")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dims = TOY if args.toy else OLMO2_7B
    layers = [int(i) for i in ("1,2,3" if args.toy and args.layers == "23,24,25" else args.layers).split(",")]
    dtype = "float32" if device.type == "cpu" else "bfloat16"
    with torch.device(device):
        model = build_lm(LMConfig(arch="olmo2", dtype=dtype, max_position_embeddings=max(args.seq_len, 256), **dims))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, dims["vocab_size"], (args.batch, args.seq_len), generator=g).to(device)
               for _ in range(args.batches)]
    n_params = sum(q.numel() for q in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"Olmo2 of {n_params / 1e9:.2f}B parameters in {dtype} on {name}; {args.batches} batches of "
          f"{args.batch} x {args.seq_len} tokens; factors of layers {layers}")

    numbers, sums = collection(model, layers, batches, device)
    print(f"K-FAC collection: {numbers['kfac_tokens_per_s']:,.0f} tokens/s, peak {gib(numbers['kfac_peak_gib'])}; "
          f"plain forward+backward: {numbers['plain_tokens_per_s']:,.0f} tokens/s, peak "
          f"{gib(numbers['plain_peak_gib'])}; collection / plain time = {numbers['kfac_over_plain']:.2f}"
          + ("" if args.toy else f" (goal >= 10,000 tokens/s: {'met' if numbers['kfac_tokens_per_s'] >= 1e4 else 'not'})"))

    layer = layers[0]
    gate_G, gate_A = expectations(factor_tensors(sums))[f"model.layers.{layer}.mlp.gate_proj"]
    weight = dict(model.named_modules())[f"model.layers.{layer}.mlp.gate_proj"].weight.detach()
    eig = eigendecompositions(gate_G, gate_A, weight, args.top, device)
    for key in ("G", "A"):
        e = eig[key]
        k = min(args.top, e["size"] // 2)
        print(f"eigh of gate_proj {key} ({e['size']}^2): float64 {e['float64_s']:.2f}s, float32 {e['float32_s']:.2f}s; "
              f"max eigenvalue error / largest {e['eigenvalue_error']:.1e}; top-{k} eigenspaces: smallest "
              f"principal cosine {e[f'top{k}_min_cosine']:.6f}")
    kept = eig["kept_pairs_rho0.6"]
    print(f"kept pairs at rho 0.6: float32 {kept['float32']:,}, float64 {kept['float64']:,}, "
          f"{100 * kept['same_pairs_fraction']:.3f}% the same")

    sweep = edits(model, sums, layers, device)
    print(f"edit of {sweep['matrices']} matrices (gate + up): bases {sweep['basis_s']:.2f}s once, then "
          f"{sweep['per_cutoff_s']:.2f}s per cutoff over {sweep['cutoffs']} cutoffs")
    result = {"device": name, "dtype": dtype, "parameters": n_params, "layers": layers, "seq_len": args.seq_len,
              "batch": args.batch, "batches": args.batches, "collection": numbers, "eigh": eig, "edit": sweep}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
