"""Failure handling: killed jobs, malformed configs and inputs, determinism, safe loading, lint."""
import ast
import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project, layout, run_module, snakemake

CFG = ("--configfile", "config/test.yaml")


def all_outputs(work: Path) -> dict[str, bytes]:
    """Every file the pipeline wrote (data, artifacts, results), by path; model directories file by
    file. Not the bookkeeping stamp `results/.study` (it records when a run found the study incomplete),
    and not the timings (`results/cost/`): they are measurements of the run."""
    files = [f for top in ("data", "results") for f in sorted((work / top).rglob("*"))
             if f.is_file() and f.name not in ("README.md", ".study")
             and not str(f.relative_to(work)).startswith("results/cost/")]
    return {str(f.relative_to(work)): f.read_bytes() for f in files}


@pytest.mark.pipeline
def test_killed_jobs_then_rerun_give_byte_identical_outputs(test_run, tmp_path):
    """kill -9 both training jobs (ViT file, LM directory) after their output is complete but before
    the rename, then both factor jobs mid-collection; the reruns must not trust anything half-done.
    Every file they write (data, models, factors, bases, EK-FAC corrections, and one edit of each arm
    that reads them) must then be byte-identical to the uninterrupted run's: a rebuild from the same
    inputs gives the same bytes. (The tables and figures made from such results are compared after
    the rebuilds of tests/test_recovery.py.)"""
    work = copy_project(tmp_path / "crash")
    art = layout(work)
    targets = [*art.expensive_paths(), "results/vit/edits/block0/kfac/all.json", "results/lm/edits/layer0/kfac/all.json"]

    def run(crash_at: str | None = None):
        env = {"CURVMEM_CRASH_AT": crash_at} if crash_at else None
        return run_module(work, "snakemake", *targets, "--cores", "2", *CFG, "--keep-going", env=env,
                          check=crash_at is None)

    vit_model, lm_model = (Path(art[rule].model).name for rule in ("vit_train", "lm_train"))
    assert run(f"write:{vit_model},write:{lm_model}").returncode != 0
    assert not (work / art["vit_train"].model).exists()
    assert not (work / art["lm_train"].model).exists()

    assert run("factors:batch1").returncode != 0
    assert (work / art["vit_train"].model).exists() and (work / art["lm_train"].model / "config.json").exists()
    assert not (work / art["vit_factors"].factors).exists()
    assert not (work / art["lm_factors"].factors).exists()
    assert not list((work / "results/vit").glob(".*.tmp")), "the rerun of training left its killed attempt's temp file"
    assert not list((work / "results/lm").glob(".*.tmpdir")), "the LM rerun left its killed attempt's temp directory"

    run()
    ours, reference = all_outputs(work), all_outputs(test_run)
    assert all(target in ours or f"{target}/config.json" in ours for target in targets), sorted(ours)
    extra = sorted(set(ours) - set(reference))
    assert not extra, f"not in the uninterrupted run: {extra}"
    differ = [name for name in ours if ours[name] != reference[name]]
    assert not differ, f"differ from the uninterrupted run: {differ}"


@pytest.mark.pipeline
def test_metrics_files_hold_no_timings(test_run):
    art = layout(test_run)
    for path in (art["vit_train"].metrics, art["lm_train"].metrics):
        text = (test_run / path).read_text()
        assert not any(word in text for word in ("second", "per_s", "time")), path
    assert "seconds" not in json.dumps(json.loads((test_run / "results/metrics.json").read_text()))


def bad(base: str, key: str, value):
    return with_key(copy.deepcopy(yaml.safe_load((REPO / "config" / base).read_text())), key, value)


def without(config: dict, key: str) -> dict:
    config = copy.deepcopy(config)
    del config[key]
    return config


def with_key(config: dict, key: str, value) -> dict:
    *parents, last = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[last] = value
    return config


