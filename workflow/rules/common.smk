# Validation before any job, the study's artifact paths, and helpers the rule files share.
# Functions live here only; rules live in the stage files.
import json
import os
import shlex
import sys
import time
from pathlib import Path

from curvmem.artifacts import (BASIS_METHODS, FISHER_METHODS, LM_MEMBER_RULES, METHODS, TEMPLATES, VIT_MEMBER_RULES,
                               Layout, bsn_grid, cutoff_token, frontier_modules, lm_model_rule, stability_members,
                               weight_decays)
from curvmem.config import ConfigError, Memo, file_digests, validate

try:
    _memo = Memo()
    validate(config, _memo)
    ART = Layout(config, file_digests(config, _memo))  # fingerprinted paths of the expensive artifacts
    _memo.save()
except ConfigError as err:
    sys.exit(str(err))  # one line naming the key, before any job

# Spinning OpenMP threads stall when jobs share cores; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VIT = config.get("vit")  # None: this config has no vision arm
VIT_WEIGHT_DECAYS = {cutoff_token(wd): wd for wd in weight_decays(VIT)} if VIT else {}  # file token -> value
LM = config.get("lm")  # None: this config has no language-model arm

# Every job runs the stage function of its rule (curvmem.cli), params as JSON, named inputs and outputs as flags.
# Why no rules name a conda environment or container, the one lint that `snakemake --lint` reports: every
# job runs in the one pip environment of envs/setup.sh, pinned by envs/requirements.lock (three pip steps,
# one --no-deps, which a conda environment file cannot express). Neither a conda channel nor a container
# engine is reachable where this pipeline is built and tested, so a conda file or an image would be an
# untested claim. Each rule repeats this in one line above it, where the lint arises (tests/test_failures.py).
STAGE = "python -m curvmem {params.stage} {params.paths} --params {params.config:q} --threads {threads} --log {log}"
# The data-parallel stages (ViT training, K-FAC factors) run one rank per GPU of the job's `gpu` resource
# (0 here; a profile's set-resources, e.g. profiles/slurm, or `--set-resources vit_train:gpu=2` raises it):
# with more than one, the job relaunches itself under torchrun (curvmem.cli). Resources are not a rerun
# trigger, so the number of ranks never reruns a job.
RANKED_STAGE = f"{STAGE} --ranks {{resources.gpu}}"


def as_json(obj) -> str:
    """Params reach the job as JSON; Snakemake records them and reruns the job when they change."""
    return json.dumps(obj, sort_keys=True)


def stage(rule: str, params) -> dict:
    """A rule's params: its stage's name (the rule's own), its parameters (a dict, or a function of the
    wildcards giving one) and its named inputs and outputs as command-line flags."""
    as_params = (lambda wildcards: as_json(params(wildcards))) if callable(params) else as_json(params)
    return {"stage": rule, "config": as_params, "paths": cli_paths}


def cli_paths(wildcards, input, output) -> str:
    """`--<name> <path>...` for each named input and output: the stage function's arguments."""
    flags = []
    for name, value in [*input.items(), *output.items()]:
        paths = value if isinstance(value, list) else [value]
        if paths:
            flags.append(f"--{name} " + " ".join(shlex.quote(str(p)) for p in paths))
    return " ".join(flags)


wildcard_constraints:
    fp="[0-9a-f]{10}",


def artifact_params(rule: str):
    """The params of the job of `rule` whose outputs carry the fingerprint wildcard `fp` (rules that
    make several artifacts of one kind: the ViT and each member of its weight-decay family)."""
    return lambda wildcards: ART.stage(rule, wildcards.fp).params


def upstream_of(rule: str, of: str, output: str):
    """Input function: output `output` of rule `of` that the job of `rule` with fingerprint `fp` reads
    (ancient: an artifact is up to date by its path, whatever its file time)."""
    return lambda wildcards: ancient(ART.upstream(rule, wildcards.fp, of).outputs[output])


def lm_model() -> str:
    """The model directory every LM stage after training reads."""
    return ART[lm_model_rule(LM)].model


def method_cutoffs(arm: str, layer_set: str) -> dict[str, list[float]]:
    """method -> cutoffs of one layer set: K-FAC and SVD everywhere, the frontier's methods on its layer sets."""
    edit = config[arm]["edit"]
    methods = {"kfac": edit["rhos"], "svd": edit["svd_drop_fractions"]}
    frontier = edit.get("frontier")
    if frontier and layer_set in frontier["layer_sets"]:
        methods.update(frontier["cutoffs"])
    return {method: list(cutoffs) for method, cutoffs in methods.items() if cutoffs}


