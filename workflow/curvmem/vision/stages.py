"""The vision arm's jobs, one function per rule (`python -m curvmem <rule>` calls them).

Each receives its rule's parameters as a dataclass and the paths of its inputs and outputs by the
names the rule gives them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import distributed, io
from ..basis import load_basis
from ..common import pick_device, seed_everything
from ..kfac import collect_factors, factor_tensors, linear_names
from ..layers import match_modules, resolve_layer_set
from ..bsn import SubnetSpec
from ..sweep import EditSpec, save_edit_rows, subnet_result, sweep_cutoffs
from .activations import vit_activation_ratio
from .data import (CorruptionConfig, DataConfig, ImageSet, batches, clean_subset, corrupt_labels, noisy_labels,
                   prepare_fashion_mnist, prepare_imagefolder, split_labels)
from .evaluate import EvalConfig, VitEvaluation
from .factors import ViTFactorConfig, cls_forward
from .model import ViTConfig, build_vit, load_vit
from .train import TrainConfig, train as train_vit

log = logging.getLogger(__name__)


def data(params: DataConfig, *, train: str, val: str) -> None:
    """Rule vit_data: the seeded training and validation subsets."""
    prepare = prepare_fashion_mnist if params.dataset == "fashion_mnist" else prepare_imagefolder
    prepare(params, train, val)


def corrupt(params: CorruptionConfig, *, train: str, corruption: str) -> None:
    """Rule vit_corrupt: exactly round(rate * N) training labels replaced by a random wrong one."""
    labels, meta = split_labels(train)
    num_classes = len(meta["classes"])
    result = corrupt_labels(labels, num_classes, params.noise_rate, params.seed)
    result.update(seed=params.seed, rate=params.noise_rate, num_classes=num_classes, n_train=int(len(labels)),
                  dataset_checksum=meta["checksum"])
    io.save_json(result, corruption)
    log.info("corrupted %d of %d training labels (seed %d)", len(result["indices"]), len(labels), params.seed)


@dataclass
class TrainStage:
    model: ViTConfig = field(default_factory=ViTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _checked_corruption(corruption_path: str, split_meta: dict) -> dict:
    corruption = io.load_json(corruption_path)
    if corruption.get("dataset_checksum") != split_meta["checksum"]:
        raise io.artifact_error(corruption_path, "was made for another training split")
    return corruption


def train(params: TrainStage, *, data: str, corruption: str, model: str, metrics: str) -> None:
    """Rule vit_train: the ViT trained on the noisy labels until it memorizes them."""
    cfg = params.train
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    train_set = ImageSet(data, img_size=params.model.img_size, train=True, augment=cfg.augment)
    noise = _checked_corruption(corruption, train_set.meta)
    train_set.labels = torch.as_tensor(noisy_labels(train_set.labels.numpy(), noise))
    vit = build_vit(params.model)
    log.info("ViT with %.2fM parameters; %d training images, %d mislabeled; device %s",
             sum(p.numel() for p in vit.parameters()) / 1e6, len(train_set), len(noise["indices"]), device)
    t0 = time.time()
    history = train_vit(vit, train_set, np.asarray(noise["indices"]), cfg, device)
    ranks = distributed.ranks()
    log.info("trained in %.1fs on %d rank(s)", time.time() - t0, ranks.size)
    if not ranks.is_main:
        return
    io.save_tensors(vit.state_dict(), model, {"model": asdict(params.model), "train": asdict(cfg),
                                              "final": history[-1] if history else {}})
    io.save_json({"history": history}, metrics)


@dataclass
class FactorStage:
    model: ViTConfig = field(default_factory=ViTConfig)
    factors: ViTFactorConfig = field(default_factory=lambda: ViTFactorConfig(modules=["blocks.*.mlp.fc*"]))


def factor_images(corruption: dict, cfg: ViTFactorConfig) -> np.ndarray:
    """The clean training images the factors are computed on (seeded)."""
    return clean_subset(corruption["n_train"], corruption["indices"], cfg.n_images, cfg.seed)


def factors(params: FactorStage, *, model: str, data: str, corruption: str, factors: str) -> None:
    """Rule vit_factors: K-FAC factors of the MLP layers at the CLS token, clean images, sampled labels."""
    _factor_pass(params, model, data, corruption, factors)


@dataclass
class EKFACStage(FactorStage):
    modules: list[str] = field(default_factory=list)  # the frontier's layer-set patterns: collected only there


def ekfac(params: EKFACStage, *, model: str, data: str, corruption: str, basis: str, corrections: str) -> None:
    """Rule vit_ekfac: EK-FAC's eigenvalue corrections in the curvature basis, from the factors' own
    images and drawn labels (`kfac.collect_factors` with a basis), for the frontier's modules."""
    _factor_pass(params, model, data, corruption, corrections, basis, params.modules)


