"""Every artifact of the study: its path, the rule that makes it, what its job receives, and
whether it is published with DVC. The rules, the loaders' error messages and the publish step all
read this one table.

Expensive artifacts (prepared data, the label corruption, trained or imported models, verified
memorized sets, K-FAC factors, curvature bases) carry a fingerprint in their path, e.g.
`results/vit/model-3f2a9c1e0b.safetensors`: a hash of the parameters their job receives and of the
fingerprints of its inputs. So

- a parameter change gives the artifact, and everything made from it, a new path: Snakemake
  rebuilds exactly those, from the config alone, with no provenance record needed (none travels
  with `git clone` or `dvc pull`);
- an artifact that exists at its path is up to date by construction, whatever its file time: the
  rules read expensive inputs as `ancient()`, so the order in which `dvc pull` writes files
  cannot trigger a rebuild;
- switching back to an earlier config finds its artifacts still in place.

Cheap results (edit metrics, tables, figures) keep plain paths and Snakemake's usual rules.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

FP = "{fp}"  # placeholder of the fingerprint in path templates
FP_CHARS = 10

# rule -> {output name: path template}; every artifact of the study is listed here once.
TEMPLATES: dict[str, dict[str, str]] = {
    # vision arm
    "vit_data": {"train": "data/vit/train-{fp}.{ext}", "val": "data/vit/val-{fp}.{ext}"},
    "vit_corrupt": {"corruption": "data/vit/corruption-{fp}.json"},
    "vit_train": {"model": "results/vit/model-{fp}.safetensors", "metrics": "results/vit/train_metrics-{fp}.json"},
    "vit_factors": {"factors": "results/vit/factors-{fp}.safetensors"},
    "vit_basis": {"basis": "results/vit/basis-{fp}.safetensors", "spectra": "results/vit/spectra-{fp}.parquet"},
    "vit_ekfac": {"corrections": "results/vit/ekfac-{fp}.safetensors"},  # only with frontier method ekfac
    "vit_fisher_overlap": {"overlap": "results/tables/vit_fisher_overlap.csv"},  # only with a kfac_<fisher> method
    "vit_baseline": {"metrics": "results/vit/edits/baseline.json"},
    "vit_edits": {"metrics": "results/vit/edits/{layer_set}/{method}/{chunk}.json",
                  "cost": "results/cost/vit_edits/{layer_set}/{method}/{chunk}.json"},
    "vit_bsn": {"metrics": "results/vit/bsn/{layer_set}/{setting}.json",
                "cost": "results/cost/vit_bsn/{layer_set}/{setting}.json"},
    "vit_activation_ratio": {"ratio": "results/vit/activation_ratio.parquet"},
    "vit_weight_decay": {"metrics": "results/vit/weight_decay/wd{weight_decay}.json"},
    "vit_stability": {"overlap": "results/tables/vit_stability_overlap.csv",  # only with vit.stability
                      "edits": "results/tables/vit_stability_edits.csv", "seeds": "results/tables/vit_seeds.csv"},
    "vit_tables": {"table2": "results/tables/table2_vit.csv", "differences": "results/tables/vit_differences.csv",
                   "sweep": "results/tables/vit_sweep.csv",
                   "activation": "results/tables/vit_activation_ratio.csv",
                   "kfac_plot": "results/plots/vit_kfac_sweep.csv", "svd_plot": "results/plots/vit_svd_sweep.csv",
                   "weight_decay": "results/tables/vit_weight_decay.csv", "rho_steps": "results/tables/vit_rho_steps.csv",
                   "frontier": "results/tables/vit_frontier.csv", "budgets": "results/tables/vit_frontier_budgets.csv",
                   "fisher": "results/tables/vit_fisher_edits.csv"},
    # language-model arm
    "lm_data": {**{name: f"data/lm/{name}-{{fp}}.parquet" for name in ("train_docs", "candidates", "clean", "tasks")},
                "manifest": "data/lm/text_manifest-{fp}.json"},  # what text was read (lm/text.py)
    "lm_import": {"model": "results/lm/pretrained-{fp}"},
    "lm_train": {"model": "results/lm/model-{fp}", "metrics": "results/lm/train_metrics-{fp}.json"},
    "lm_mine": {"mined": "results/lm/mined-{fp}.parquet", "summary": "results/lm/mining-{fp}.json"},
    "lm_sets": {"sets": "results/lm/sets-{fp}.parquet", "summary": "results/lm/sets_summary-{fp}.json"},
    "lm_factors": {"factors": "results/lm/factors-{fp}.safetensors"},
    "lm_basis": {"basis": "results/lm/basis-{fp}.safetensors", "spectra": "results/lm/spectra-{fp}.parquet"},
    "lm_ekfac": {"corrections": "results/lm/ekfac-{fp}.safetensors"},  # only with frontier method ekfac
    "lm_fisher_overlap": {"overlap": "results/tables/lm_fisher_overlap.csv"},  # only with a kfac_<fisher> method
    "lm_baseline": {"metrics": "results/lm/edits/baseline.json", "reference": "results/lm/reference_top10.safetensors"},
    "lm_edits": {"metrics": "results/lm/edits/{layer_set}/{method}/{chunk}.json",
                 "cost": "results/cost/lm_edits/{layer_set}/{method}/{chunk}.json"},
    "lm_bsn": {"metrics": "results/lm/bsn/{layer_set}/{setting}.json",
               "masks": "results/lm/bsn/{layer_set}/{setting}.safetensors",
               "cost": "results/cost/lm_bsn/{layer_set}/{setting}.json"},
    "lm_activation_ratio": {"ratio": "results/lm/activation_ratio.parquet", "profile": "results/lm/band_profile.parquet"},
    "lm_stability": {"overlap": "results/tables/lm_stability_overlap.csv",  # only with lm.stability
                     "edits": "results/tables/lm_stability_edits.csv", "seeds": "results/tables/lm_seeds.csv"},
    "lm_tables": {"table1": "results/tables/table1_lm.csv", "sweep": "results/tables/lm_sweep.csv",
                  "tasks": "results/tables/lm_tasks.csv", "facts": "results/tables/lm_facts.csv",
                  "activation": "results/tables/lm_activation_ratio.csv", "selection": "results/lm/selection.json",
                  "kfac_plot": "results/plots/lm_kfac_sweep.csv", "svd_plot": "results/plots/lm_svd_sweep.csv",
                  "table7": "results/tables/table7_lm_coherence.csv", "differences": "results/tables/lm_differences.csv",
                  "bands": "results/tables/lm_band_retention.csv", "band_correlation": "results/tables/lm_band_correlation.csv",
                  "rho_steps": "results/tables/lm_rho_steps.csv", "frontier": "results/tables/lm_frontier.csv",
                  "budgets": "results/tables/lm_frontier_budgets.csv", "fisher": "results/tables/lm_fisher_edits.csv"},
    "lm_benchmarks": {"scores": "results/lm/benchmarks.json", "table": "results/tables/lm_benchmarks.csv",
                      "harness_tasks": "results/lm/harness_tasks"},  # only with lm.benchmarks (lm/harness.py)
    "lm_headline": {"stress": "results/lm/stress.json", "table6": "results/tables/table6_lm_stress.csv",
                    "generations": "results/tables/table12_lm_generations.md"},
    # both arms
    "metrics": {"metrics": "results/metrics.json"},
    "cost": {"table": "results/tables/cost.csv"},
    "figures": {"figures": "results/figures"},
}
DIRECTORIES = {("lm_import", "model"), ("lm_train", "model"), ("lm_benchmarks", "harness_tasks"), ("figures", "figures")}


def fingerprint(rule: str, params: dict, inputs: list[str]) -> str:
    """Hash of a job's parameters and of its inputs' fingerprints (canonical JSON, sha256)."""
    blob = json.dumps({"rule": rule, "params": params, "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:FP_CHARS]


def cutoff_token(cutoff: float) -> str:
    """A cutoff as it appears in file names: the shortest text that reads back as the same float
    (0.9999999 -> '0.9999999', 1 -> '1.0'), so distinct cutoffs never share a file."""
    return repr(float(cutoff))


# Edit method (a path's {method}) -> what its cutoff is (curvmem.edit edits by them). The first two are the
# paper's; the others rank the same coefficients another way, for the frontier of bases (docs/method.md, section 10).
METHODS = {
    "kfac": "rho: fraction of the K-FAC curvature mass kept (the paper's edit)",
    "svd": "fraction of singular values dropped (the paper's baseline)",
    "kfac_scaled": "rho of the keep rule; the pairs below it scaled by alpha instead of zeroed",
    "ekfac": "rho of the EK-FAC mass kept: pairs ranked by the gradients' second moment in the K-FAC eigenbasis",
    "activation": "rho of A's eigenvalue mass kept: the keep rule with G replaced by the identity",
    "magnitude": "fraction of W's entries kept, largest |W_ij| first (identity basis)",
    "random": "fraction of coefficients kept, largest first, in a random orthogonal basis (a control)",
    "kfac_mc": "rho, as kfac, in the basis of factors with labels sampled from the model (the true Fisher)",
    "kfac_empirical": "rho, as kfac, in the basis of factors with the dataset labels (the empirical Fisher)",
}
# kfac_<fisher> -> the factors' Fisher type: the paper's edit on the other Fisher's basis (docs/method.md, section 11).
FISHER_METHODS = {"kfac_mc": "mc", "kfac_empirical": "empirical"}
BASIS_METHODS = ("kfac", "kfac_scaled", "ekfac", "activation", *FISHER_METHODS)  # the methods that read a basis


# The BalancedSubnet grid's axes besides the layer set: setting key -> the config list it takes values from.
BSN_AXES = {"ratio": "ratios", "loss_weight": "loss_weights", "epochs": "epochs", "lr": "lrs"}


def bsn_setting_token(setting: dict) -> str:
    """A BalancedSubnet grid point as it appears in file names, exact like `cutoff_token`:
    ratio 0.0015, loss weight 0.7, 5 epochs, lr 0.3 -> 'r0.0015-w0.7-e5-lr0.3'."""
    return (f"r{cutoff_token(setting['ratio'])}-w{cutoff_token(setting['loss_weight'])}-e{int(setting['epochs'])}"
            f"-lr{cutoff_token(setting['lr'])}")


def bsn_grid(bsn: dict) -> list[dict]:
    """Every setting of a `bsn:` config section: the product of its layer sets and hyper-parameter lists,
    each with its `layer_set` and file-name `token`."""
    import itertools

    grid = []
    for layer_set in bsn["layer_sets"]:
        for values in itertools.product(*(bsn[axis] for axis in BSN_AXES.values())):
            setting = {"layer_set": layer_set, **dict(zip(BSN_AXES, values))}
            grid.append({**setting, "token": bsn_setting_token(setting)})
    return grid


@dataclass
class Stage:
    """One expensive rule's job: what it receives, what it reads, and the paths it writes."""

    rule: str
    params: dict                               # the job's parameters (a config subset), fingerprinted
    upstream: list[str]                        # expensive stages whose outputs it reads, fingerprinted
    content: dict = field(default_factory=dict)  # digests of external files it reads, fingerprinted
    ext: str = ""                              # file extension where the format depends on the config
    version: int = 0                           # bumped when the stage computes other values from the same
                                               # params (old artifacts must not be reused), fingerprinted
    fp: str = ""                               # filled in by Layout
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> path; filled in by Layout
    sources: dict[str, "Stage"] = field(default_factory=dict)  # upstream rule -> its stage; filled in by Layout

    def __getattr__(self, name: str) -> str:
        try:
            return self.__dict__["outputs"][name]
        except KeyError:
            raise AttributeError(f"stage {self.__dict__.get('rule')} has no output {name!r}") from None