def cutoff_chunks(arm: str, layer_set: str) -> dict[str, dict[str, list[float]]]:
    """method -> chunk -> cutoffs of one layer set: one job per method ("all"), or per cutoff."""
    per_cutoff = config[arm]["edit"].get("one_job_per_cutoff", False)
    return {method: {cutoff_token(c): [c] for c in cutoffs} if per_cutoff else {"all": cutoffs}
            for method, cutoffs in method_cutoffs(arm, layer_set).items()}


def edit_jobs(arm: str) -> list[dict[str, str]]:
    """The wildcards of every edit job of an arm (the baseline is its own rule)."""
    return [{"layer_set": layer_set, "method": method, "chunk": chunk}
            for layer_set in config[arm]["edit"]["layer_sets"]
            for method, chunks in cutoff_chunks(arm, layer_set).items() for chunk in chunks]


def edit_results(arm: str) -> list[str]:
    """Every edit job's result file of an arm."""
    return [TEMPLATES[f"{arm}_edits"]["metrics"].format(**job) for job in edit_jobs(arm)]


def edit_params(arm: str, wildcards) -> dict:
    section = config[arm]
    evaluation = {"model": section["model"], "eval": section["eval"]} if arm == "vit" else {"eval": section["eval"]}
    method, frontier = wildcards.method, section["edit"].get("frontier") or {}
    options = {"alpha": frontier["alpha"]} if method == "kfac_scaled" else {"seed": frontier["seed"]} if method == "random" else {}
    return {**evaluation, "edit": {"method": method, "layer_set": wildcards.layer_set,
                                   "patterns": section["edit"]["layer_sets"][wildcards.layer_set],
                                   "factor_modules": section["factors"]["modules"],
                                   "cutoffs": cutoff_chunks(arm, wildcards.layer_set)[method][wildcards.chunk],
                                   **options}}


def bsn_points(arm: str) -> dict[tuple[str, str], dict]:
    """(layer set, setting token) -> the BalancedSubnet grid point of an arm."""
    return {(point["layer_set"], point["token"]): point for point in bsn_grid(config[arm]["bsn"])}


def bsn_results(arm: str, output: str = "metrics") -> list[str]:
    """One output of every BalancedSubnet job of an arm (its metrics, masks or cost)."""
    template = TEMPLATES[f"{arm}_bsn"][output]
    return [template.format(layer_set=layer_set, setting=token) for layer_set, token in bsn_points(arm)]


def bsn_params(arm: str, wildcards) -> dict:
    section = config[arm]
    point = bsn_points(arm)[(wildcards.layer_set, wildcards.setting)]
    training = {k: v for k, v in section["bsn"].items() if k in ("batch_size", "momentum", "weight_decay", "seed")}
    spec = {"layer_set": wildcards.layer_set, "patterns": section["edit"]["layer_sets"][wildcards.layer_set],
            "factor_modules": section["factors"]["modules"], "token": wildcards.setting,
            "config": {**{k: point[k] for k in ("ratio", "loss_weight", "epochs", "lr")}, **training}}
    context = {"model": section["model"]} if arm == "vit" else {"factors": section["factors"]}
    return {**context, "eval": section["eval"], "bsn": spec}


def weight_decay_results() -> list[str]:
    """The result of each member of the ViT weight-decay family (paper App. H)."""
    return [TEMPLATES["vit_weight_decay"]["metrics"].format(weight_decay=token) for token in ART.vit_family]


def kfac_edit(arm: str, layer_set: str, rho: float) -> dict:
    """The params (`sweep.EditSpec`) of one K-FAC edit of an arm's layer set at one rho."""
    section = config[arm]
    return {"method": "kfac", "layer_set": layer_set, "patterns": section["edit"]["layer_sets"][layer_set],
            "factor_modules": section["factors"]["modules"], "cutoffs": [rho]}


def weight_decay_params(wildcards) -> dict:
    wd = VIT_WEIGHT_DECAYS[wildcards.weight_decay]
    head = VIT["headline"]
    return {"model": VIT["model"], "eval": VIT["eval"], "factors": VIT["factors"], "weight_decay": wd,
            "edit": kfac_edit("vit", head["layer_set"], head["rho"])}


def member_artifact(rule: str, output: str):
    """Input function: an artifact of the weight-decay family member named by the wildcard."""
    return lambda wildcards: ART.vit_family[wildcards.weight_decay][rule].outputs[output]


def stability_inputs(arm: str, output: str) -> list:
    """One artifact of every member of an arm's stability study (`ART.stability`), in the members' order."""
    maker = {"model": "train", "sets": "sets", "basis": "basis"}[output]
    return [ancient(member[f"{arm}_{maker}"].outputs[output]) for member in ART.stability[arm].values()]


