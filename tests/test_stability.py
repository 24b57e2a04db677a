"""The stability study (docs/method.md, section 12): a checkpoint is its full run stopped on the way,
the compared pairs and the transfer plan are the hand-enumerated ones, the spread over seeds is numpy's."""
import numpy as np
import pandas as pd
import pytest
import torch

from curvmem import io, stability
from curvmem.artifacts import stability_member, stability_members
from curvmem.common import run_length
from curvmem.basis import eigh_descending
from curvmem.lm import train as lm_train
from curvmem.lm.model import LMConfig, build_lm
from curvmem.vision import train as vit_train
from curvmem.vision.data import ImageSet
from curvmem.vision.model import ViTConfig, build_vit
from curvmem.vision.train import TrainConfig

MEMBERS = {"seed0": {"seed": 0, "fraction": 1.0}, "seed1": {"seed": 1, "fraction": 1.0},
           "seed2": {"seed": 2, "fraction": 1.0}, "seed0-at0.5": {"seed": 0, "fraction": 0.5}}


def test_members_of_the_config():
    vit = {"train": {"seed": 3, "epochs": 8}, "stability": {"seeds": [3, 5], "checkpoints": [0.25, 0.5]}}
    assert stability_members(vit) == {"seed3": {"seed": 3, "fraction": 1.0}, "seed5": {"seed": 5, "fraction": 1.0},
                                      "seed3-at0.25": {"seed": 3, "fraction": 0.25},
                                      "seed3-at0.5": {"seed": 3, "fraction": 0.5}}
    assert stability_members({"train": {"seed": 3}, "stability": {"checkpoints": [0.5]}}) == {
        "seed3": {"seed": 3, "fraction": 1.0}, "seed3-at0.5": {"seed": 3, "fraction": 0.5}}
    assert stability_members({"train": {"seed": 3}}) == {}
    # the full run of the trained model's seed has the trained model's parameters exactly
    assert stability_member(vit, 3, 1.0) == vit
    assert stability_member(vit, 5, 0.25)["train"] == {"seed": 5, "epochs": 8, "stop_after": 0.25}
    assert [run_length(8, f) for f in (0.01, 0.25, 0.5, 0.75, 1.0)] == [1, 2, 4, 6, 8]


def test_compared_pairs_and_transfer_plan_are_the_hand_enumerated_ones():
    O, S, C = stability.OWN, stability.OTHER_SEED, stability.CHECKPOINT
    assert stability.compared_pairs(MEMBERS) == [("seed0", "seed1", S), ("seed0", "seed2", S), ("seed1", "seed2", S),
                                                 ("seed0-at0.5", "seed0", C)]
    assert stability.transfer_plan(MEMBERS) == [
        ("seed0", "seed0", O), ("seed1", "seed1", O), ("seed2", "seed2", O), ("seed0-at0.5", "seed0-at0.5", O),
        ("seed0", "seed1", S), ("seed0", "seed2", S), ("seed1", "seed0", S), ("seed1", "seed2", S),
        ("seed2", "seed0", S), ("seed2", "seed1", S),
        ("seed0", "seed0-at0.5", C)]
    one = {"seed0": {"seed": 0, "fraction": 1.0}}
    assert stability.compared_pairs(one) == [] and stability.transfer_plan(one) == [("seed0", "seed0", O)]


def random_basis(generator, d_out=6, d_in=4, name="fc"):
    basis = {}
    for key, d in (("G", d_out), ("A", d_in)):
        X = torch.randn(3 * d, d, generator=generator)
        basis[f"{name}.{key}.eigenvalues"], basis[f"{name}.{key}.eigenvectors"] = eigh_descending(X.T @ X)
    return basis


def test_overlap_table_labels_every_compared_pair():
    g = torch.Generator().manual_seed(0)
    bases = {label: random_basis(g) for label in MEMBERS}
    bases["seed0-at0.5"] = bases["seed0"]  # a checkpoint with its full run's basis: every overlap 1
    table = stability.overlap_table(bases, MEMBERS, ["fc"], 0.8)
    assert table.groupby(["a", "b"], sort=False).ngroups == 4
    same = table[table.a == "seed0-at0.5"]
    assert (same.relation == stability.CHECKPOINT).all() and np.allclose(same.overlap, 1.0)
    other = table[(table.a == "seed1") & (table.b == "seed2") & (table.factor == "G")]
    k = other["size"].to_numpy()
    U, V = bases["seed1"]["fc.G.eigenvectors"].double(), bases["seed2"]["fc.G.eigenvectors"].double()
    # principal angles by hand: the squared singular values of U_k^T V_k are their squared cosines
    expected = [float(torch.linalg.svdvals(U[:, :n].T @ V[:, :n]).square().mean()) for n in k]
    assert len(k) == 3 and other.overlap.to_numpy() == pytest.approx(expected, abs=1e-9)  # k of 1, 2, 3 of d = 6