def _factor_pass(params: FactorStage, model: str, data: str, corruption: str, out: str, basis: str | None = None,
                 only: list[str] | None = None):
    cfg = params.factors
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    vit = load_vit(params.model, model).to(device)
    names = match_modules(linear_names(vit), cfg.modules)
    if only:  # EK-FAC where an edit reads it; each sample's drawn label does not depend on the modules
        names = resolve_layer_set(linear_names(vit), cfg.modules, only)
        cfg = replace(cfg, modules=names)
    eigenbasis = load_basis(basis, {n: m for n, m in vit.named_modules() if n in names}) if basis else None
    indices = factor_images(io.load_json(corruption), cfg)
    ranks = distributed.ranks()
    own = distributed.own_batches(len(indices), cfg.batch_size, ranks)  # this rank's global batches, in order
    images = ImageSet(data, img_size=params.model.img_size,
                      indices=indices[np.concatenate([rows for _, rows in own])] if own else indices[:0])

    def data_batches():
        for x, y in batches(images, cfg.batch_size):  # = this rank's global batches (all full but the last)
            yield x.to(device), y.to(device)

    t0 = time.time()
    sums = collect_factors(vit, cfg, data_batches, cls_forward, device=device, basis=eigenbasis)
    log.info("%s of %d modules from %d images on %d rank(s) in %.1fs", "corrections" if basis else "factors",
             len(sums), len(indices), ranks.size, time.time() - t0)
    if not ranks.is_main:
        return
    io.save_tensors(factor_tensors(sums), out, {"fisher": cfg.fisher, "positions": "cls", "n": len(indices),
                                                "modules": list(sums), "config": asdict(cfg),
                                                **({"ekfac_basis": basis} if basis else {})})