def stability_params(arm: str) -> dict:
    """What an arm's stability study edits and compares: its members, the K-FAC edit (with each basis) and
    the SVD edit (for the spread over seeds) of the ViT's headline or of `lm.stability`."""
    section = config[arm]
    members = [{"label": label, **member} for label, member in stability_members(section).items()]  # a list: ordered
    head = section["headline"] if arm == "vit" else section["stability"]
    return {"eval": section["eval"], "members": members, "edit": kfac_edit(arm, head["layer_set"], head["rho"]),
            "svd_drop_fraction": head["svd_drop_fraction"], **({"model": section["model"]} if arm == "vit" else {})}


def benchmark_file(rule: str) -> str:
    """Where Snakemake records the time and memory of an expensive rule's job (of the trained model)."""
    per_fp = (*VIT_MEMBER_RULES, *LM_MEMBER_RULES)  # rules with one job per model or Fisher type
    return f"logs/benchmarks/{rule}/{ART[rule].fp}.tsv" if rule in per_fp else f"logs/benchmarks/{rule}.tsv"


def cost_records() -> list[str]:
    """The timings every edit and BalancedSubnet job records."""
    out = []
    for arm in ("vit", "lm"):
        if config.get(arm):
            out += [TEMPLATES[f"{arm}_edits"]["cost"].format(**job) for job in edit_jobs(arm)]
            out += bsn_results(arm, "cost")
    return out


def edit_corrections(arm: str):
    """EK-FAC's eigenvalue corrections, for the ekfac edit only."""
    return lambda wildcards: [ART[f"{arm}_ekfac"].corrections] if wildcards.method == "ekfac" else []


def edit_basis(arm: str):
    """The curvature basis, for the methods that read it (SVD and the data-free bases must not wait for
    it); kfac_<fisher> reads the basis of that Fisher type's factors."""

    def basis(wildcards) -> list[str]:
        if wildcards.method in FISHER_METHODS:
            return [ART.fisher_bases[arm][FISHER_METHODS[wildcards.method]][f"{arm}_basis"].basis]
        return [ART[f"{arm}_basis"].basis] if wildcards.method in BASIS_METHODS else []

    return basis


def other_fisher_bases(arm: str) -> list:
    """The bases of the other Fisher types an arm compares, in the order of `fisher_overlap_params`."""
    return [ancient(stages[f"{arm}_basis"].basis) for stages in ART.fisher_bases[arm].values()]


def fisher_overlap_params(arm: str) -> dict:
    """What the Fisher comparison of an arm compares: the factors' own type, the other types (in the
    order of the `other` bases), and the modules and rho of the K-FAC edit whose kept pairs it counts."""
    section = config[arm]
    cutoffs = section["edit"]["frontier"]["cutoffs"]
    return {"fisher": section["factors"]["fisher"], "others": list(ART.fisher_bases[arm]),
            "factor_modules": section["factors"]["modules"], "patterns": frontier_modules(section),
            "rhos": sorted({rho for method in FISHER_METHODS for rho in cutoffs.get(method, [])})}


def study_stamp(study: list[str]) -> str:
    """A file the figures rule reads, touched whenever a run finds part of the study missing.

    Snakemake rebuilds a missing file only on the way to a job that must run: a deleted artifact, or
    the outputs a failed job left behind, would otherwise stay missing under an up-to-date
    `results/figures`. A newer stamp makes the figures out of date, so the plain command rebuilds
    whatever is missing on its way there. A complete study never touches it.
    """
    stamp = "results/.study"
    missing = [p for p in study if not os.path.exists(p)]
    if missing or not os.path.exists(stamp):
        os.makedirs("results", exist_ok=True)
        with open(stamp, "w") as f:  # new content: Snakemake skips inputs that are only newer, not changed
            f.write(f"{time.time_ns()} missing: {' '.join(missing)}\n")
    return stamp


def cheap_outputs() -> list[str]:
    """Every result rebuilt from the expensive artifacts: edits, BalancedSubnet, activation ratios,
    the headline models' analyses, tables, metrics, cost."""
    out = []
    for arm in ("vit", "lm"):
        if config.get(arm):
            out += [*TEMPLATES[f"{arm}_baseline"].values(), *edit_results(arm),
                    *(path for name in TEMPLATES[f"{arm}_bsn"] if name != "cost" for path in bsn_results(arm, name)),
                    *TEMPLATES[f"{arm}_activation_ratio"].values(), *TEMPLATES[f"{arm}_tables"].values()]
            if ART.fisher_bases.get(arm):
                out += TEMPLATES[f"{arm}_fisher_overlap"].values()
    if config.get("vit"):
        out += weight_decay_results()
        if ART.stability.get("vit"):
            out += TEMPLATES["vit_stability"].values()
    if ART.stability.get("lm"):
        out += TEMPLATES["lm_stability"].values()
    if config.get("lm"):
        out += TEMPLATES["lm_headline"].values()
        if config["lm"].get("benchmarks"):
            out += TEMPLATES["lm_benchmarks"].values()
    return out + list(TEMPLATES["metrics"].values()) + list(TEMPLATES["cost"].values()) + cost_records()


