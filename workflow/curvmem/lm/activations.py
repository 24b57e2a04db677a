"""Activation ratio of the LM's MLP inputs (paper Fig. 2, LM half): memorized windows vs clean text,
at the positions that predict the suffix tokens; and the band profile of every memorized set and
task family (paper Fig. 4). The clean text is disjoint from the factor text: the factor text's
chunks after the ones the factors read."""
from __future__ import annotations

import pandas as pd
import torch

from ..activations import capture_inputs, ratio_rows, ratio_table
from ..basis import module_basis
from ..common import InputError

COLUMNS = ["module", "basis", "band", "memorized", "clean", "ratio"]


def suffix_positions(batch: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """(B, T) mask of the positions whose next token is a suffix token: prefix_len - 1 .. T - 2."""
    positions = torch.zeros(batch.shape, dtype=torch.bool, device=batch.device)
    positions[:, prefix_len - 1:-1] = True
    return positions


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str" if i < 3 else "float") for i, c in enumerate(COLUMNS)})


def window_inputs(model, names: list[str], windows: pd.DataFrame, clean_stream: torch.Tensor, batch_size: int,
                  device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Layer inputs at the suffix-predicting positions of `windows` and of clean windows of the same
    lengths.

    `windows` has `prefix_ids` and `suffix_ids` (lengths may differ between windows); each group of
    equal (prefix, suffix) lengths is compared with as many clean windows of that length, cut in
    order from `clean_stream` (1-D token ids), at the same positions.
    """
    mem_inputs, clean_inputs, cursor = [], [], 0
    lengths = [(len(p), len(s)) for p, s in zip(windows["prefix_ids"], windows["suffix_ids"])]
    for p_len, s_len in sorted(set(lengths)):
        group = [list(p) + list(s) for (p, s), ls in zip(zip(windows["prefix_ids"], windows["suffix_ids"]), lengths)
                 if ls == (p_len, s_len)]
        width = p_len + s_len
        need = len(group) * width
        if cursor + need > len(clean_stream):
            raise InputError(f"the clean text after the factor sequences has {len(clean_stream)} tokens, the "
                             f"activation ratio needs {cursor + need}: give the factors more clean text or lower "
                             f"lm.factors.n_sequences")
        clean = clean_stream[cursor:cursor + need].reshape(len(group), width)
        cursor += need

        def run(model, x, p_len=p_len):
            x = x.to(device)
            model(input_ids=x)
            return suffix_positions(x, p_len)

        def inputs(seqs):
            return capture_inputs(model, names, (seqs[i:i + batch_size] for i in range(0, len(seqs), batch_size)),
                                  run)

        mem_inputs.append(inputs(torch.tensor(group)))
        clean_inputs.append(inputs(clean))
    merge = lambda parts: {n: torch.cat([p[n] for p in parts]) for n in names}  # noqa: E731
    return merge(mem_inputs), merge(clean_inputs)


def lm_activation_ratio(model, names: list[str], basis: dict, windows: pd.DataFrame, clean_stream: torch.Tensor,
                        batch_size: int, device) -> pd.DataFrame:
    """The ratio table of memorized windows vs clean windows of the same lengths (`window_inputs`)."""
    memorized, clean = window_inputs(model, names, windows, clean_stream, batch_size, device)
    return ratio_table(model, names, basis, memorized, clean)


def band_profile(model, names: list[str], basis: dict, groups: dict[str, pd.DataFrame], clean_stream: torch.Tensor,
                 batch_size: int, device) -> pd.DataFrame:
    """Paper Fig. 4's input: for each group of windows (a memorized set, a task family's prompts
    followed by their answers), each module and band of the curvature order, the group's mean
    activation strength over clean text's at the same positions."""
    directions = {n: {"kfac": module_basis(basis, n)[3]} for n in names}
    frames = []
    for group, windows in groups.items():
        if not len(windows):
            continue
        inputs, clean = window_inputs(model, names, windows, clean_stream, batch_size, device)
        rows = pd.DataFrame(ratio_rows(inputs, clean, directions)).rename(columns={"memorized": "group_strength",
                                                                                  "clean": "clean_strength"})
        frames.append(rows.assign(group=group, n=len(windows)))
    columns = ["group", "n", "module", "basis", "band", "group_strength", "clean_strength", "ratio"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
