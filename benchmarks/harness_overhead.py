"""What moving the pipeline's own task suite onto lm-evaluation-harness would cost per evaluation.

On a finished run's LM (its model, task suite, verified windows and clean text), side by side:
the pipeline's evaluator (lm/evaluate.py, batched greedy decoding with explicit positions) and
the harness on the same items as custom tasks (lm/harness.py, world_<family>), at batch size 1
(exact) and at the pipeline's batch size; prints the seconds per evaluation, the ratios, the
harness's one-time start-up, and whether every family's accuracy agrees.

    python benchmarks/harness_overhead.py <run dir> [--configfile config/test.yaml] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run's directory")
    parser.add_argument("--configfile", default="config/test.yaml", help="its config, relative to the run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    import yaml

    from curvmem.artifacts import Layout
    from curvmem.config import Memo, file_digests
    from curvmem.io import load_parquet
    from curvmem.lm.evaluate import EvalConfig, LMEvaluation
    from curvmem.lm.harness import HarnessConfig, evaluate, task_manager, write_world_tasks
    from curvmem.lm.model import load_model_dir

    torch.set_num_threads(1)
    run = Path(args.run).resolve()
    os.chdir(run)  # the run's fingerprinted paths, as its rules computed them
    config = yaml.safe_load(Path(args.configfile).read_text())
    art = Layout(config, file_digests(config, Memo(path=None)))
    model_rule = "lm_train" if "lm_train" in art else "lm_import"
    model, tokenizer = load_model_dir(str(run / art[model_rule].model))
    tasks = load_parquet(run / art["lm_data"].tasks)
    ours = LMEvaluation(tokenizer, load_parquet(run / art["lm_sets"].sets),
                        load_parquet(run / art["lm_data"].clean).text.tolist(), tasks,
                        EvalConfig(batch_size=args.batch_size, block_len=32, n_blocks=1), "cpu")

    def timed(fn):
        times, out = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    t_ours, reference = timed(lambda: ours.task_accuracy(model))
    with tempfile.TemporaryDirectory() as tmp:
        names = write_world_tasks(tasks, tmp, ours.answer_tokens)
        start = time.perf_counter()
        task_manager((str(Path(tmp).resolve()),))
        startup = time.perf_counter() - start
        result = {"items": len(tasks), "ours_s": t_ours, "harness_startup_s": startup}
        for batch in (1, args.batch_size):
            cfg = HarnessConfig(tasks=names, include_path=tmp, batch_size=batch)
            t_h, scores = timed(lambda: evaluate(model, tokenizer, cfg, "cpu"))
            agree = all(abs(100 * scores[t]["value"] - reference[f]["accuracy_pct"]) < 1e-9 for t, f in names.items())
            result[f"harness_b{batch}_s"], result[f"harness_b{batch}_agrees"] = t_h, agree
            print(f"harness batch {batch:3d}: {t_h:.2f} s per evaluation, {t_h / t_ours:.1f}x the pipeline's "
                  f"({t_ours:.2f} s); every family's accuracy equal: {agree}")
    print(f"{len(tasks)} items; harness start-up (task index) {startup:.1f} s, once per process")
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main()