def test_seed_summary_is_numpys_mean_and_sample_spread():
    rows = pd.DataFrame({"setting": ["unedited"] * 3 + ["kfac"] * 3, "seed": [0, 1, 2] * 2,
                         "acc": [90.0, 80.0, 85.5, 10.0, 12.0, 17.0]})
    summary = stability.seed_summary(rows, ["acc"]).set_index("setting")
    for setting, values in (("unedited", [90.0, 80.0, 85.5]), ("kfac", [10.0, 12.0, 17.0])):
        row = summary.loc[setting]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
        assert (row["min"], row["max"], row["n_seeds"], row["seeds"]) == (min(values), max(values), 3, "0 1 2")
    single = stability.seed_summary(rows[rows.seed == 0], ["acc"])
    assert single["std"].isna().all() and (single.n_seeds == 1).all()


def tiny_split(tmp_path, n=24, classes=3, size=8):
    rng = np.random.default_rng(0)
    path = tmp_path / "train.safetensors"
    io.save_tensors({"images": torch.from_numpy(rng.integers(0, 256, (n, 1, size, size), dtype=np.uint8)),
                     "labels": torch.from_numpy(rng.integers(0, classes, n).astype(np.int64))}, path, {"classes": classes})
    return ImageSet(path, img_size=size, train=True)


def test_a_checkpoint_is_its_full_run_stopped_on_the_way(tmp_path, monkeypatch):
    """The run with stop_after f trains round(f * epochs) epochs of the full run's schedule: its weights
    are the full run's after that epoch's last step (snapshotted by a hook on the optimizer step), and its
    history, the learning rates included, is the first epochs of the full run's."""
    data = tiny_split(tmp_path)
    model_cfg = ViTConfig(img_size=8, patch_size=4, num_classes=3, embed_dim=16, depth=1, num_heads=2)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-2, warmup_steps=2, weight_decay=0.1)
    steps_per_epoch, stopped_at = 3, run_length(4, 0.5)
    snapshots, plain_step = [], vit_train.training.step

    def snapshot_step(*args, **kwargs):
        plain_step(*args, **kwargs)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    torch.manual_seed(0)
    model = build_vit(model_cfg)
    monkeypatch.setattr(vit_train.training, "step", snapshot_step)
    full = vit_train.train(model, data, np.array([0, 1]), cfg, torch.device("cpu"))
    monkeypatch.setattr(vit_train.training, "step", plain_step)
    assert len(snapshots) == cfg.epochs * steps_per_epoch
    torch.manual_seed(0)
    checkpoint = build_vit(model_cfg)
    history = vit_train.train(checkpoint, data, np.array([0, 1]), TrainConfig(**{**cfg.__dict__, "stop_after": 0.5}),
                              torch.device("cpu"))
    assert history == full[:stopped_at] and history[-1]["lr"] > 0  # the schedule is not compressed
    reference = snapshots[stopped_at * steps_per_epoch - 1]
    for name, tensor in checkpoint.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(checkpoint.state_dict()["head.weight"], model.state_dict()["head.weight"])
    with pytest.raises(AssertionError, match="train.stop_after 0 must be in"):
        vit_train.train(checkpoint, data, np.array([0]), TrainConfig(**{**cfg.__dict__, "stop_after": 0}), "cpu")


