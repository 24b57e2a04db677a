import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# No network at test time: a hub lookup would otherwise retry for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["Snakefile", "config", "workflow", "profiles", "dvc.yaml", ".dvc/config", ".dvc/.gitignore",
                 ".dvcignore", ".gitignore"]


def copy_project(dest: Path) -> Path:
    """The project's pipeline files in a fresh git repository (DVC needs git)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in PROJECT_FILES:
        src, dst = REPO / item, dest / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "project")
    return dest


def git(workdir, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=workdir, check=True, capture_output=True, text=True, env=env).stdout


def run_module(workdir, module: str, *args, env=None, check=True):
    """python -m <module> in workdir with this interpreter's environment on PATH."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=workdir, capture_output=True, text=True,
                          env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def snakemake(workdir, *args, env=None, check=True, target="results/figures"):
    proc = run_module(workdir, "snakemake", target, "--cores", "2", *args, env=env, check=check)
    return proc if not check else proc.stdout + proc.stderr


def layout(workdir, configfile: str = "config/test.yaml"):
    """The fingerprinted artifact paths of a config, computed as the rules compute them (relative
    file paths in the config are read from workdir)."""
    import yaml

    from curvmem.artifacts import Layout
    from curvmem.config import Memo, file_digests

    config = yaml.safe_load((Path(workdir) / configfile).read_text())
    here = os.getcwd()
    os.chdir(workdir)
    try:
        return Layout(config, file_digests(config, Memo(path=None)))
    finally:
        os.chdir(here)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> count from Snakemake's 'Job stats' table."""
    import re

    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in output else ""
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def copy_run(test_run: Path, dest: Path) -> Path:
    """A copy of a finished run (files, Snakemake's records, git) to change without touching it."""
    shutil.copytree(test_run, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def test_run(tmp_path_factory):
    """One complete run of config/test.yaml in a fresh project repository."""
    work = copy_project(tmp_path_factory.mktemp("test_run"))
    snakemake(work, "--configfile", "config/test.yaml")
    return work
