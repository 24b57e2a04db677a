"""Publish and restore the expensive artifacts with DVC; Snakemake keeps owning the DAG.

    python -m curvmem.artifacts publish [--configfile config/test.yaml]
    python -m curvmem.artifacts restore [--configfile config/test.yaml]

publish refuses while `snakemake -n` has pending jobs (so what is pushed is what the current code
and config produce), then `dvc add` + `dvc push` the expensive artifacts; commit the printed .dvc
files with git. restore pulls them (DVC checks every checksum), opens each one, and records
Snakemake provenance for them with `snakemake --touch --forceall <artifacts>`: afterwards
`snakemake --cores all results/figures` recomputes nothing that was pulled, and still notices a
later change of parameters or code.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from . import io

TARGET = "results/figures"


def vit_split(config: dict, split: str) -> str:
    ext = "parquet" if config["vit"]["data"]["dataset"] == "imagefolder" else "safetensors"
    return f"data/vit/{split}.{ext}"


def expensive_artifacts(config: dict) -> list[str]:
    """Prepared data, the memorized sets, trained (or imported) models, K-FAC factors and curvature
    bases of every configured arm.

    Everything upstream of the cheap edit/evaluate/table/figure jobs, so a restore leaves only
    those to run. Model directories (LM) are published as DVC directories.
    """
    paths = []
    if config.get("vit"):
        paths += [vit_split(config, "train"), vit_split(config, "val"), "data/vit/corruption.json",
                  "results/vit/model.safetensors", "results/vit/train_metrics.json",
                  "results/vit/factors.safetensors", "results/vit/basis.safetensors", "results/vit/spectra.parquet"]
    lm = config.get("lm")
    if lm:
        paths += [f"data/lm/{name}.parquet" for name in ("train_docs", "candidates", "clean", "tasks")]
        if lm["model"].get("source"):
            paths.append("results/lm/pretrained")
        if lm.get("train"):
            paths += ["results/lm/model", "results/lm/train_metrics.json"]
        paths += ["results/lm/sets.parquet", "results/lm/sets_summary.json", "results/lm/factors.safetensors",
                  "results/lm/basis.safetensors", "results/lm/spectra.parquet"]
    return paths


def load_config(configfile: str) -> dict:
    return yaml.safe_load(Path(configfile).read_text())


def run(*cmd: str, capture: bool = False) -> str:
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0:
        detail = (proc.stdout or "")[-2000:] + (proc.stderr or "")[-2000:] if capture else ""
        sys.exit(f"failed: {' '.join(cmd)}\n{detail}")
    return (proc.stdout or "") + (proc.stderr or "")


def snakemake(*args: str, capture: bool = False) -> str:
    return run(sys.executable, "-m", "snakemake", *args, capture=capture)


def dvc(*args: str) -> str:
    return run(sys.executable, "-m", "dvc", *args)


def check_loadable(path: str) -> None:
    """Open every artifact the way the pipeline does; raises ArtifactError naming the file."""
    if Path(path).is_dir():  # a model directory: its weights must open
        weights = sorted(Path(path).glob("*.safetensors"))
        if not (Path(path) / "config.json").exists() or not weights:
            raise io.ArtifactError(f"{path}: not a complete model directory (config.json + safetensors weights)")
        for w in weights:
            io.safetensors_keys(w)  # header only: a 7B model is not read into memory
    elif path.endswith(".safetensors"):
        io.load_metadata(path)
        io.load_tensors(path)
    elif path.endswith(".json"):
        io.load_json(path)
    elif path.endswith(".parquet"):
        io.load_parquet(path)


def publish(configfile: str) -> None:
    plan = snakemake(TARGET, "-n", "--configfile", configfile, capture=True)
    if "Nothing to be done" not in plan:
        jobs = plan.split("Job stats:")[1].split("Reasons:")[0].strip() if "Job stats:" in plan else plan[-1500:]
        sys.exit(f"refusing to publish: snakemake has pending jobs for {configfile}; run the pipeline first\n{jobs}")
    paths = expensive_artifacts(load_config(configfile))
    for path in paths:
        check_loadable(path)
    dvc("add", *paths)
    dvc("push", *[f"{p}.dvc" for p in paths])
    print("published; now version the pointers with git:\n  git add " + " ".join(f"{p}.dvc" for p in paths)
          + " && git commit -m 'Publish artifacts'")


def restore(configfile: str) -> None:
    paths = expensive_artifacts(load_config(configfile))
    missing = [f"{p}.dvc" for p in paths if not Path(f"{p}.dvc").exists()]
    if missing:
        sys.exit(f"nothing published for {configfile}: missing {', '.join(missing)}")
    dvc("pull", *[f"{p}.dvc" for p in paths])  # DVC verifies each file's md5 on checkout
    for path in paths:
        check_loadable(path)
    # Provenance: Snakemake records params, code and inputs for the pulled outputs, in DAG order.
    snakemake(*paths, "--touch", "--forceall", "--cores", "1", "--configfile", configfile, capture=True)
    print(f"restored {len(paths)} artifacts; snakemake --cores all {TARGET} now reruns only what depends on "
          f"changed parameters or code")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["publish", "restore"])
    p.add_argument("--configfile", default="config/config.yaml")
    args = p.parse_args(argv)
    (publish if args.command == "publish" else restore)(args.configfile)


if __name__ == "__main__":
    main()