# Version 1: the sampled labels of the mc Fisher are drawn per global batch (the same on any number of ranks).
FACTORS_VERSION = 1


def _drop(section: dict | None, *keys: str) -> dict:
    return {k: v for k, v in (section or {}).items() if k not in keys}


def weight_decays(vit: dict) -> list[float]:
    """The weight decays of the ViT family (paper App. H); without `vit.weight_decays`, the trained
    model's own."""
    return list(vit.get("weight_decays") or [vit["train"]["weight_decay"]])


def vit_member(vit: dict, weight_decay: float) -> dict:
    """The `vit:` section of the family member trained with `weight_decay` (all else equal)."""
    return {**vit, "train": {**vit["train"], "weight_decay": weight_decay}}


VIT_MEMBER_RULES = ("vit_train", "vit_factors", "vit_basis")  # what each member of a family has of its own
LM_MEMBER_RULES = ("lm_train", "lm_mine", "lm_sets", "lm_factors", "lm_basis")  # lm_mine only with lm.mine


def stability_members(arm: dict) -> dict[str, dict]:
    """The models of an arm's stability study (docs/method.md, section 12), label -> {seed, fraction}:
    one per seed of `<arm>.stability.seeds` (default: the trained model's), trained in full, and the
    trained model's run stopped at each of `<arm>.stability.checkpoints`. Empty without `stability`."""
    stability = arm.get("stability")
    if not stability:
        return {}
    seed = arm["train"]["seed"]
    members = {f"seed{s}": {"seed": s, "fraction": 1.0} for s in stability.get("seeds") or [seed]}
    members.update({f"seed{seed}-at{cutoff_token(f)}": {"seed": seed, "fraction": f}
                    for f in stability.get("checkpoints") or []})
    return members


