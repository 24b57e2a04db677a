"""The GPU benchmark of the paper path (benchmarks/gpu_paper_scale.py) at toy dimensions on CPU: it
runs end to end, and what it measures holds (every token counted, float32 eigendecompositions agree
with float64, the edit covers the paper's layer set at six cutoffs)."""
import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_paper_scale.py"


def test_gpu_benchmark_runs_at_toy_dimensions_on_cpu(tmp_path):
    import json

    spec = importlib.util.spec_from_file_location("gpu_paper_scale", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "numbers.json"
    result = bench.main(["--toy", "--device", "cpu", "--seq-len", "64", "--batch", "2", "--batches", "2",
                         "--top", "8", "--json", str(out)])
    assert json.loads(out.read_text())["collection"]["tokens"] == result["collection"]["tokens"] == 2 * 2 * 64
    assert result["collection"]["modules"] == sorted(f"model.layers.{i}.mlp.{p}" for i in (1, 2, 3)
                                                     for p in ("down_proj", "gate_proj", "up_proj"))
    assert result["collection"]["kfac_tokens_per_s"] > 0 and result["collection"]["plain_tokens_per_s"] > 0
    for key, size in (("G", 88), ("A", 32)):
        eig = result["eigh"][key]
        assert eig["size"] == size and eig["eigenvalue_error"] < 1e-4 and eig["top8_min_cosine"] > 0.999, eig
    assert result["eigh"]["kept_pairs_rho0.6"]["same_pairs_fraction"] > 0.95
    assert result["edit"]["matrices"] == 6 and result["edit"]["cutoffs"] == 6
