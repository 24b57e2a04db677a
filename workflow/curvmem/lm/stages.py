"""The LM arm's jobs, one function per rule (`python -m curvmem <rule>` calls them).

Each receives its rule's parameters as a dataclass and the paths of its inputs and outputs by the
names the rule gives them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .. import io
from ..basis import load_basis
from ..common import pick_device, seed_everything
from ..kfac import collect_factors, factor_tensors
from ..sweep import EditSpec, load_edit_rows, method_curve, save_edit_rows, sweep_cutoffs
from . import SETS
from .activations import empty_table, lm_activation_ratio
from .data import DataStage, build
from .evaluate import EvalConfig, LMEvaluation, ndcg_at_10
from .factors import LMFactorConfig, factor_chunks
from .model import LMConfig, build_lm, import_pretrained, load_model_dir, resolve_source, save_model_dir
from .positions import lm_forward
from .sets import WindowConfig, summarize, verify
from .tables import PLOT_COLUMNS, SelectionConfig, fact_table, select, sweep_table, table1 as make_table1, task_table
from .tokens import pack
from .train import LMTrainConfig, train_lm, world_tokenizer

log = logging.getLogger(__name__)


def data(params: DataStage, *, train_docs: str, candidates: str, clean: str, tasks: str) -> None:
    """Rule lm_data: the training stream, memorized-set candidates, clean text and task suite."""
    frames = build(params)
    for (name, frame), path in zip(frames.items(), (train_docs, candidates, clean, tasks)):
        io.save_parquet(frame, path, metadata={"params": asdict(params)})
        log.info("%s: %d rows", name, len(frame))
    log.info("families: %s", frames["train_docs"]["family"].value_counts().to_dict())


@dataclass
class ImportStage:
    model: LMConfig = field(default_factory=LMConfig)


def import_model(params: ImportStage, *, model: str) -> None:
    """Rule lm_import: a hub id, local directory, GGUF file or `pkg:` file saved once as safetensors."""
    source = resolve_source(params.model.source)
    import_pretrained(replace(params.model, source=source), model, provenance={"source": params.model.source})


@dataclass
class TrainStage:
    model: LMConfig = field(default_factory=LMConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)


def train(params: TrainStage, *, docs: str, model: str, metrics: str, init: str | None = None) -> None:
    """Rule lm_train: from scratch with the world's tokenizer, or continued training of `init`."""
    cfg = params.train
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    texts = io.load_parquet(docs, ["text"])["text"].tolist()
    t0 = time.time()
    if init:
        lm, tokenizer = load_model_dir(init)
    else:
        tokenizer = world_tokenizer(texts, cfg.vocab_size)
        lm = build_lm(replace(params.model, vocab_size=len(tokenizer), max_position_embeddings=cfg.seq_len),
                      seed=cfg.seed)
    lm.to(device)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    chunks = torch.from_numpy(pack(ids, cfg.seq_len, tokenizer.eos_token_id)).long()
    n_params = sum(p.numel() for p in lm.parameters())
    log.info("%d documents, %d tokens, %d chunks; %.2fM parameters; prep %.1fs", len(texts),
             sum(map(len, ids)), len(chunks), n_params / 1e6, time.time() - t0)
    t1 = time.time()
    history = train_lm(lm, chunks, cfg, device)
    tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    log.info("trained %d steps in %.1fs (%.0f tokens/s), final loss %.3f", cfg.steps, time.time() - t1,
             tokens / (time.time() - t1), history[-1]["loss"])
    save_model_dir(lm.cpu(), tokenizer, model, {"train_config": asdict(cfg), "init": init, "docs": docs,
                                                "n_params": n_params})
    io.save_json({"history": history, "tokens_seen": tokens, "corpus_tokens": int(chunks.numel()),
                  "epochs": tokens / chunks.numel(), "n_params": n_params}, metrics)


@dataclass
class SetsStage:
    windows: WindowConfig = field(default_factory=WindowConfig)
    batch_size: int = 32
    device: str = "auto"


