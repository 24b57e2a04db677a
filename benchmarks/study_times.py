"""End-to-end times of a study, measured in one command on a fresh clone of this checkout:

    python benchmarks/study_times.py [--configfile config/config.yaml] [--workdir DIR] [--rev REV]

1. `git clone` of HEAD (or of commit --rev, to measure an earlier version the same way) into
   --workdir (default: a new temporary directory), then
   `snakemake --cores all results/figures`: the study's wall time;
2. the job seconds per stage, from the run's benchmark files (`benchmarks/stage_times.py`);
3. a no-op rerun: its wall time;
4. one cutoff changed, per arm (the last rho of the sweep, nudged down by 0.01): the jobs Snakemake
   plans and the wall time of the rerun.
The numbers are printed; nothing is written outside the work directory. Run it alone on the
machine: other load changes every time it prints.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def snakemake(work: Path, *args: str) -> tuple[float, str]:
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": str(work / "workflow")}  # the clone's own library, not this checkout's
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/figures", "--cores", "all", *args], cwd=work,
                          capture_output=True, text=True, env=env)
    seconds = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def main(argv=None):
    from conftest import job_counts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default="config/config.yaml")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--rev", default="HEAD", help="the commit to measure (default HEAD)")
    args = p.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="curvmem-study-")) / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", args.rev], check=True)
    commit = subprocess.run(["git", "-C", str(work), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    print(f"commit {commit.stdout.strip()}")
    config = f"--configfile={args.configfile}"

    seconds, _ = snakemake(work, config)
    print(f"study ({args.configfile}) in {work}: {seconds:.0f} s wall ({seconds / 60:.1f} min)")
    print(subprocess.run([sys.executable, str(REPO / "benchmarks/stage_times.py"), str(work / "logs/benchmarks")],
                         capture_output=True, text=True, check=True).stdout)
    seconds, out = snakemake(work, config)
    assert "Nothing to be done" in out, out[-2000:]
    print(f"no-op rerun: {seconds:.1f} s")

    base = yaml.safe_load((work / args.configfile).read_text())
    for arm in ("vit", "lm"):
        if arm not in base:
            continue
        changed = yaml.safe_load((work / args.configfile).read_text())
        rhos = changed[arm]["edit"]["rhos"]
        old = max(r for r in rhos if r not in ((changed[arm].get("headline") or {}).get("rho"),))
        rhos[rhos.index(old)] = round(old - 0.01, 6)
        path = work / f"config/one_cutoff_{arm}.yaml"
        path.write_text(yaml.safe_dump(changed))
        _, plan = snakemake(work, f"--configfile={path.relative_to(work)}", "-n")
        seconds, _ = snakemake(work, f"--configfile={path.relative_to(work)}")
        print(f"{arm}: rho {old} -> {old - 0.01:g}: {seconds:.0f} s wall, jobs {job_counts(plan)}")
        snakemake(work, config)  # back to the study's own results


if __name__ == "__main__":
    main()