def stability_member(arm: dict, seed: int, fraction: float) -> dict:
    """An arm's config section for a stability member: trained with `seed`, stopped at `fraction` of its
    epochs or steps (1: the full run, whose parameters are the trained model's own when the seed is)."""
    train = {**arm["train"], "seed": seed, **({"stop_after": fraction} if fraction < 1 else {})}
    return {**arm, "train": train}


def vit_stages(vit: dict) -> list[Stage]:
    """The vision arm's expensive stages, in dependency order."""
    ext = "parquet" if vit["data"]["dataset"] == "imagefolder" else "safetensors"
    return [
        Stage("vit_data", _drop(vit["data"], "noise_rate"), [], ext=ext),
        Stage("vit_corrupt", {"noise_rate": vit["data"]["noise_rate"], "seed": vit["data"]["seed"]}, ["vit_data"]),
        Stage("vit_train", {"model": vit["model"], "train": vit["train"]}, ["vit_data", "vit_corrupt"]),
        Stage("vit_factors", {"model": vit["model"], "factors": vit["factors"]},
              ["vit_train", "vit_data", "vit_corrupt"], version=FACTORS_VERSION),
        Stage("vit_basis", {}, ["vit_factors"]),
    ] + ([Stage("vit_ekfac", {"model": vit["model"], "factors": vit["factors"], "modules": frontier_modules(vit)},
                ["vit_train", "vit_data", "vit_corrupt", "vit_basis"], version=FACTORS_VERSION)] if uses_ekfac(vit) else [])


