"""Downstream benchmarks through lm-evaluation-harness (the paper's Tables 8-10 and Fig. 3).

The paper evaluates with OLMES, which is not installable here; lm-evaluation-harness is (pinned),
and its tasks are the closest public versions of the paper's (README, "Benchmarks"). Absolute
scores move with harness and prompt format, so what is compared to the paper is retention: the
edited model's score over the unedited one's, per task and per family (Fig. 3).

The model is passed in memory (`HFLM(pretrained=<model>)`), so an edit is evaluated without writing
a 7B checkpoint. Custom tasks are YAML files in a directory (`include_path`); `write_world_tasks`
turns the pipeline's own task suite (tasks.parquet: the generated arithmetic, open-book, logic and
facts families) into such tasks, scored with the pipeline's own exact-match rule, so the two
evaluators can be compared item by item.

Measured (tests/test_harness.py, the test world's model): with `batch_size: 1` the harness scores
every item as the pipeline's evaluator does; with larger batches its left-padded generation changes
some greedy answers of this model, so generation tasks default to one prompt at a time.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

WORLD_SCORER = '''"""Scoring of the curvmem world tasks: the pipeline's own exact-match rule."""
from curvmem.lm.evaluate import answer_correct


def process_results(doc, results):
    return {"acc": float(answer_correct(results[0], doc["answer"]))}
'''


@dataclass
class HarnessConfig:
    tasks: dict[str, str] = field(default_factory=dict)  # harness task name -> family (logic, openbook, facts, arithmetic)
    include_path: str | None = None   # directory of custom YAML tasks (added to the harness's own)
    world_families: list[str] = field(default_factory=list)  # the pipeline's own families as tasks world_<family>
    num_fewshot: int | None = None    # None: each task's own default
    limit: int | None = None          # items per task (None: all)
    batch_size: int = 1               # generation is exact only one prompt at a time (module docstring)
    device: str = "auto"


def write_world_tasks(tasks, out_dir: str | Path, answer_tokens: int, prefix: str = "world") -> dict[str, str]:
    """The pipeline's task suite as harness tasks `<prefix>_<family>` (JSONL + YAML + scorer) in
    out_dir; returns task name -> family. Greedy generation of `answer_tokens` tokens, as lm/evaluate.py."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "utils.py").write_text(WORLD_SCORER)
    names = {}
    for family, rows in tasks.groupby("family", sort=True):
        data = out / f"{prefix}_{family}.jsonl"
        data.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in zip(rows.prompt, rows.answer)))
        spec = {"task": f"{prefix}_{family}", "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data.resolve())}}, "test_split": "test",
                "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{answer}}",
                "target_delimiter": "",
                "generation_kwargs": {"until": [], "max_gen_toks": answer_tokens, "do_sample": False},
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
        # `!function` is the harness's YAML tag for a Python hook in a file beside the YAML
        (out / f"{prefix}_{family}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False)
                                                    + "process_results: !function utils.process_results\n")
        names[f"{prefix}_{family}"] = family
    return names


@functools.lru_cache(maxsize=4)
def task_manager(include: tuple[str, ...]):
    """The harness's task index with the custom directories (built once: indexing takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include) or None)


def evaluate(model, tokenizer, cfg: HarnessConfig, device, include: list[str] | None = None) -> dict:
    """Every configured task on `model` as it is now: {task: {"metric", "value", "stderr", "n",
    "spec"}}; `spec` is the task's resolved harness config (the exact prompt, split, metric).
    `include`: directories of custom tasks (default: cfg.include_path)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from .tokens import doc_start_ids

    wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, device=str(device),
                   add_bos_token=bool(doc_start_ids(tokenizer)))  # prompts start as training documents did
    include = include if include is not None else [cfg.include_path] if cfg.include_path else []
    manager = task_manager(tuple(str(Path(p).resolve()) for p in include))
    out = simple_evaluate(model=wrapped, tasks=list(cfg.tasks), task_manager=manager, num_fewshot=cfg.num_fewshot,
                          limit=cfg.limit, log_samples=False, bootstrap_iters=1000, random_seed=0,
                          numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    scores = {}
    for task in cfg.tasks:
        result, spec = out["results"][task], out["configs"][task]
        metric = next(k for k in result if "," in k and not k.split(",")[0].endswith("_stderr"))
        name, flt = metric.split(",", 1)
        stderr = result.get(f"{name}_stderr,{flt}")
        scores[task] = {"metric": metric, "value": float(result[metric]),
                        "stderr": float(stderr) if isinstance(stderr, (int, float)) else float("nan"),
                        "n": int(out["n-samples"][task]["effective"]),
                        "spec": json.dumps(spec, sort_keys=True, default=str)}
        log.info("%s: %s = %.4f (n %d)", task, metric, scores[task]["value"], scores[task]["n"])
    return scores
