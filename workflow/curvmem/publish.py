"""Publish the expensive artifacts of a config with DVC, so that a clone needs only `dvc pull`:

    python -m curvmem.publish [--configfile config/config.yaml]

It refuses while `snakemake -n` has pending jobs (what is pushed is exactly what the current code
and config produce), opens every artifact the way the pipeline does, then `dvc add` + `dvc push`,
and prints the git command that versions the pointers (and the remote's address).

There is no restore step: a plain `dvc pull` brings the artifacts back to their fingerprinted
paths, and Snakemake takes a file that exists at its path as up to date, whatever the order in
which DVC wrote it (see `curvmem.artifacts`).
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from . import io
from .artifacts import Layout
from .common import ConfigError
from .config import Memo, file_digests, load_yaml, validate

TARGET = "results/figures"


def run(*cmd: str, capture: bool = False) -> str:
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0:
        detail = (proc.stdout or "")[-2000:] + (proc.stderr or "")[-2000:] if capture else ""
        sys.exit(f"failed: {' '.join(cmd)}\n{detail}")
    return (proc.stdout or "") + (proc.stderr or "")


def layout(configfile: str) -> Layout:
    config = load_yaml(configfile)
    memo = Memo()
    validate(config, memo)
    return Layout(config, file_digests(config, memo))


def publish(configfile: str) -> list[str]:
    plan = run(sys.executable, "-m", "snakemake", TARGET, "-n", f"--configfile={configfile}", capture=True)
    if "Nothing to be done" not in plan:
        jobs = plan.split("Job stats:")[1].split("Reasons:")[0].strip() if "Job stats:" in plan else plan[-1500:]
        sys.exit(f"refusing to publish: snakemake has pending jobs for {configfile}; run the pipeline first\n{jobs}")
    paths = layout(configfile).expensive_paths()
    for path in paths:
        io.check_loadable(path)
    run(sys.executable, "-m", "dvc", "add", "--quiet", *paths)
    run(sys.executable, "-m", "dvc", "push", "--quiet", *[f"{p}.dvc" for p in paths])
    pointers = " ".join(f"{p}.dvc" for p in paths)
    print(f"published {len(paths)} artifacts; version the pointers and the remote's address with git:\n"
          f"  git add {pointers} .dvc/config && git commit -m 'Publish artifacts'")
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default="config/config.yaml")
    args = p.parse_args(argv)
    try:
        publish(args.configfile)
    except (ConfigError, io.ArtifactError) as err:
        sys.exit(str(err))


if __name__ == "__main__":
    main()