def uses_ekfac(arm: dict) -> bool:
    """Whether an arm's frontier sweeps the EK-FAC edit (its corrections are then an artifact)."""
    return "ekfac" in ((arm["edit"].get("frontier") or {}).get("cutoffs") or {})


def frontier_modules(arm: dict) -> list[str]:
    """The module patterns of the frontier's layer sets: the only modules whose EK-FAC corrections
    an edit reads, so the only ones collected."""
    edit = arm["edit"]
    return sorted({pattern for name in edit["frontier"]["layer_sets"] for pattern in edit["layer_sets"][name]})


def fisher_comparisons(arm: dict) -> list[str]:
    """The other Fisher types an arm's frontier sweeps the K-FAC edit in (its `kfac_<fisher>` methods)."""
    cutoffs = (arm["edit"].get("frontier") or {}).get("cutoffs") or {}
    return [fisher for method, fisher in FISHER_METHODS.items() if method in cutoffs]


def with_fisher(arm: dict, fisher: str) -> dict:
    """An arm's section with its factors collected with another Fisher type (all else equal)."""
    return {**arm, "factors": {**arm["factors"], "fisher": fisher}}


def lm_model_rule(lm: dict) -> str:
    """The rule whose model every LM stage after training reads: trained here, or imported as is."""
    return "lm_train" if lm.get("train") else "lm_import"