def lm_files_config(tmp: Path, memorized: str) -> dict:
    """config/paper.yaml's LM arm on local files (paths relative to the project copy); the memorized
    file's content given."""
    config = without(copy.deepcopy(yaml.safe_load((REPO / "config/paper.yaml").read_text())), "vit")
    files = {"memorized": memorized, "quotes": '{"text": "a famous quote"}\n', "clean": '{"text": "clean"}\n'}
    for key, text in files.items():
        config["lm"]["files"][key] = f"inputs/{key}.jsonl"
    config["lm"]["model"]["source"] = "models/tiny"  # present in the copy (see the test)
    config["_files"] = files  # written by the test, then dropped
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
    ("layer set outside the factor modules", bad("test.yaml", "vit.edit.layer_sets", {"x": ["blocks.0.attn.*"]}),
     "vit.edit.layer_sets.x[0]: 'blocks.0.attn.*' matches no module of vit.factors.modules"),
    ("missing data path", bad("test.yaml", "vit.data.root", "no/such/folder"), "vit.data.root: 'no/such/folder' does not exist"),
    ("unknown model", bad("test.yaml", "vit.model.name", "vit_nonexistent_patch3"), "vit.model.name: 'vit_nonexistent_patch3' is not a timm model"),
    ("duplicate cutoffs", bad("test.yaml", "vit.edit.rhos", [0.5, 0.9, 0.5]), "vit.edit.rhos: has duplicate entries"),
    ("test-only key in paper config", bad("paper.yaml", "vit.model.overrides", {"depth": 2}),
     "vit.model.overrides: only allowed with scale: test"),
    ("subset larger than the dataset", bad("test.yaml", "vit.data.n_train", 70000),
     "vit.data.n_train: 70000 is more than the 60000 images of the train split"),
    ("validation subset larger than the dataset", bad("test.yaml", "vit.data.n_val", 10001),
     "vit.data.n_val: 10001 is more than the 10000 images of the val split"),
    ("noise rate that leaves no mislabeled image", bad("test.yaml", "vit.data.noise_rate", 0.0008),
     "vit.data.noise_rate: 0.0008 of 600 training images leaves no mislabeled image"),
    ("factor images leave none for the activation ratio", bad("test.yaml", "vit.factors.n_images", 540),
     "vit.factors.n_images: 540 leaves none of the 540 clean training images"),
    ("LM pattern matching nothing", bad("test.yaml", "lm.factors.modules", ["model.layers.*.mlp.fc1"]),
     "lm.factors.modules[0]: 'model.layers.*.mlp.fc1' matches no nn.Linear"),
    ("LM layer set outside the factors", bad("test.yaml", "lm.edit.layer_sets", {"x": ["model.layers.0.self_attn.q_proj"]}),
     "lm.edit.layer_sets.x[0]"),
    ("LM model from scratch without training", bad("test.yaml", "lm.train", None), "lm.train"),
    ("LM memorized file missing", with_key(lm_files_config(None, '{"text": "one"}\n'), "lm.files.memorized",
                                           "no/such.jsonl"),
     "lm.files.memorized: 'no/such.jsonl' is not a file"),
    ("LM JSONL line that does not parse", lm_files_config(None, '{"text": "one"}\n{"text": "two"\n'),
     "lm.files.memorized: inputs/memorized.jsonl, line 2: not valid JSON"),
    ("LM JSONL line without the expected keys", lm_files_config(None, '{"title": "one"}\n'),
     "lm.files.memorized: inputs/memorized.jsonl, line 1: needs a 'text' key, or 'prefix' and 'suffix'"),
    ("LM local model path that does not exist", bad("smollm2.yaml", "lm.model.source", "models/no-such/model"),
     "lm.model.source: 'models/no-such/model' does not exist (a local path"),
    ("LM window longer than the context", bad("test.yaml", "lm.windows.prefix", 60),
     "lm.windows: prefix + suffix exceeds lm.train.seq_len"),
    ("two checkpoints at one epoch", bad("test.yaml", "vit.stability.checkpoints", [0.5, 0.6]),
     "vit.stability.checkpoints[1]: 0.6 and 0.5 of 3 epochs both stop after 2"),
    ("arithmetic width that mixes widths", bad("test.yaml", "lm.world.arithmetic_width", 2),
     "lm.world.arithmetic_width: 2 is not one of [0, 3]"),
]


