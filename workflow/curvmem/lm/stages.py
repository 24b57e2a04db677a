"""The LM arm's jobs, one function per rule (`python -m curvmem <rule>` calls them).

Each receives its rule's parameters as a dataclass and the paths of its inputs and outputs by the
names the rule gives them.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from .. import distributed, io
from ..artifacts import TEMPLATES
from ..basis import load_basis
from ..bsn import SubnetSpec, baked
from ..edit import ModelEditor
from ..common import InputError, pick_device, run_length, seed_everything
from ..kfac import collect_factors, factor_tensors, linear_names
from ..layers import match_modules, resolve_layer_set
from ..sweep import CutoffMemo, EditSpec, save_edit_rows, subnet_result, sweep_cutoffs
from . import SETS, harness, text
from .activations import band_profile, empty_table, lm_activation_ratio
from .data import DataStage, build
from .evaluate import EvalConfig, LMEvaluation, ndcg_at_10
from .factors import LMFactorConfig, checkpoint_layers, factor_chunks
from .generations import GenerationConfig, generate, generation_prompts, markdown_table
from .harness import HarnessConfig
from .mining import MiningConfig, mine
from .model import LMConfig, build_lm, import_pretrained, load_model_dir, resolve_source, save_model_dir
from .positions import lm_forward, sequence_losses
from .sets import WindowConfig, summarize, verify
from .stress import StressConfig, stress_test
from .tables import METHODS, benchmark_table, stress_table
from .tokens import doc_start_ids, pack
from .train import LMTrainConfig, train_lm, world_tokenizer

log = logging.getLogger(__name__)


def data(params: DataStage, *, train_docs: str, candidates: str, clean: str, tasks: str, manifest: str) -> None:
    """Rule lm_data: the training stream, memorized-set candidates, clean text and task suite, and the
    manifest of the text they were read from."""
    frames, sources = build(params)
    for (name, frame), path in zip(frames.items(), (train_docs, candidates, clean, tasks)):
        io.save_parquet(frame, path, metadata={"params": asdict(params)})
        log.info("%s: %d rows", name, len(frame))
    io.save_json({"sources": sources}, manifest)
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
    steps = run_length(cfg.steps, cfg.stop_after)
    tokens = steps * cfg.batch_size * cfg.seq_len
    log.info("trained %d steps in %.1fs (%.0f tokens/s), final loss %.3f", steps, time.time() - t1,
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


def sets(params: SetsStage, *, model: str, candidates: str, sets: str, summary: str, mined: str | None = None) -> None:
    """Rule lm_sets: the candidates as token windows, kept only where the model recites them; with
    `mined` (lm_mine), the memorized sets are the mined windows."""
    device = pick_device(params.device)
    lm, tokenizer = load_model_dir(model, device)
    cands = io.load_parquet(candidates, ["set", "text", "prefix", "suffix", "source"])
    if mined:
        windows = io.load_parquet(mined, ["set", "text", "prefix", "suffix", "source", "prefix_ids", "suffix_ids"])
        cands = pd.concat([cands[cands["set"] == "quotes"], windows], ignore_index=True)
    frame = verify(lm, tokenizer, cands, params.windows, params.batch_size, device)
    kept = frame[frame["memorized"]].groupby("set", sort=False).head(params.windows.max_per_set)
    counts = summarize(cands, frame, kept)
    io.save_parquet(kept.reset_index(drop=True), sets, metadata={"windows": asdict(params.windows), "summary": counts})
    io.save_json({"windows": asdict(params.windows), **counts}, summary)


@dataclass
class MineStage:
    mine: MiningConfig = field(default_factory=MiningConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)


def mine_sets(params: MineStage, *, model: str, train_docs: str, mined: str, summary: str) -> None:
    """Rule lm_mine: memorized windows mined from a text source (the LM's training stream or a file)."""
    cfg = params.mine
    device = pick_device(cfg.device)
    lm, tokenizer = load_model_dir(model, device)
    if cfg.source == "train_docs":
        texts, origin, manifest = io.load_parquet(train_docs, ["text"])["text"].tolist(), "train_docs", None
    else:
        records, manifest = text.read(cfg.source, "lm.mine.source")
        texts, origin = [r.get("text", "") for r in records], text.describe(cfg.source)
    frame, counts = mine(lm, tokenizer, texts, params.windows.prefix, params.windows.suffix, cfg, device, origin)
    io.save_parquet(frame, mined, metadata={"mine": asdict(cfg), "summary": counts})
    io.save_json({"mine": asdict(cfg), **counts, **({"source_manifest": manifest} if manifest else {})}, summary)


@dataclass
class FactorStage:
    factors: LMFactorConfig = field(default_factory=lambda: LMFactorConfig(modules=["model.layers.*.mlp.*"]))


def factor_texts(clean: str) -> list[str]:
    frame = io.load_parquet(clean, ["split", "text"])
    return frame.loc[frame["split"] == "factors", "text"].tolist()


def factors(params: FactorStage, *, model: str, clean: str, factors: str) -> None:
    """Rule lm_factors: K-FAC factors of the MLP projections from clean text, sampled labels."""
    _factor_pass(params, model, clean, factors)


@dataclass
class EKFACStage(FactorStage):
    modules: list[str] = field(default_factory=list)  # the frontier's layer-set patterns: collected only there


def ekfac(params: EKFACStage, *, model: str, clean: str, basis: str, corrections: str) -> None:
    """Rule lm_ekfac: EK-FAC's eigenvalue corrections in the curvature basis, from the factors' own
    sequences and drawn labels (`kfac.collect_factors` with a basis), for the frontier's modules."""
    _factor_pass(params, model, clean, corrections, basis, params.modules)


def _factor_pass(params: FactorStage, model: str, clean: str, out: str, basis: str | None = None,
                 only: list[str] | None = None) -> None:
    cfg = params.factors
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    lm, tokenizer = load_model_dir(model, device, cfg.dtype)
    if cfg.gradient_checkpointing:
        checkpoint_layers(lm)
    names = match_modules(linear_names(lm), cfg.modules)
    if only:  # EK-FAC where an edit reads it; each sample's drawn label does not depend on the modules
        names = resolve_layer_set(linear_names(lm), cfg.modules, only)
        cfg = replace(cfg, modules=names)
    eigenbasis = load_basis(basis, {n: m for n, m in lm.named_modules() if n in names}) if basis else None
    sequences = factor_chunks(tokenizer, factor_texts(clean), cfg)[:cfg.n_sequences]

    ranks = distributed.ranks()
    own = distributed.own_batches(len(sequences), cfg.batch_size, ranks)  # this rank's share (all of it on one)

    def batches():
        for _, rows in own:
            x = sequences[rows].to(device)
            yield {"input_ids": x, "attention_mask": torch.ones_like(x)}

    t0 = time.time()
    sums = collect_factors(lm, cfg, batches, lm_forward, device=device, basis=eigenbasis)
    seconds = time.time() - t0
    n_groups = -(-len(sums) // (cfg.max_modules_per_pass or len(sums)))
    log.info("%s of %d modules from %d tokens on %d rank(s) in %.1fs (%.0f tokens/s over %d pass(es))",
             "corrections" if basis else "factors", len(sums), sequences.numel(), ranks.size, seconds,
             sequences.numel() * n_groups / seconds, n_groups)
    if not ranks.is_main:
        return
    io.save_tensors(factor_tensors(sums), out, {"fisher": cfg.fisher, "positions": "next-token (last dropped)",
                                                "n_sequences": cfg.n_sequences, "seq_len": cfg.seq_len,
                                                "modules": list(sums), "config": asdict(cfg),
                                                **({"ekfac_basis": basis} if basis else {})})


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
    row = {"method": "none", "layer_set": "", "cutoff": 1.0, "setting": "", "modules": [], "kept_fraction": 1.0,
           **result,
           "ndcg10": float(ndcg_at_10(top10, top10).mean())}
    save_edit_rows([row], metrics)
    _log_row(row)
    log.info("baseline evaluated in %.1fs", time.time() - t0)


@dataclass
class EditStage(EvalStage):
    edit: EditSpec = field(default_factory=EditSpec)


def edits(params: EditStage, *, model: str, sets: str, clean: str, tasks: str, reference: str, metrics: str,
          cost: str, basis: str | None = None, corrections: str | None = None) -> None:
    """Rule lm_edits: one layer set, one method, every cutoff: the model load, the tokenized
    evaluation data and each layer's decomposition are paid once, and a cutoff evaluated by an
    earlier run with the same inputs is reused."""
    def prepare():
        lm, _, evaluate = _edit_evaluation(params, model, sets, clean, tasks, reference)
        return lm, evaluate, basis

    rows, timings = sweep_cutoffs(params.edit, {"eval": asdict(params.eval)},
                                  {"model": model, "sets": sets, "clean": clean, "tasks": tasks,
                                   "reference": reference, "basis": basis, "corrections": corrections}, Path(metrics).parents[2] / ".memo",
                                  Path(cost).parents[2] / ".memo", prepare)
    for row in rows:
        _log_row(row)
    save_edit_rows(rows, metrics)
    io.save_json({"arm": "lm", **timings}, cost)


def _edit_evaluation(params: EvalStage, model: str, sets: str, clean: str, tasks: str, reference: str):
    """(model, evaluation, evaluate): evaluate(model) gives every metric of an edited model, nDCG@10
    against the unedited model's next-token top-10."""
    lm, evaluation = _evaluation(params, model, sets, clean, tasks)
    top10_ref = io.load_tensors(reference)["top10"]
    if len(top10_ref) != len(evaluation.blocks) * (evaluation.blocks.shape[1] - 1):
        raise io.artifact_error(reference, "was computed on other perplexity blocks than lm.eval gives now")

    def evaluate(edited):
        result, top10 = evaluation(edited)
        return {**result, "ndcg10": float(ndcg_at_10(top10_ref, top10).mean())}

    return lm, evaluation, evaluate


def retain_sequences(tokenizer, clean: str, factors: LMFactorConfig) -> torch.Tensor:
    """(N, seq_len) clean text of the training distribution that the factors never read: the factor
    text's chunks after the factor sequences (the activation ratio's clean side, BSN's retain set)."""
    return factor_chunks(tokenizer, factor_texts(clean), factors)[factors.n_sequences:]


@dataclass
class BSNStage(EvalStage):
    factors: LMFactorConfig = field(default_factory=lambda: LMFactorConfig(modules=["model.layers.*.mlp.*"]))
    bsn: SubnetSpec = field(default_factory=SubnetSpec)


def bsn(params: BSNStage, *, model: str, sets: str, clean: str, tasks: str, reference: str, metrics: str,
        masks: str, cost: str) -> None:
    """Rule lm_bsn: BalancedSubnet at one grid point: forget the memorized TRAIN windows, retain
    clean text the factors and the perplexity never read; then every metric of the masked model."""
    lm, evaluation, evaluate = _edit_evaluation(params, model, sets, clean, tasks, reference)
    tokenizer, device = evaluation.tokenizer, evaluation.device
    windows = io.load_parquet(sets, ["set", "prefix_ids", "suffix_ids"])
    windows = windows[windows["set"] == "memorized_train"]
    forget = [list(p) + list(s) for p, s in zip(windows["prefix_ids"], windows["suffix_ids"])]
    retain = retain_sequences(tokenizer, clean, params.factors).tolist()
    if not retain:
        raise InputError(f"{clean}: the factor text leaves no clean sequence after the {params.factors.n_sequences} "
                         f"factor sequences for BSN's retain set (lower lm.factors.n_sequences or add text)")
    log.info("BSN %s %s: %d forget windows, %d retain sequences of %d tokens", params.bsn.layer_set, params.bsn.token,
             len(forget), len(retain), params.factors.seq_len)

    def losses(m, which, idx):
        seqs = forget if which == "forget" else retain
        return sequence_losses(m, [seqs[i] for i in idx.tolist()], tokenizer.pad_token_id, device)

    seed_everything(params.bsn.config.seed)
    row, zeroed, timings = subnet_result(params.bsn, lm, len(forget), len(retain), losses, evaluate)
    _log_row(row)
    io.save_tensors(zeroed, masks,
                    {"setting": asdict(params.bsn), "modules": row["modules"], "content": "flat indices of the "
                     "zeroed weights of each module (W <- W * M)"})
    save_edit_rows([row], metrics)
    io.save_json({"arm": "lm", **timings}, cost)


@dataclass
class ActivationStage(EvalStage):
    factors: LMFactorConfig = field(default_factory=lambda: LMFactorConfig(modules=["model.layers.*.mlp.*"]))
    layer_sets: dict = field(default_factory=dict)        # lm.edit.layer_sets: name -> module patterns


def task_windows(tokenizer, tasks: str) -> dict[str, pd.DataFrame]:
    """Each task family's evaluation prompts (as the evaluation starts them) followed by their gold
    answers, as windows whose suffix is the answer."""
    frame = io.load_parquet(tasks, ["family", "prompt", "answer"])
    start = doc_start_ids(tokenizer)
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return {f"task_{family}": pd.DataFrame({"prefix_ids": [start + ids(p) for p in g["prompt"]],
                                            "suffix_ids": [ids(a) for a in g["answer"]]})
            for family, g in frame.groupby("family", sort=True)}


def activation_ratio(params: ActivationStage, *, model: str, sets: str, clean: str, tasks: str, basis: str,
                     ratio: str, profile: str) -> None:
    """Rule lm_activation_ratio: memorized windows vs clean text the factors never read, per band
    (Fig. 2), and the band profile of every memorized set and task family per layer set (Fig. 4)."""
    device = pick_device(params.eval.device)
    lm, tokenizer = load_model_dir(model, device)
    windows = io.load_parquet(sets, ["set", "prefix_ids", "suffix_ids"])
    names = io.load_metadata(basis)["modules"]
    layers = {n: m for n, m in lm.named_modules() if n in names}
    factor_basis = load_basis(basis, layers)
    stream = retain_sequences(tokenizer, clean, params.factors).reshape(-1)  # clean text the factors never read
    train = windows[windows["set"] == "memorized_train"]
    if len(train):
        frame = lm_activation_ratio(lm, names, factor_basis, train, stream, params.eval.batch_size, device)
    else:  # a model that recites nothing: nothing to compare
        log.warning("no verified memorized training windows: the activation-ratio table is empty")
        frame = empty_table()
    io.save_parquet(frame, ratio)
    groups = {s: windows[windows["set"] == s] for s in ("memorized_val", "quotes")} | task_windows(tokenizer, tasks)
    bands = band_profile(lm, names, factor_basis, groups, stream, params.eval.batch_size, device)
    members = [(layer_set, name) for layer_set, patterns in params.layer_sets.items()
               for name in resolve_layer_set(linear_names(lm), params.factors.modules, patterns)]
    io.save_parquet(bands.merge(pd.DataFrame(members, columns=["layer_set", "module"]), on="module"), profile)


@dataclass
class HeadlineStage:
    eval: EvalConfig = field(default_factory=EvalConfig)
    layer_sets: dict = field(default_factory=dict)        # lm.edit.layer_sets: name -> module patterns
    factor_modules: list = field(default_factory=list)    # lm.factors.modules
    stress: StressConfig = field(default_factory=StressConfig)
    generations: GenerationConfig = field(default_factory=GenerationConfig)


@contextlib.contextmanager
def headline_model(lm, choice: dict | None, params: HeadlineStage, basis: str, masks: str | None):
    """The unedited model (choice None) or one headline edit of it (K-FAC and SVD from the basis and
    the weights, BSN from its masks file), for the duration of the block."""
    if choice is None:
        yield lm
        return
    names = resolve_layer_set(linear_names(lm), params.factor_modules, params.layer_sets[choice["layer_set"]])
    if choice["method"] == "bsn":
        zeroed = io.load_tensors(masks)
        if sorted(zeroed) != sorted(names):
            raise io.artifact_error(masks, f"masks modules {sorted(zeroed)}, the layer set resolves to {sorted(names)}")
        with baked(lm, zeroed):
            yield lm
        return
    layers = {n: m for n, m in lm.named_modules() if n in names}
    editor = ModelEditor(lm, names, choice["method"], load_basis(basis, layers) if choice["method"] == "kfac" else None)
    with editor.applied(choice["cutoff"]):
        yield lm


def headline(params: HeadlineStage, *, model: str, sets: str, tasks: str, basis: str, selection: str,
             masks: list[str], stress: str, table6: str, generations: str) -> None:
    """Rule lm_headline: the unedited model and each method's headline edit, built once each: the
    positional stress test (Table 6) and the generations (Table 12). A headline model evaluated by an
    earlier run with the same inputs, parameters and code is reused, so rebuilding the tables without
    changing a method's choice costs that method nothing here."""
    device = pick_device(params.eval.device)
    lm, tokenizer = load_model_dir(model, device)
    selected = io.load_json(selection)
    choices = {"baseline": None, **{m: selected[m] for m in METHODS}}  # in the tables' order
    windows = io.load_parquet(sets, ["set", "prefix_ids", "suffix_ids"])
    stressed = windows[windows["set"] == params.stress.set]
    stress_windows = [(list(p), list(q)) for p, q in zip(stressed["prefix_ids"], stressed["suffix_ids"])]
    prompts = generation_prompts(tokenizer, params.generations,
                                 io.load_parquet(tasks, ["family", "prompt", "answer"]), windows)
    results, outputs = {}, {}
    for name, choice in choices.items():
        inputs = {"model": model, "sets": sets, "tasks": tasks}
        if name == "kfac":
            inputs["basis"] = basis
        if name == "bsn":
            inputs["masks"] = TEMPLATES["lm_bsn"]["masks"].format(layer_set=choice["layer_set"],
                                                                 setting=choice["setting"])
            assert inputs["masks"] in masks, f"no BSN masks among the inputs for the headline {choice}"
        key = {k: (choice or {}).get(k) for k in ("method", "layer_set", "setting")}  # the edit, not how it was chosen
        memo = CutoffMemo(Path(stress).parent / "headline" / ".memo", asdict(params), inputs)
        entry = memo.get(key)
        if entry is None:
            with headline_model(lm, choice, params, basis, inputs.get("masks")) as edited:
                entry = {"stress": stress_test(edited, stress_windows, params.stress, tokenizer.pad_token_id,
                                               params.eval.batch_size, device),
                         "generations": generate(edited, prompts, tokenizer.pad_token_id, params.eval.batch_size,
                                                 device)}
            memo.put(key, entry)
        else:
            log.info("%s: the same headline model as in an earlier run: its results are reused", name)
        results[name], outputs[name] = entry["stress"], entry["generations"]
        log.info("%s: stress test original %.2f +- %.2f -> perturbed %.2f +- %.2f exact-match tokens (%d windows)",
                 name, results[name]["original_mean"], results[name]["original_sd"], results[name]["perturbed_mean"],
                 results[name]["perturbed_sd"], results[name]["n"])
    io.save_json({"choices": choices, "results": results}, stress)
    io.save_csv(stress_table(results, choices), table6)
    text = markdown_table(tokenizer, prompts, outputs, {"baseline": "unedited", "kfac": "K-FAC", "svd": "SVD",
                                                         "bsn": "BSN"},
                          "Greedy continuations of the headline models (paper Table 12)")
    with io.atomic_path(generations) as tmp:
        Path(tmp).write_text(text)


@dataclass
class BenchmarkStage:
    benchmarks: HarnessConfig = field(default_factory=HarnessConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    layer_sets: dict = field(default_factory=dict)        # lm.edit.layer_sets (the headline edits' layers)
    factor_modules: list = field(default_factory=list)    # lm.factors.modules


def benchmarks(params: BenchmarkStage, *, model: str, tasks: str, basis: str, selection: str, masks: list[str],
               scores: str, table: str, harness_tasks: str) -> None:
    """Rule lm_benchmarks: lm-evaluation-harness tasks (paper Tables 8-10, Fig. 3) on the unedited
    model and each method's headline edit, edited in memory; `lm.benchmarks.world_families` adds the
    pipeline's own families as harness tasks (the arithmetic family is the paper's SimpleMath)."""
    cfg = params.benchmarks
    device = pick_device(cfg.device)
    lm, tokenizer = load_model_dir(model, device)
    families = dict(cfg.tasks)
    with io.atomic_dir(harness_tasks) as tmp:  # empty without world_families
        if cfg.world_families:
            suite = io.load_parquet(tasks, ["family", "prompt", "answer"])
            suite = suite[suite["family"].isin(cfg.world_families)]
            answer_tokens = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in suite["answer"]) + 2
            families.update(harness.write_world_tasks(suite, tmp, answer_tokens))
            for spec in Path(tmp).glob("*.yaml"):  # the data files' final directory, not the temporary one
                spec.write_text(spec.read_text().replace(str(Path(tmp).resolve()), str(Path(harness_tasks).resolve())))
    include = [p for p in (cfg.include_path, harness_tasks) if p]
    run_cfg = replace(cfg, tasks=families, include_path=None)
    selected = io.load_json(selection)
    choices = {"baseline": None, **{m: selected[m] for m in METHODS}}
    results = {}
    for name, choice in choices.items():
        mask = (TEMPLATES["lm_bsn"]["masks"].format(layer_set=choice["layer_set"], setting=choice["setting"])
                if name == "bsn" else None)
        assert mask is None or mask in masks, f"no BSN masks among the inputs for the headline {choice}"
        with headline_model(lm, choice, params, basis, mask) as edited:
            results[name] = harness.evaluate(edited, tokenizer, run_cfg, device, include)
        log.info("%s: %s", name, {t: round(r["value"], 4) for t, r in results[name].items()})
    io.save_json({"choices": choices, "results": results}, scores)
    io.save_csv(benchmark_table(results, choices, families), table)


@dataclass
class StabilityStage(EvalStage):
    members: list = field(default_factory=list)       # [{label, seed, fraction}], in the order of models, sets, bases
    edit: EditSpec = field(default_factory=EditSpec)  # the K-FAC edit of lm.stability: its layer set, cutoffs [rho]
    svd_drop_fraction: float = 0.5                    # the SVD edit of lm.stability, for the spread over seeds


STABILITY_METRICS = ["memorized_train_strict_pct", "memorized_val_strict_pct", "quotes_strict_pct",
                     "perplexity_batch_mean", "perplexity_increase_pct", "task_retention_pct", "ndcg10"]


def stability(params: StabilityStage, *, models: list[str], sets: list[str], bases: list[str], clean: str, tasks: str,
              overlap: str, edits: str, seeds: str) -> None:
    """Rule lm_stability (docs/method.md, section 12): how far the members' bases agree, the K-FAC edit of
    each member's weights with its own, another seed's and a checkpoint's basis (each model measured on
    the windows it memorized itself), and the metrics' spread over the seeds."""
    from .. import stability as st
    from ..intervals import with_intervals
    from .tables import counted_metrics, flat_metrics, mean_retention_pct

    members = st.member_dict(params.members)
    assert len(models) == len(sets) == len(bases) == len(members), "one model, sets and basis per stability member"
    model_of, sets_of, basis_of = (dict(zip(members, paths)) for paths in (models, sets, bases))
    for label, path in model_of.items():
        st.check_trained(path, label, members[label], io.load_json(Path(path) / "curvmem.json")["train_config"])
    (rho,) = params.edit.cutoffs
    modules = resolve_layer_set(io.load_metadata(bases[0])["modules"], params.edit.factor_modules, params.edit.patterns)
    st.compare_bases(basis_of, members, modules, rho, overlap)

    def load(label):
        lm, evaluation = _evaluation(params, model_of[label], sets_of[label], clean, tasks)
        reference = {}  # the unedited model's next-token top-10: nDCG's reference, from the first evaluation

        def evaluate(model):
            result, top10 = evaluation(model)
            reference.setdefault("top10", top10)
            return flat_metrics({**result, "ndcg10": float(ndcg_at_10(reference["top10"], top10).mean())})

        return lm, evaluate

    frame = st.transfer_rows(members, load, modules, basis_of, rho, params.svd_drop_fraction)
    parts = []
    for _, own in frame.groupby("weights", sort=False):  # each model against its own unedited self
        base = own[own.method == "none"].iloc[0].perplexity_batch_mean
        parts.append(own.assign(perplexity_increase_pct=100 * (own.perplexity_batch_mean / base - 1),
                                task_retention_pct=mean_retention_pct(own)))
    frame = pd.concat(parts)
    for row in frame.itertuples():
        log.info("%s %s with basis %s (%s): recitation train %.1f%% val %.1f%% quotes %.1f%%, perplexity %+.1f%%, "
                 "task retention %.1f%%", row.weights, row.method, row.basis or "-", row.relation,
                 row.memorized_train_strict_pct, row.memorized_val_strict_pct, row.quotes_strict_pct,
                 row.perplexity_increase_pct, row.task_retention_pct)
    counts = counted_metrics(frame, selection_set=True)
    first = [*st.ROW_KEYS, *STABILITY_METRICS, *(m for m in counts if m not in STABILITY_METRICS)]
    columns = first + [c for c in frame.columns if c not in first]
    io.save_csv(with_intervals(frame.reindex(columns=columns), counts), edits)
    settings = {"none": "unedited", "kfac": f"kfac {params.edit.layer_set} rho {rho:g}",
                "svd": f"svd {params.edit.layer_set} drop {params.svd_drop_fraction:g}"}
    io.save_csv(st.seed_summary(st.own_edits_of_full_runs(frame, settings), STABILITY_METRICS), seeds)