def sets(params: SetsStage, *, model: str, candidates: str, sets: str, summary: str) -> None:
    """Rule lm_sets: the candidates as token windows, kept only where the model recites them."""
    device = pick_device(params.device)
    lm, tokenizer = load_model_dir(model, device)
    cands = io.load_parquet(candidates, ["set", "text", "prefix", "suffix", "source"])
    frame = verify(lm, tokenizer, cands, params.windows, params.batch_size, device)
    kept = frame[frame["memorized"]].groupby("set", sort=False).head(params.windows.max_per_set)
    counts = summarize(cands, frame, kept)
    io.save_parquet(kept.reset_index(drop=True), sets, metadata={"windows": asdict(params.windows), "summary": counts})
    io.save_json({"windows": asdict(params.windows), **counts}, summary)


@dataclass
class FactorStage:
    factors: LMFactorConfig = field(default_factory=lambda: LMFactorConfig(modules=["model.layers.*.mlp.*"]))


def factor_texts(clean: str) -> list[str]:
    frame = io.load_parquet(clean, ["split", "text"])
    return frame.loc[frame["split"] == "factors", "text"].tolist()


def factors(params: FactorStage, *, model: str, clean: str, factors: str) -> None:
    """Rule lm_factors: K-FAC factors of the MLP projections from clean text, sampled labels."""
    cfg = params.factors
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    lm, tokenizer = load_model_dir(model, device)
    sequences = factor_chunks(tokenizer, factor_texts(clean), cfg)[:cfg.n_sequences]

    def batches():
        for start in range(0, len(sequences), cfg.batch_size):
            x = sequences[start:start + cfg.batch_size].to(device)
            yield {"input_ids": x, "attention_mask": torch.ones_like(x)}

    t0 = time.time()
    sums = collect_factors(lm, cfg, batches, lm_forward, device=device)
    seconds = time.time() - t0
    n_groups = -(-len(sums) // (cfg.max_modules_per_pass or len(sums)))
    log.info("factors of %d modules from %d tokens in %.1fs (%.0f tokens/s over %d pass(es))", len(sums),
             sequences.numel(), seconds, sequences.numel() * n_groups / seconds, n_groups)
    io.save_tensors(factor_tensors(sums), factors, {"fisher": cfg.fisher, "positions": "next-token (last dropped)",
                                                    "n_sequences": cfg.n_sequences, "seq_len": cfg.seq_len,
                                                    "modules": list(sums), "config": asdict(cfg)})


@dataclass
class EvalStage:
    eval: EvalConfig = field(default_factory=EvalConfig)


def _evaluation(params: EvalStage, model: str, sets: str, clean: str, tasks: str):
    device = pick_device(params.eval.device)
    lm, tokenizer = load_model_dir(model, device)
    clean_frame = io.load_parquet(clean, ["split", "text"])
    evaluation = LMEvaluation(tokenizer, io.load_parquet(sets, ["set", "prefix_ids", "suffix_ids"]),
                              clean_frame.loc[clean_frame["split"] == "perplexity", "text"].tolist(),
                              io.load_parquet(tasks, ["family", "prompt", "answer", "bucket", "chance"]),
                              params.eval, device)
    return lm, evaluation


def _log_row(row: dict) -> None:
    log.info("%s %s %r: recitation train %.1f%% val %.1f%% quotes %.1f%%, perplexity %.3f, nDCG@10 %.3f",
             row["method"], row["layer_set"], row["cutoff"], *(row[s]["strict_pct"] for s in SETS),
             row["perplexity_batch_mean"], row["ndcg10"])


def baseline(params: EvalStage, *, model: str, sets: str, clean: str, tasks: str, metrics: str,
             reference: str) -> None:
    """Rule lm_baseline: the unedited model's metrics, and its next-token top-10 (nDCG's reference)."""
    t0 = time.time()
    lm, evaluation = _evaluation(params, model, sets, clean, tasks)
    result, top10 = evaluation(lm)
    io.save_tensors({"top10": top10}, reference, {"blocks": len(evaluation.blocks)})
    row = {"method": "none", "layer_set": "", "cutoff": 1.0, "modules": [], "kept_fraction": 1.0, **result,
           "ndcg10": float(ndcg_at_10(top10, top10).mean())}
    save_edit_rows([row], metrics)
    _log_row(row)
    log.info("baseline evaluated in %.1fs", time.time() - t0)


@dataclass
class EditStage(EvalStage):
    edit: EditSpec = field(default_factory=EditSpec)


def edits(params: EditStage, *, model: str, sets: str, clean: str, tasks: str, reference: str, metrics: str,
          basis: str | None = None) -> None:
    """Rule lm_edits: one layer set, one method, every cutoff: the model load, the tokenized
    evaluation data and each layer's decomposition are paid once, and a cutoff evaluated by an
    earlier run with the same inputs is reused."""
    def prepare():
        lm, evaluation = _evaluation(params, model, sets, clean, tasks)
        top10_ref = io.load_tensors(reference)["top10"]
        if len(top10_ref) != len(evaluation.blocks) * (evaluation.blocks.shape[1] - 1):
            raise io.artifact_error(reference, "was computed on other perplexity blocks than lm.eval gives now")

        def evaluate(edited):
            result, top10 = evaluation(edited)
            return {**result, "ndcg10": float(ndcg_at_10(top10_ref, top10).mean())}

        return lm, evaluate, basis

    rows = sweep_cutoffs(params.edit, {"eval": asdict(params.eval)},
                         {"model": model, "sets": sets, "clean": clean, "tasks": tasks, "reference": reference,
                          "basis": basis}, Path(metrics).parents[2] / ".memo", prepare)
    for row in rows:
        _log_row(row)
    save_edit_rows(rows, metrics)


@dataclass
class ActivationStage(EvalStage):
    factors: LMFactorConfig = field(default_factory=lambda: LMFactorConfig(modules=["model.layers.*.mlp.*"]))


def activation_ratio(params: ActivationStage, *, model: str, sets: str, clean: str, basis: str, ratio: str) -> None:
    """Rule lm_activation_ratio: memorized windows vs clean text the factors never read, per band."""
    device = pick_device(params.eval.device)
    lm, tokenizer = load_model_dir(model, device)
    windows = io.load_parquet(sets, ["set", "prefix_ids", "suffix_ids"])
    windows = windows[windows["set"] == "memorized_train"]
    if not len(windows):  # a model that recites nothing: nothing to compare
        log.warning("no verified memorized training windows: the activation-ratio table is empty")
        io.save_parquet(empty_table(), ratio)
        return
    names = io.load_metadata(basis)["modules"]
    layers = {n: m for n, m in lm.named_modules() if n in names}
    chunks = factor_chunks(tokenizer, factor_texts(clean), params.factors)
    stream = chunks[params.factors.n_sequences:].reshape(-1)  # the text after the factor sequences
    frame = lm_activation_ratio(lm, names, load_basis(basis, layers), windows, stream, params.eval.batch_size,
                                device)
    io.save_parquet(frame, ratio)


def tables(params: SelectionConfig, *, baseline: str, edits: list[str], ratio: str, table1: str, sweep: str,
           tasks: str, facts: str, activation: str, selection: str, kfac_plot: str, svd_plot: str) -> None:
    """Rule lm_tables: the sweep, the headline choice on memorized_train, Table 1, tasks, facts."""
    rows = load_edit_rows([baseline, *edits])
    frame = sweep_table(rows)
    choices = {m: select(frame, m, params.max_perplexity_increase) for m in ("kfac", "svd")}
    by_key = {(r["method"], r["layer_set"], r["cutoff"]): r for r in rows}
    chosen = {"baseline": rows[0], **{m: by_key[(m, c["layer_set"], c["cutoff"])] for m, c in choices.items()}}
    t1 = make_table1(frame, choices)
    io.save_csv(frame, sweep)
    io.save_json(choices, selection)
    io.save_csv(t1, table1)
    io.save_csv(task_table(chosen), tasks)
    io.save_csv(fact_table(chosen), facts)
    io.save_csv(io.load_parquet(ratio), activation)
    for method, path, x in (("kfac", kfac_plot, "rho"), ("svd", svd_plot, "drop_fraction")):
        io.save_csv(method_curve(frame, method, choices[method]["layer_set"], PLOT_COLUMNS, x), path)
    log.info("selection: %s", choices)
    log.info("Table 1 (ours beside the paper's):\n%s", t1.round(2).to_string(index=False))