@dataclass
class EvalStage:
    model: ViTConfig = field(default_factory=ViTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _evaluation(params: EvalStage, model: str, data: str, val: str, corruption: str):
    device = pick_device(params.eval.device)
    vit = load_vit(params.model, model).to(device)
    evaluate = VitEvaluation(data, val, io.load_json(corruption), params.model.img_size, params.eval.batch_size,
                             device)
    return vit, evaluate


def baseline(params: EvalStage, *, model: str, data: str, val: str, corruption: str, metrics: str) -> None:
    """Rule vit_baseline: the unedited model's memorization, GT recovery and accuracy."""
    vit, evaluate = _evaluation(params, model, data, val, corruption)
    row = {"method": "none", "layer_set": "", "cutoff": 1.0, "setting": "", "modules": [], "kept_fraction": 1.0,
           **evaluate(vit)}
    save_edit_rows([row], metrics)
    log.info("unedited: memorized %.1f%%, GT %.1f%%, val %.1f%%", row["memorized_train_pct"],
             row["train_gt_acc_pct"], row["val_acc_pct"])


@dataclass
class EditStage(EvalStage):
    edit: EditSpec = field(default_factory=EditSpec)


def edits(params: EditStage, *, model: str, data: str, val: str, corruption: str, metrics: str, cost: str,
          basis: str | None = None, corrections: str | None = None) -> None:
    """Rule vit_edits: one layer set, one method, every cutoff: the model is loaded and each layer
    decomposed once, and a cutoff evaluated by an earlier run with the same inputs is reused."""
    def prepare():
        vit, evaluate = _evaluation(params, model, data, val, corruption)
        return vit, evaluate, basis

    rows, timings = sweep_cutoffs(params.edit, {"model": asdict(params.model), "eval": asdict(params.eval)},
                                  {"model": model, "data": data, "val": val, "corruption": corruption, "basis": basis,
                                   "corrections": corrections},
                                  Path(metrics).parents[2] / ".memo", Path(cost).parents[2] / ".memo", prepare)
    for row in rows:
        _log_row(row)
    save_edit_rows(rows, metrics)
    io.save_json({"arm": "vit", **timings}, cost)


def _log_row(row: dict) -> None:
    log.info("%s %s %s: memorized %.1f%%, GT %.1f%%, val %.1f%%", row["method"], row["layer_set"], row["setting"],
             row["memorized_train_pct"], row["train_gt_acc_pct"], row["val_acc_pct"])


@dataclass
class BSNStage(EvalStage):
    bsn: SubnetSpec = field(default_factory=SubnetSpec)


def bsn(params: BSNStage, *, model: str, data: str, val: str, corruption: str, metrics: str, cost: str) -> None:
    """Rule vit_bsn (our extension; the paper has no ViT BalancedSubnet): forget the mislabeled training
    images with their noisy labels, retain the clean training images; then every metric of the masked model."""
    vit, evaluate = _evaluation(params, model, data, val, corruption)
    device = pick_device(params.eval.device)
    noise = io.load_json(corruption)
    mislabeled = np.asarray(noise["indices"], dtype=np.int64)
    clean = np.setdiff1d(np.arange(noise["n_train"]), mislabeled)
    images = ImageSet(data, img_size=params.model.img_size)
    images.labels = torch.as_tensor(noisy_labels(images.labels.numpy(), noise))  # the labels it was trained on
    subsets = {"forget": mislabeled, "retain": clean}

    def losses(m, which, idx):
        x, y = images.stack(subsets[which][idx.numpy()])
        return torch.nn.functional.cross_entropy(m(x.to(device)), y.to(device), reduction="none")

    seed_everything(params.bsn.config.seed)
    row, _, timings = subnet_result(params.bsn, vit, len(mislabeled), len(clean), losses, evaluate)
    _log_row(row)
    save_edit_rows([row], metrics)
    io.save_json({"arm": "vit", **timings}, cost)


@dataclass
class ActivationStage(EvalStage):
    factors: ViTFactorConfig = field(default_factory=lambda: ViTFactorConfig(modules=["blocks.*.mlp.fc*"]))


def activation_ratio(params: ActivationStage, *, model: str, data: str, corruption: str, basis: str,
                     ratio: str) -> None:
    """Rule vit_activation_ratio: mislabeled vs clean images (disjoint from the factor images) per band."""
    vit = load_vit(params.model, model).to(pick_device(params.eval.device))
    io.save_parquet(_ratio_frame(params, vit, data, corruption, basis), ratio)


def _ratio_frame(params: ActivationStage, vit, data: str, corruption: str, basis: str):
    names = io.load_metadata(basis)["modules"]
    layers = {n: m for n, m in vit.named_modules() if n in names}
    noise = io.load_json(corruption)
    return vit_activation_ratio(vit, names, load_basis(basis, layers), data, noise,
                                factor_images(noise, params.factors), params.model.img_size,
                                params.eval.batch_size, pick_device(params.eval.device))


@dataclass
class WeightDecayStage(ActivationStage):
    weight_decay: float = 0.3                          # the member's training weight decay (its model says so too)
    edit: EditSpec = field(default_factory=EditSpec)  # the headline K-FAC edit: its layer set, cutoffs [rho]


def weight_decay_member(params: WeightDecayStage, *, model: str, data: str, val: str, corruption: str, basis: str,
                        metrics: str) -> None:
    """Rule vit_weight_decay (paper App. H): one member of the weight-decay family, unedited and after
    the headline K-FAC edit with its own basis, and its activation ratio per band."""
    from ..artifacts import cutoff_token
    from ..edit import ModelEditor
    from ..kfac import linear_names
    from ..layers import resolve_layer_set

    trained = io.load_metadata(model)["train"]["weight_decay"]
    if trained != params.weight_decay:
        raise io.artifact_error(model, f"was trained with weight decay {trained}, not {params.weight_decay}")
    vit, evaluate = _evaluation(params, model, data, val, corruption)
    spec = params.edit
    (rho,) = spec.cutoffs
    names = resolve_layer_set(linear_names(vit), spec.factor_modules, spec.patterns)
    editor = ModelEditor(vit, names, "kfac", load_basis(basis, {n: m for n, m in vit.named_modules() if n in names}))
    rows = [{"method": "none", "layer_set": "", "cutoff": 1.0, "setting": "", "modules": [], "kept_fraction": 1.0,
             **evaluate(vit)}]
    with editor.applied(rho) as kept:
        rows.append({"method": "kfac", "layer_set": spec.layer_set, "cutoff": rho, "setting": cutoff_token(rho),
                     "modules": names, "kept_fraction": float(np.mean(list(kept.values()))), **evaluate(vit)})
    for row in rows:
        _log_row(row)
    ratio = _ratio_frame(params, vit, data, corruption, basis)  # of the unedited weights (restored above)
    io.save_json({"weight_decay": params.weight_decay, "edits": rows, "activation": ratio.to_dict("records")},
                 metrics)


@dataclass
class StabilityStage(EvalStage):
    members: list = field(default_factory=list)       # [{label, seed, fraction}], in the order of models and bases
    edit: EditSpec = field(default_factory=EditSpec)  # the headline K-FAC edit: its layer set, cutoffs [rho]
    svd_drop_fraction: float = 0.5                    # the headline SVD edit, for the spread over seeds


def stability(params: StabilityStage, *, models: list[str], bases: list[str], data: str, val: str, corruption: str,
              overlap: str, edits: str, seeds: str) -> None:
    """Rule vit_stability (docs/method.md, section 12): how far the members' bases agree, the headline
    edit of each member's weights with its own, another seed's and a checkpoint's basis, and the headline
    metrics' spread over the seeds."""
    from .. import stability as st
    from ..intervals import with_intervals
    from .tables import COUNTS, METRICS

    members = st.member_dict(params.members)
    assert len(models) == len(bases) == len(members), "one model and one basis per stability member"
    model_of, basis_of = dict(zip(members, models)), dict(zip(members, bases))
    for label, path in model_of.items():
        st.check_trained(path, label, members[label], io.load_metadata(path)["train"])
    (rho,) = params.edit.cutoffs
    modules = resolve_layer_set(io.load_metadata(bases[0])["modules"], params.edit.factor_modules, params.edit.patterns)
    st.compare_bases(basis_of, members, modules, rho, overlap)
    device = pick_device(params.eval.device)
    evaluate = VitEvaluation(data, val, io.load_json(corruption), params.model.img_size, params.eval.batch_size, device)

    def load(label):
        return load_vit(params.model, model_of[label]).to(device), evaluate

    frame = st.transfer_rows(members, load, modules, basis_of, rho, params.svd_drop_fraction)
    for row in frame.itertuples():
        log.info("%s %s with basis %s (%s): memorized %.1f%%, GT %.1f%%, val %.1f%%", row.weights, row.method,
                 row.basis or "-", row.relation, row.memorized_train_pct, row.train_gt_acc_pct, row.val_acc_pct)
    columns = [*st.ROW_KEYS, *METRICS, "other_class_pct", "clean_train_acc_pct", "n_mislabeled", "n_val"]
    io.save_csv(with_intervals(frame.reindex(columns=columns), COUNTS), edits)
    settings = {"none": "unedited", "kfac": f"kfac rho {rho:g}", "svd": f"svd drop {params.svd_drop_fraction:g}"}
    io.save_csv(st.seed_summary(st.own_edits_of_full_runs(frame, settings), METRICS), seeds)