def lm_stages(lm: dict, file_digests: dict | None = None) -> list[Stage]:
    """The LM arm's expensive stages, in dependency order; `file_digests` of the text files it reads."""
    ev = lm["eval"]
    digests = dict(file_digests or {})
    mine_digest = {"mine": digests.pop("mine")} if "mine" in digests else {}  # the miner's source, not lm_data's
    stages = [Stage("lm_data", {"world": lm["world"], "files": lm.get("files"), "few_shot": lm.get("few_shot", 0)},
                    [], content=digests)]
    if lm["model"].get("source"):
        stages.append(Stage("lm_import", {"model": lm["model"]}, []))
    if lm.get("train"):
        upstream = ["lm_data"] + (["lm_import"] if lm["model"].get("source") else [])
        stages.append(Stage("lm_train", {"model": lm["model"], "train": lm["train"]}, upstream))
    model = lm_model_rule(lm)
    if lm.get("mine"):
        stages.append(Stage("lm_mine", {"mine": lm["mine"], "windows": lm["windows"]}, [model, "lm_data"],
                            content=mine_digest))
    stages += [
        Stage("lm_sets", {"windows": lm["windows"], "batch_size": ev["batch_size"], "device": ev["device"]},
              [model, "lm_data"] + (["lm_mine"] if lm.get("mine") else [])),
        Stage("lm_factors", {"factors": lm["factors"]}, [model, "lm_data"], version=FACTORS_VERSION),
        Stage("lm_basis", {}, ["lm_factors"]),
    ]
    if uses_ekfac(lm):
        stages.append(Stage("lm_ekfac", {"factors": lm["factors"], "modules": frontier_modules(lm)},
                            [model, "lm_data", "lm_basis"],
                            version=FACTORS_VERSION))
    return stages