REPORT_ITEMS = {  # file stem -> (category, subcategory) in the report: the arm, then the paper's item
    "vit_table2": ("Vision arm", "Table 2: label-noise memorization"),
    "table2_vit": ("Vision arm", "Table 2: label-noise memorization"),
    "vit_differences": ("Vision arm", "Table 2: label-noise memorization"),
    "vit_activation_ratio": ("Vision arm", "Fig. 2: activation ratio"),
    "vit_rho_sweep": ("Vision arm", "Cutoff sweep"),
    "vit_rho_profile": ("Vision arm", "Cutoff sweep"),
    "vit_spectra": ("Vision arm", "Curvature spectra"),
    "vit_training": ("Vision arm", "Training"),
    "vit_weight_decay": ("Vision arm", "App. H: weight-decay family"),
    "vit_frontier": ("Vision arm", "Frontier of bases (ours)"),
    "vit_frontier_budgets": ("Vision arm", "Frontier of bases (ours)"),
    "vit_fisher_overlap": ("Vision arm", "True vs empirical Fisher (ours)"),
    "vit_fisher_edits": ("Vision arm", "True vs empirical Fisher (ours)"),
    "vit_stability": ("Vision arm", "Seeds and checkpoints (ours)"),
    "vit_stability_overlap": ("Vision arm", "Seeds and checkpoints (ours)"),
    "vit_stability_edits": ("Vision arm", "Seeds and checkpoints (ours)"),
    "vit_seeds": ("Vision arm", "Seeds and checkpoints (ours)"),
    "lm_stability": ("LM arm", "Seeds and checkpoints (ours)"),
    "lm_stability_overlap": ("LM arm", "Seeds and checkpoints (ours)"),
    "lm_stability_edits": ("LM arm", "Seeds and checkpoints (ours)"),
    "lm_seeds": ("LM arm", "Seeds and checkpoints (ours)"),
    "lm_table1": ("LM arm", "Table 1: verbatim recitation"),
    "table1_lm": ("LM arm", "Table 1: verbatim recitation"),
    "lm_differences": ("LM arm", "Table 1: verbatim recitation"),
    "lm_activation_ratio": ("LM arm", "Fig. 2: activation ratio"),
    "lm_task_retention": ("LM arm", "Fig. 3: task retention"),
    "lm_tasks": ("LM arm", "Fig. 3: task retention"),
    "lm_tasks_vs_recitation": ("LM arm", "Fig. 3: task retention"),
    "lm_facts_vs_frequency": ("LM arm", "Fig. 5: facts by frequency"),
    "lm_band_vs_retention": ("LM arm", "Fig. 4: band profile vs retention"),
    "lm_band_retention": ("LM arm", "Fig. 4: band profile vs retention"),
    "lm_band_correlation": ("LM arm", "Fig. 4: band profile vs retention"),
    "lm_benchmarks": ("LM arm", "Fig. 3: task retention"),
    "lm_benchmark_retention": ("LM arm", "Fig. 3: task retention"),
    "lm_stress_test": ("LM arm", "Table 6: stress test"),
    "table6_lm_stress": ("LM arm", "Table 6: stress test"),
    "table7_lm_coherence": ("LM arm", "Table 7: coherence"),
    "table12_lm_generations": ("LM arm", "Table 12: generations"),
    "lm_recitation_vs_perplexity": ("LM arm", "Cutoff sweep"),
    "lm_rho_profile": ("LM arm", "Cutoff sweep"),
    "lm_training": ("LM arm", "Training"),
    "lm_frontier": ("LM arm", "Frontier of bases (ours)"),
    "lm_frontier_budgets": ("LM arm", "Frontier of bases (ours)"),
    "lm_fisher_overlap": ("LM arm", "True vs empirical Fisher (ours)"),
    "lm_fisher_edits": ("LM arm", "True vs empirical Fisher (ours)"),
    "cost": ("Both arms", "Cost"),
}


def report_place(stem: str) -> tuple[str, str]:
    assert stem in REPORT_ITEMS, f"{stem}: add it to REPORT_ITEMS in workflow/rules/common.smk"
    return REPORT_ITEMS[stem]


def reported(rule: str, *keys: str) -> dict:
    """The rule's outputs, those named by `keys` marked for the report with the caption
    workflow/report/<file stem>.rst."""
    outputs = dict(TEMPLATES[rule])
    for key in keys:
        stem = Path(outputs[key]).stem
        category, subcategory = report_place(stem)
        outputs[key] = report(outputs[key], caption=f"../report/{stem}.rst", category=category,
                              subcategory=subcategory, labels={"item": stem})
    return outputs
