"""Failure handling: killed jobs, corrupt artifacts, malformed configs, determinism, safe loading."""
import ast
import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project, run_module, snakemake

CFG = ("--configfile", "config/test.yaml")


def metrics_files(work: Path) -> dict[str, bytes]:
    files = (sorted((work / "results/vit/edits").rglob("*.json")) + sorted((work / "results/lm/edits").rglob("*.json"))
             + sorted((work / "results/tables").glob("*.csv")))
    return {str(f.relative_to(work)): f.read_bytes() for f in files}


@pytest.mark.pipeline
def test_killed_jobs_then_rerun_give_byte_identical_metrics(test_run, tmp_path):
    """kill -9 both training jobs (ViT file, LM directory) after their output is complete but before
    the rename, then both factor jobs mid-collection; the reruns must not trust anything half-done.
    The final metrics must be byte-identical to an uninterrupted fresh run (which also proves
    run-to-run determinism of both arms)."""
    work = copy_project(tmp_path / "crash")
    proc = snakemake(work, *CFG, "--keep-going", env={"CURVMEM_CRASH_AT": "write:model.safetensors,write:model"},
                     check=False)
    assert proc.returncode != 0
    assert not (work / "results/vit/model.safetensors").exists()
    assert not (work / "results/lm/model").exists()

    proc = snakemake(work, *CFG, "--keep-going", env={"CURVMEM_CRASH_AT": "factors:batch1"}, check=False)
    assert proc.returncode != 0
    assert (work / "results/vit/model.safetensors").exists() and (work / "results/lm/model/config.json").exists()
    assert not (work / "results/vit/factors.safetensors").exists()
    assert not (work / "results/lm/factors.safetensors").exists()
    assert not list((work / "results/vit").glob(".*.tmp")), "the rerun of training left its killed attempt's temp file"
    assert not list((work / "results/lm").glob(".*.tmpdir")), "the LM rerun left its killed attempt's temp directory"

    snakemake(work, *CFG)
    ours, reference = metrics_files(work), metrics_files(test_run)
    assert ours.keys() == reference.keys() and len(ours) == 7 + 7 + 8
    for name in ours:
        assert ours[name] == reference[name], f"{name} differs from the uninterrupted run"