def snakemake_lines(proc) -> list[str]:
    """What Snakemake printed on stderr, without its notice that it uses this workflow's profile."""
    return [line for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith("Using workflow specific profile")]


@pytest.mark.pipeline
@pytest.mark.parametrize("config,message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_config_fails_before_any_job_in_one_line(tmp_path, config, message):
    work = copy_project(tmp_path / "project")
    config = copy.deepcopy(config)
    for key, text in config.pop("_files", {}).items():  # the LM text files a case names
        (work / "inputs").mkdir(exist_ok=True)
        (work / "inputs" / f"{key}.jsonl").write_text(text)
        model_dir = work / "models/tiny"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps({"model_type": "olmo2", "num_hidden_layers": 26,
                                                           "hidden_size": 16, "intermediate_size": 32,
                                                           "num_attention_heads": 2, "vocab_size": 64}))
    (work / "config/bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_module(work, "snakemake", "results/figures", "-n", "--cores", "1", "--configfile", "config/bad.yaml",
                      check=False)
    assert proc.returncode == 1
    lines = snakemake_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("config key ") and message in lines[0], proc.stderr[-2000:]
    assert "Job stats" not in proc.stdout


@pytest.mark.pipeline
def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    """The default config with a syntax error: one line with the file, line and column."""
    work = copy_project(tmp_path / "project")
    text = (work / "config/config.yaml").read_text().replace("threads:", "threads: [1, 2\nbad:", 1)
    (work / "config/config.yaml").write_text(text)
    proc = run_module(work, "snakemake", "results/figures", "-n", "--cores", "1", check=False)
    assert proc.returncode == 1
    lines = snakemake_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("config file config/config.yaml, line "), proc.stderr[-2000:]


@pytest.mark.pipeline
def test_failed_validation_never_deletes_earlier_outputs(test_run, tmp_path):
    from conftest import copy_run

    work = copy_run(test_run, tmp_path / "work")
    before = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}
    (work / "config/bad.yaml").write_text(yaml.safe_dump(bad("test.yaml", "vit.data.n_train", 70000)))
    proc = run_module(work, "snakemake", "results/figures", "--cores", "1", "--configfile", "config/bad.yaml",
                      check=False)
    assert proc.returncode == 1
    assert before == {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}


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
        blocks = re.split(r"^\s*rule (\w+):[^\n]*\n", smk.read_text(), flags=re.M)  # [head, name, body, name, body...]
        for name, block in zip(blocks[1::2], blocks[2::2]):
            names.append(name)
            assert re.search(r"^\s+log:", block, flags=re.M), f"rule {name} in {smk.name} has no log"
            assert re.search(r"^\s+benchmark:", block, flags=re.M), f"rule {name} in {smk.name} has no benchmark"
            assert "run:" not in block, f"rule {name} in {smk.name} has a run: block"
    assert len(names) == 34, names  # every rule of both arms was found (a changed layout must not empty this test)


@pytest.mark.pipeline
def test_lint_reports_only_the_justified_lint(tmp_path):
    """`snakemake --lint` finds nothing but the missing per-rule conda environment, which
    workflow/rules/common.smk justifies where the shell command of every rule is defined."""
    work = copy_project(tmp_path / "project")
    proc = run_module(work, "snakemake", "--lint", check=False)
    lints = {line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip().startswith("* ")}
    assert lints == {"* Specify a conda environment or container for each rule.:"}, proc.stderr[-4000:]
    assert "Why no rules name a conda environment or container" in (REPO / "workflow/rules/common.smk").read_text()
    for smk in (REPO / "workflow/rules").glob("*.smk"):  # and the lint is answered where it arises, at each rule
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("rule "):
                assert "lint 'conda environment or container'" in lines[i - 1], f"{smk.name}: {line.strip()}"