class Layout:
    """Paths of every expensive artifact of a config, fingerprinted: `layout["vit_train"].model`;
    the ViT weight-decay family's own as `layout.vit_family["0.3"]["vit_train"].model`, the factors
    and basis of another Fisher type as `layout.fisher_bases["vit"]["empirical"]["vit_basis"].basis`,
    a stability member's as `layout.stability["lm"]["seed1"]["lm_sets"].sets`."""

    def __init__(self, config: dict, file_digests: dict | None = None):
        self.stages: dict[str, Stage] = {}
        self.by_fp: dict[tuple[str, str], Stage] = {}  # (rule, fingerprint) -> stage, family members too
        self.vit_family: dict[str, dict[str, Stage]] = {}  # weight-decay token -> rule -> stage
        self.fisher_bases: dict[str, dict[str, dict[str, Stage]]] = {}  # arm -> Fisher type -> rule -> stage
        self.stability: dict[str, dict[str, dict[str, Stage]]] = {}  # arm -> member label -> rule -> stage
        if config.get("vit"):
            vit = config["vit"]
            self.stages = self._chain(vit_stages(vit))
            for wd in weight_decays(vit):
                member = self._chain(vit_stages(vit_member(vit, wd)))
                self.vit_family[cutoff_token(wd)] = {rule: member[rule] for rule in VIT_MEMBER_RULES}
            self.fisher_bases["vit"] = {fisher: self._other_fisher(vit_stages(with_fisher(vit, fisher)), "vit")
                                        for fisher in fisher_comparisons(vit)}
            self.stability["vit"] = self._stability_members(vit, vit_stages, VIT_MEMBER_RULES)
        if config.get("lm"):
            lm = config["lm"]
            self.stages.update(self._chain(lm_stages(lm, file_digests), self.stages))
            self.fisher_bases["lm"] = {fisher: self._other_fisher(lm_stages(with_fisher(lm, fisher), file_digests), "lm")
                                       for fisher in fisher_comparisons(lm)}
            self.stability["lm"] = self._stability_members(lm, lambda s: lm_stages(s, file_digests), LM_MEMBER_RULES)

    def _stability_members(self, arm: dict, stages, rules: tuple[str, ...]) -> dict[str, dict[str, Stage]]:
        """label -> rule -> stage of what each member of an arm's stability study has of its own (a member
        equal to the trained model shares its stages by fingerprint)."""
        members = {}
        for label, member in stability_members(arm).items():
            chain = self._chain(stages(stability_member(arm, member["seed"], member["fraction"])))
            members[label] = {rule: chain[rule] for rule in rules if rule in chain}
        return members

    def _other_fisher(self, stages: list[Stage], arm: str) -> dict[str, Stage]:
        """The factors and basis of an arm's chain with another Fisher type (the rest is the main chain's)."""
        chain = self._chain(stages)
        return {rule: chain[rule] for rule in (f"{arm}_factors", f"{arm}_basis")}

    def _chain(self, stages: list[Stage], known: dict[str, Stage] | None = None) -> dict[str, Stage]:
        """Fingerprints and paths of stages in dependency order (upstream fingerprints are known)."""
        chain = dict(known or {})
        for stage in stages:
            hashed = {**stage.params, **({"_content": stage.content} if stage.content else {}),
                      **({"_version": stage.version} if stage.version else {})}
            stage.fp = fingerprint(stage.rule, hashed, [chain[u].fp for u in stage.upstream])
            stage.outputs = {name: template.format(fp=stage.fp, ext=stage.ext)
                             for name, template in TEMPLATES[stage.rule].items()}
            stage.sources = {u: chain[u] for u in stage.upstream}
            chain[stage.rule] = self.by_fp.setdefault((stage.rule, stage.fp), stage)
        return {rule: stage for rule, stage in chain.items() if rule not in (known or {})}

    def __getitem__(self, rule: str) -> Stage:
        return self.stages[rule]

    def __contains__(self, rule: str) -> bool:
        return rule in self.stages

    def stage(self, rule: str, fp: str) -> Stage:
        """The stage of `rule` whose outputs carry fingerprint `fp` (the main model's or a family member's)."""
        try:
            return self.by_fp[(rule, fp)]
        except KeyError:
            raise KeyError(f"no artifact of rule {rule} in this config has fingerprint {fp} (the config "
                           f"changed, or the path was typed by hand)") from None

    def upstream(self, rule: str, fp: str, of: str) -> Stage:
        """The stage of rule `of` whose outputs the job of `rule` with fingerprint `fp` reads."""
        return self.stage(rule, fp).sources[of]

    def expensive_paths(self) -> list[str]:
        """What `publish` pushes and `dvc pull` brings back: every expensive artifact, in DAG order
        (the family members' after the main chain; a member equal to the main model is listed once)."""
        paths = [path for stage in self.stages.values() for path in stage.outputs.values()]
        others = [*self.vit_family.values(), *(f for arm in self.fisher_bases.values() for f in arm.values()),
                  *(m for arm in self.stability.values() for m in arm.values())]
        for member in others:
            paths += [p for stage in member.values() for p in stage.outputs.values() if p not in paths]
        return paths


def _pattern(template: str, directory: bool) -> re.Pattern:
    regex = re.escape(template)
    for name, sub in (("fp", f"[0-9a-f]{{{FP_CHARS}}}"), ("ext", "[a-z]+"), ("layer_set", "[^/]+"),
                      ("method", "[^/]+"), ("chunk", "[^/]+"), ("setting", "[^/]+"),
                      ("weight_decay", "[^/]+")):
        regex = regex.replace(re.escape("{" + name + "}"), sub)
    return re.compile(f"(^|/){regex}{'(/.*)?' if directory else ''}$")


_MAKERS = [(rule, _pattern(t, (rule, name) in DIRECTORIES)) for rule, outs in TEMPLATES.items()
           for name, t in outs.items()]


def is_fingerprinted(path: str | Path) -> bool:
    """True for an expensive artifact: its path names its content (a file inside a model directory too)."""
    rule = maker(path)
    return rule is not None and any(FP in template for template in TEMPLATES[rule].values())


def maker(path: str | Path) -> str | None:
    """The rule that makes an artifact (a file inside a model directory belongs to its directory)."""
    text = Path(path).as_posix()
    return next((rule for rule, pattern in _MAKERS if pattern.search(text)), None)
