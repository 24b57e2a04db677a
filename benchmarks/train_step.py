"""Where a training step of the default models spends its time, measured side by side:

    python benchmarks/train_step.py [--steps 30] [--threads 1 2] [--compile]

For the default ViT (config/config.yaml `vit`, batch 64 of 28x28 images) and the default LM (`lm`,
an Olmo2 with the world's 2,048-token vocabulary, batch 32 x 128 tokens), at each thread count:
- the time of a full step (forward, backward, clip, AdamW) and of its parts (forward; forward +
  backward; the optimizer), and of making the batch;
- with torch.profiler: the share of the step spent inside matrix-multiply kernels, inside all
  other operators, and outside any operator (Python and dispatch);
- with --compile: the same step with torch.compile(model), its first-step (compile) time.
Random data: the timings, not the numbers, are the point. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from curvmem import training
from curvmem.common import from_dict
from curvmem.lm.model import LMConfig, build_lm
from curvmem.vision.model import ViTConfig, build_vit

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
          "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention")


def vit_setup():
    vit, cfg = CONFIG["vit"], CONFIG["vit"]["train"]
    model = build_vit(from_dict(ViTConfig, vit["model"]))
    x = torch.randn(cfg["batch_size"], vit["model"]["in_chans"], vit["model"]["img_size"], vit["model"]["img_size"])
    y = torch.randint(0, vit["model"]["num_classes"], (cfg["batch_size"],))
    images = torch.randint(0, 255, (4000, 1, 28, 28), dtype=torch.uint8)

    def batch():
        idx = torch.randint(0, len(images), (cfg["batch_size"],))
        return (images[idx].float() / 255 - 0.5) / 0.5, y

    def loss_fn(m):
        return F.cross_entropy(m(x).float(), y)

    return model, cfg, loss_fn, batch


def lm_setup():
    lm, cfg = CONFIG["lm"], CONFIG["lm"]["train"]
    model_cfg = from_dict(LMConfig, {**lm["model"], "vocab_size": cfg["vocab_size"],
                                     "max_position_embeddings": cfg["seq_len"]})
    model = build_lm(model_cfg).train()
    chunks = torch.randint(0, cfg["vocab_size"], (10000, cfg["seq_len"]))
    x = chunks[: cfg["batch_size"]]

    def batch():
        return chunks[torch.randint(0, len(chunks), (cfg["batch_size"],))]

    def loss_fn(m):
        return m(input_ids=x, labels=x).loss

    return model, cfg, loss_fn, batch


def timed(fn, steps: int) -> float:
    """Median seconds of fn() over `steps` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, setup, steps: int, compile_model: bool) -> None:
    model, cfg, loss_fn, batch = setup()
    run = torch.compile(model) if compile_model else model
    opt, sched = training.optimizer(model, kind=cfg.get("optimizer", "adamw"), lr=cfg["lr"], betas=cfg["betas"],
                                    weight_decay=cfg["weight_decay"], total_steps=10_000, warmup_steps=10)

    def step():
        training.step(model, loss_fn(run), opt, sched, cfg["grad_clip"])

    def forward():
        with torch.no_grad():
            loss_fn(run)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        loss_fn(run).backward()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    full = timed(step, steps)
    parts = {"forward": timed(forward, steps), "forward+backward": timed(forward_backward, steps),
             "optimizer": timed(lambda: (opt.step(), sched.step()), steps), "batch": timed(batch, steps)}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    events = prof.key_averages()
    total_ops = sum(e.self_cpu_time_total for e in events) / 5 / 1e6
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL) / 5 / 1e6
    label = f"{name} {'compiled' if compile_model else 'eager'}, {torch.get_num_threads()} thread(s)"
    print(f"{label}: step {1000 * full:.1f} ms (first step {first:.1f} s)"
          + "".join(f"; {k} {1000 * v:.1f} ms" for k, v in parts.items()))
    print(f"    profiled step {1000 * total_ops:.1f} ms of operator time: matmul kernels "
          f"{1000 * mm:.1f} ms, other operators {1000 * (total_ops - mm):.1f} ms; outside operators "
          f"{1000 * max(0.0, full - total_ops):.1f} ms of the {1000 * full:.1f} ms step")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--compile", action="store_true", help="also measure torch.compile(model)")
    p.add_argument("--only", choices=["vit", "lm"])
    args = p.parse_args(argv)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, setup in (("ViT", vit_setup), ("LM", lm_setup)):
            if args.only and name.lower() != args.only:
                continue
            torch.manual_seed(0)
            measure(name, setup, args.steps, compile_model=False)
            if args.compile:
                torch.manual_seed(0)
                measure(name, setup, args.steps, compile_model=True)


if __name__ == "__main__":
    main()