@pytest.mark.pipeline
def test_corrupt_artifact_is_named_with_its_rule(tmp_path, test_run):
    import shutil

    work = tmp_path / "corrupt"
    shutil.copytree(test_run, work, symlinks=True)
    factors = work / "results/vit/factors.safetensors"
    factors.write_bytes(factors.read_bytes()[: factors.stat().st_size // 2])
    proc = snakemake(work, *CFG, check=False)
    assert proc.returncode != 0
    log = (work / "logs/vit_basis.log").read_text()
    assert "results/vit/factors.safetensors: not a readable safetensors file" in log
    assert "made by rule vit_factors" in log


def bad(base: str, key: str, value):
    config = copy.deepcopy(yaml.safe_load((REPO / "config" / base).read_text()))
    *parents, last = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[last] = value
    return config


def without(config: dict, key: str) -> dict:
    config = copy.deepcopy(config)
    del config[key]
    return config


MALFORMED = [
    ("unknown key", bad("test.yaml", "vit.train.learning_rate", 0.1), "vit.train.learning_rate: unknown key"),
    ("wrong type", bad("test.yaml", "vit.train.epochs", "3"), "vit.train.epochs: '3' is not of type 'integer'"),
    ("rho 0", bad("test.yaml", "vit.edit.rhos", [0, 0.9]), "vit.edit.rhos[0]: 0 is less than or equal to the minimum"),
    ("rho 1.5", bad("test.yaml", "vit.edit.rhos", [1.5]), "vit.edit.rhos[0]: 1.5 is greater than the maximum of 1"),
    ("negative noise", bad("test.yaml", "vit.data.noise_rate", -0.1), "vit.data.noise_rate: -0.1 is less than"),
    ("empty layer list", bad("test.yaml", "vit.edit.layer_sets", {"first_last": []}), "vit.edit.layer_sets.first_last"),
    ("pattern matching nothing", bad("test.yaml", "vit.factors.modules", ["blocks.*.mlp.fc3"]),
     "vit.factors.modules[0]: 'blocks.*.mlp.fc3' matches no nn.Linear"),
    ("missing data path", bad("test.yaml", "vit.data.root", "no/such/folder"), "vit.data.root: 'no/such/folder' does not exist"),
    ("unknown model", bad("test.yaml", "vit.model.name", "vit_nonexistent_patch3"), "vit.model.name: 'vit_nonexistent_patch3' is not a timm model"),
    ("duplicate cutoffs", bad("test.yaml", "vit.edit.rhos", [0.5, 0.9, 0.5]), "vit.edit.rhos: has duplicate entries"),
    ("test-only key in paper config", bad("paper.yaml", "vit.model.overrides", {"depth": 2}),
     "vit.model.overrides: only allowed with scale: test"),
    ("LM pattern matching nothing", bad("test.yaml", "lm.factors.modules", ["model.layers.*.mlp.fc1"]),
     "lm.factors.modules[0]: 'model.layers.*.mlp.fc1' matches no nn.Linear"),
    ("LM layer set outside the factors", bad("test.yaml", "lm.edit.layer_sets", {"x": ["model.layers.0.self_attn.q_proj"]}),
     "lm.edit.layer_sets.x[0]"),
    ("LM model from scratch without training", bad("test.yaml", "lm.train", None), "lm.train"),
    ("LM memorized file missing", without(bad("paper.yaml", "lm.files.memorized", "no/such.jsonl"), "vit"),
     "lm.files.memorized: 'no/such.jsonl' is not a file"),
    ("LM window longer than the context", bad("test.yaml", "lm.windows.prefix", 60),
     "lm.windows: prefix + suffix exceeds lm.train.seq_len"),
    ("arithmetic width that mixes widths", bad("test.yaml", "lm.world.arithmetic_width", 2),
     "lm.world.arithmetic_width: 2 is not one of [0, 3]"),
]


@pytest.mark.pipeline
@pytest.mark.parametrize("config,message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_config_fails_before_any_job_in_one_line(tmp_path, config, message):
    work = copy_project(tmp_path / "project")
    (work / "config/bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_module(work, "snakemake", "results/figures", "-n", "--cores", "1", "--configfile", "config/bad.yaml",
                      check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("config key ") and message in lines[0], proc.stderr[-2000:]
    assert "Job stats" not in proc.stdout


UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("pd", "read_pickle"),
                ("pandas", "read_pickle"), ("joblib", "load"), ("np", "load"), ("numpy", "load")}


def test_nothing_is_unpickled():
    """No loader of pulled artifacts may unpickle: torch.load only with weights_only=True, np.load
    never with allow_pickle, and no pickle / read_pickle / joblib at all."""
    offenders = []
    for path in [*REPO.glob("workflow/**/*.py"), *REPO.glob("benchmarks/*.py"), *REPO.glob("workflow/rules/*.smk")]:
        if path.suffix == ".smk":
            if "pickle" in path.read_text() or "torch.load" in path.read_text():
                offenders.append(str(path))
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names):
                    offenders.append(f"{path}:{node.lineno} imports a pickle library")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                call = (node.func.value.id, node.func.attr)
                kwargs = {k.arg: k.value for k in node.keywords}
                if call == ("torch", "load"):
                    wo = kwargs.get("weights_only")
                    if not (isinstance(wo, ast.Constant) and wo.value is True):
                        offenders.append(f"{path}:{node.lineno} torch.load without weights_only=True")
                elif call in {("np", "load"), ("numpy", "load")}:
                    ap = kwargs.get("allow_pickle")
                    if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                        offenders.append(f"{path}:{node.lineno} np.load with allow_pickle")
                elif call in UNSAFE_CALLS:
                    offenders.append(f"{path}:{node.lineno} {'.'.join(call)}")
    assert not offenders, offenders


def test_every_rule_has_a_log():
    import re

    names = []
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule (\w+):\n", smk.read_text(), flags=re.M)  # [head, name, body, name, body...]
        for name, block in zip(blocks[1::2], blocks[2::2]):
            names.append(name)
            assert re.search(r"^\s+log:", block, flags=re.M), f"rule {name} in {smk.name} has no log"
            assert re.search(r"^\s+benchmark:", block, flags=re.M), f"rule {name} in {smk.name} has no benchmark"
            assert "run:" not in block, f"rule {name} in {smk.name} has a run: block"
    assert len(names) == 20, names  # every rule of both arms was found (a changed layout must not empty this test)