def test_an_lm_checkpoint_is_its_full_run_stopped_on_the_way(monkeypatch):
    """The LM run with stop_after f trains round(f * steps) steps of the full run's schedule and chunk
    draws: its weights are the full run's after that step, its loss history the full run's up to it."""
    cfg = lm_train.LMTrainConfig(steps=10, batch_size=4, seq_len=8, lr=1e-2, warmup_steps=2, seed=3)
    chunks = torch.randint(0, 50, (12, 8), generator=torch.Generator().manual_seed(0))
    model_cfg = LMConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8)
    snapshots, plain_step = [], lm_train.training.step

    def snapshot_step(*args, **kwargs):
        plain_step(*args, **kwargs)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    model = build_lm(model_cfg, seed=3)
    monkeypatch.setattr(lm_train.training, "step", snapshot_step)
    full = lm_train.train_lm(model, chunks, cfg, "cpu")
    monkeypatch.setattr(lm_train.training, "step", plain_step)
    checkpoint = build_lm(model_cfg, seed=3)
    history = lm_train.train_lm(checkpoint, chunks, lm_train.LMTrainConfig(**{**cfg.__dict__, "stop_after": 0.6}),
                                "cpu")
    assert len(snapshots) == 10 and history[-1]["step"] == run_length(10, 0.6) == 6
    assert history[-1]["lr"] > full[-1]["lr"] >= 0  # stopped on the way down the full run's schedule
    for name, tensor in checkpoint.state_dict().items():
        torch.testing.assert_close(tensor, snapshots[5][name], rtol=0, atol=0, msg=name)


def test_a_study_of_a_model_used_as_is_is_a_config_error():
    from curvmem.common import ConfigError
    from curvmem.config import check_stability

    lm = {"stability": {"seeds": [0, 1], "layer_set": "all"}, "edit": {"layer_sets": {"all": ["x"]}}}
    with pytest.raises(ConfigError, match=r"^config key lm.stability: needs lm.train \(the study trains its models\)$"):
        check_stability("lm", lm, "steps")
    check_stability("lm", {**lm, "train": {"steps": 10, "seed": 0}}, "steps")  # the same study of a trained model


def test_transfer_edits_start_from_the_unedited_weights_of_each_member(tmp_path):
    """Each planned edit is W's projection on the kept pairs of the named basis (numpy, by hand: the
    shortest prefix of descending lam_i mu_j reaching rho of the mass), from the member's own unedited
    weights, never from the edit before it; the SVD edit comes from full runs only."""
    g = torch.Generator().manual_seed(1)
    members = {"seed0": {"seed": 0, "fraction": 1.0}, "seed1": {"seed": 1, "fraction": 1.0},
               "seed0-at0.5": {"seed": 0, "fraction": 0.5}}
    bases, weights = {}, {}
    for label in members:
        bases[label] = str(tmp_path / f"{label}.safetensors")
        io.save_tensors(random_basis(g, name="0"), bases[label], {})
        weights[label] = torch.randn(6, 4, generator=g)

    def load(label):
        model = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False))
        with torch.no_grad():
            model[0].weight.copy_(weights[label])
        return model, lambda m: {"W": m[0].weight.detach().clone().numpy()}

    rho = 0.7
    frame = stability.transfer_rows(members, load, ["0"], bases, rho, 0.5)
    assert len(frame) == 3 + len(stability.transfer_plan(members)) + 2  # unedited, the plan, SVD of the full runs
    assert (frame[frame.method == "svd"].fraction == 1).all() and (frame[frame.method == "kfac"].cutoff == rho).all()
    for row in frame.itertuples():
        W = weights[row.weights].double().numpy()
        if row.method == "none":
            expected = W
        elif row.method == "svd":
            U, s, Vt = np.linalg.svd(W, full_matrices=False)
            expected = (U[:, :2] * s[:2]) @ Vt[:2]  # drop the bottom half of the 4 singular values
        else:
            basis = io.load_tensors(bases[row.basis])
            lam, U_G = basis["0.G.eigenvalues"].double().numpy(), basis["0.G.eigenvectors"].double().numpy()
            mu, U_A = basis["0.A.eigenvalues"].double().numpy(), basis["0.A.eigenvectors"].double().numpy()
            mass = np.outer(lam, mu).ravel()
            order = np.argsort(-mass, kind="stable")
            k = int(np.argmax(np.cumsum(mass[order]) >= rho * mass.sum())) + 1
            keep = np.zeros(mass.size, bool)
            keep[order[:k]] = True
            expected = U_G @ ((U_G.T @ W @ U_A) * keep.reshape(6, 4)) @ U_A.T
            assert row.kept_fraction == pytest.approx(k / 24)
        np.testing.assert_allclose(row.W, expected, atol=1e-5, err_msg=f"{row.weights} {row.method} {row.basis}")
