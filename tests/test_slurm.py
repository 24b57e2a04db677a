"""profiles/slurm against a real Slurm (envs/slurm.sh: munge, slurmctld, slurmd on this machine, two
fake GPUs): a real part of the test config runs as Slurm jobs, gives the local run's bytes, and a
failing job fails the run with its reason in the log Snakemake names. Needs root or sudo and
Debian's Slurm packages (`bash envs/slurm.sh install`); .ci/run installs them and sets
CURVMEM_REQUIRE_SLURM=1, so there a missing Slurm is a failure, not a skip."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project, layout, run_module

pytestmark = pytest.mark.pipeline

SCRIPT = REPO / "envs/slurm.sh"
# data, training, factors and basis, and one edit with its evaluation of each arm (the LM edit's nDCG
# reads the unedited model's top-10 predictions, so lm_baseline runs too)
TARGETS = ("results/vit/edits/block0/kfac/all.json", "results/lm/edits/layer0/kfac/all.json")
RULES = {"vit_data", "vit_corrupt", "vit_train", "vit_factors", "vit_basis", "vit_edits",
         "lm_data", "lm_train", "lm_sets", "lm_factors", "lm_basis", "lm_baseline", "lm_edits"}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
DAEMONS = ("slurmctld", "slurmd", "slurmstepd")


def running_daemons() -> list[str]:
    return [name for name in DAEMONS if subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0]


@pytest.fixture(scope="module")
def cluster():
    usable = shutil.which("slurmctld") and shutil.which("sbatch") and (os.geteuid() == 0 or shutil.which("sudo"))
    if not usable:
        if os.environ.get("CURVMEM_REQUIRE_SLURM") == "1":
            pytest.fail("no Slurm here: bash envs/slurm.sh install (root or sudo)")
        pytest.skip("no Slurm here: bash envs/slurm.sh install (root or sudo)")
    assert not running_daemons(), f"a Slurm is already running here: {running_daemons()}"
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True, text=True)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], check=True, capture_output=True, text=True)
        assert not running_daemons(), f"left running: {running_daemons()}"


def slurm(work: Path, *targets: str, check=True):
    return run_module(work, "snakemake", *targets, "--cores", "2", "--configfile", "config/test.yaml",
                      "--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "3",
                      "--slurm-keep-successful-logs", check=check)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The targets through profiles/slurm, after the one edit a user of this machine makes: every
    `gpu` request at most what the node has (the profile asks 8 for ViT training)."""
    work = copy_project(tmp_path_factory.mktemp("slurm"))
    profile = work / "profiles/slurm/config.yaml"
    settings = yaml.safe_load(profile.read_text())
    for resources in settings["set-resources"].values():
        if "gpu" in resources:
            resources["gpu"] = 1
    profile.write_text(yaml.safe_dump(settings))
    proc = slurm(work, *TARGETS)
    return work, proc.stdout + proc.stderr


def scontrol(jobid: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", jobid], check=True, capture_output=True, text=True).stdout
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


def test_every_job_ran_as_a_slurm_job(slurm_run):
    work, output = slurm_run
    gpu_profile = yaml.safe_load((work / "profiles/slurm/config.yaml").read_text())
    jobs = SUBMITTED.findall(output)
    rule_logs = "".join(log.read_text() for log in (work / "logs").rglob("*.log"))
    ran = set()
    for jobid, slurm_log in jobs:
        rule = Path(slurm_log).relative_to(work / ".snakemake/slurm_logs").parts[0].removeprefix("rule_")
        ran.add(rule)
        assert Path(slurm_log).name == f"{jobid}.log" and f"rule {rule}:" in Path(slurm_log).read_text()
        assert f"rule {rule}: Slurm job {jobid} on " in rule_logs, f"no rule log names Slurm job {jobid} ({rule})"
        job = scontrol(jobid)  # finished jobs stay visible for MinJobAge (300 s)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == "gpu", (jobid, job["JobState"])
        if "gpu" in gpu_profile["set-resources"].get(rule, {}):  # the profile's `gpu` resource reached Slurm
            assert job.get("TresPerJob") == "gres:gpu:1", (rule, job.get("TresPerJob"))
    assert ran == RULES, ran


def test_slurm_outputs_equal_the_local_run(slurm_run, test_run):
    work, _ = slurm_run
    timings = ("results/cost/",)
    made = sorted(str(f.relative_to(work)) for top in ("data", "results") for f in (work / top).rglob("*")
                  if f.is_file() and f.name not in ("README.md", ".study") and not str(f.relative_to(work)).startswith(timings))
    assert len(made) > 15, made
    differ = [name for name in made if (work / name).read_bytes() != (test_run / name).read_bytes()]
    assert not differ, f"differ from the local run: {differ}"


def test_a_failing_slurm_job_fails_the_run_with_its_reason(slurm_run):
    work, _ = slurm_run
    basis = work / layout(work)["vit_basis"].basis
    basis.write_bytes(basis.read_bytes()[:64])  # a broken header: the activation ratio, not run yet, reads it
    target = "results/vit/activation_ratio.parquet"
    proc = slurm(work, target, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Error in rule vit_activation_ratio:" in output and "SLURM status is: 'FAILED'" in output, output[-3000:]
    (jobid, log), = SUBMITTED.findall(output)
    assert scontrol(jobid)["JobState"] == "FAILED"
    reason = f"rule vit_activation_ratio: {basis.relative_to(work)}: not a readable safetensors file"
    assert reason in Path(log).read_text(), "the Slurm log Snakemake names does not hold the job's reason"
    assert not (work / target).exists()  # a failed job leaves nothing a rerun trusts
