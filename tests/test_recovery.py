"""What a user does after something went wrong, done as the user would: whatever is deleted, corrupt
or lost to a failed or interrupted job is rebuilt by the next plain `snakemake --cores all
results/figures`, the console says in one line what failed and what to do, and following that
advice works. Each test works on a copy of the finished test run."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_run, job_counts, layout, snakemake
from curvmem.artifacts import Stage

pytestmark = pytest.mark.pipeline
CFG = ("--configfile", "config/test.yaml")
TABLES = ("table2_vit.csv", "vit_sweep.csv", "table1_lm.csv", "lm_sweep.csv")


def same_results(work: Path, reference: Path) -> None:
    """The main tables, and every figure but the timings', byte for byte as the uninterrupted run
    made them: a rebuild from the same inputs gives the same bytes (what DVC relies on)."""
    for name in TABLES:
        assert (work / "results/tables" / name).read_bytes() == (reference / "results/tables" / name).read_bytes(), name
    figures = sorted(p.name for p in (reference / "results/figures").glob("*.png") if p.name != "cost.png")
    assert len(figures) > 10, figures
    differ = [name for name in figures
              if (work / "results/figures" / name).read_bytes() != (reference / "results/figures" / name).read_bytes()]
    assert not differ, f"figures differ from the uninterrupted run's: {differ}"


def family_member(work: Path, rule: str) -> Stage:
    """The weight-decay family's member that is not the trained model: its chain (model, factors,
    basis, one member job) is the cheapest a deletion can hit, and it is a full chain all the same."""
    family = layout(work).vit_family
    member, = (token for token in family if family[token]["vit_train"].model != layout(work)["vit_train"].model)
    return family[member][rule]


def console_reason(proc, *rules: str) -> str:
    """The one line a failed job of one of `rules` printed on the console: `rule <name>: <reason>`
    (jobs running at the same time may each print theirs)."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if any(line.startswith(f"rule {rule}: ") for rule in rules)]
    assert lines, (proc.stdout + proc.stderr)[-3000:]
    return lines[0]


def test_truncated_basis_names_itself_and_its_advice_works(test_run, tmp_path):
    """A corrupt basis fails the job that reads it with one line naming the file, the rule that
    makes it and what to do; doing exactly that rebuilds the basis and the result that reads it."""
    work = copy_run(test_run, tmp_path / "work")
    basis = work / family_member(work, "vit_basis").basis
    basis.write_bytes(basis.read_bytes()[: basis.stat().st_size // 2])
    proc = snakemake(work, *CFG, check=False)  # the basis is newer than its member's job: it reruns and fails
    assert proc.returncode != 0
    reason = console_reason(proc, "vit_weight_decay")
    rel = basis.relative_to(work)
    assert f"{rel}: not a readable safetensors file" in reason and "(made by rule vit_basis)" in reason
    assert f"delete {rel} and rerun `snakemake --cores all results/figures`" in reason
    basis.unlink()  # the advice
    counts = job_counts(snakemake(work, *CFG, "-n"))
    assert counts.get("vit_basis") == 1 and counts.get("vit_weight_decay") == 1, counts
    snakemake(work, *CFG)
    assert "Nothing to be done" in snakemake(work, *CFG, "-n")
    same_results(work, test_run)


def test_garbage_edit_result_then_deleted_is_rebuilt(test_run, tmp_path):
    work = copy_run(test_run, tmp_path / "work")
    edit = work / "results/vit/edits/block0/kfac/all.json"
    edit.write_text("garbage")
    os.utime(edit, None)  # newer than the tables: the tables job reads it
    proc = snakemake(work, *CFG, check=False)
    assert proc.returncode != 0
    reason = console_reason(proc, "vit_tables")
    assert "results/vit/edits/block0/kfac/all.json: not valid JSON" in reason
    assert "(made by rule vit_edits)" in reason
    assert not (work / "results/tables/table2_vit.csv").exists()  # Snakemake removed the failed job's outputs
    edit.unlink()
    counts = job_counts(snakemake(work, *CFG, "-n"))
    assert counts == {"vit_edits": 1, "vit_tables": 1, "cost": 1, "metrics": 1, "figures": 1}, counts
    snakemake(work, *CFG)
    same_results(work, test_run)


def test_deleted_outputs_are_rebuilt_by_the_plain_command(test_run, tmp_path):
    """An edit result, a table, a model (the weight-decay member's: its factors and member job follow)
    and EK-FAC corrections, deleted together: one plain run rebuilds each with its own rule."""
    work = copy_run(test_run, tmp_path / "work")
    victims = {"lm_edits": "results/lm/edits/all/svd/all.json", "lm_tables": "results/tables/lm_facts.csv",
               "vit_train": family_member(work, "vit_train").model, "vit_ekfac": layout(work)["vit_ekfac"].corrections}
    for path in victims.values():
        (work / path).unlink()
    counts = job_counts(snakemake(work, *CFG, "-n"))
    assert all(counts.get(maker) == 1 for maker in victims), counts
    # the member's factors read the lost model; its basis reads factors that are there (ancient inputs:
    # an artifact's path says what it holds, so the rebuilt factors are the same bytes)
    assert counts.get("vit_factors") == 1 and "vit_basis" not in counts, counts
    snakemake(work, *CFG)
    assert all((work / path).exists() for path in victims.values())
    same_results(work, test_run)


def start(work: Path, *args) -> subprocess.Popen:
    """Snakemake as a terminal's foreground job: its own process group, Ctrl-C's default action.
    (A job started in the background by a non-interactive shell, as CI runners often are, inherits
    SIGINT ignored; Python then never raises KeyboardInterrupt and the interrupt would do nothing.)"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "results/figures", "--cores", "2", *args], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt_when(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 120) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once `marker` is in the log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and marker in log.read_text(errors="replace"):
            break
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    else:
        raise AssertionError(f"{marker!r} never appeared in {log}")
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)


def test_ctrl_c_during_a_forced_training_then_the_plain_command_rebuilds(test_run, tmp_path):
    """Ctrl-C while `--forcerun lm_train` retrains a finished tree: the next plain run resumes without
    any extra flag, retrains (the interrupted job's output is marked incomplete) and rebuilds what
    depends on it, giving the same tables as before."""
    work = copy_run(test_run, tmp_path / "work")
    trained = layout(work)["lm_train"]
    model, log = work / trained.model, work / f"logs/lm_train/{trained.fp}.log"
    log.unlink()  # the finished run's: the marker must come from this one
    proc = start(work, *CFG, "--forcerun", "lm_train")
    interrupt_when(proc, log, "chunks;")
    assert proc.returncode != 0
    assert "train LM" in log.read_text(), "interrupted before training started"
    plan = snakemake(work, *CFG, "-n")
    assert "IncompleteFilesException" not in plan
    # the trained model's job and any stability member's that ran beside it: each marked incomplete
    assert f"output: {trained.model}, " in plan and 1 <= job_counts(plan).get("lm_train", 0) <= 2, plan[-2000:]
    snakemake(work, *CFG)
    assert (model / "model.safetensors").exists()
    assert "Nothing to be done" in snakemake(work, *CFG, "-n")
    same_results(work, test_run)


def test_ctrl_c_during_a_job_resumes_with_the_plain_command(test_run, tmp_path):
    """Ctrl-C in the middle of an edit job: the next plain run reruns it (no --rerun-incomplete)."""
    work = copy_run(test_run, tmp_path / "work")
    (work / "results/lm/edits/layer0/kfac/all.json").unlink()
    shutil.rmtree(work / "results/lm/edits/.memo")  # else the job takes its cutoffs from there, in no time
    log = work / "logs/lm_edits/layer0/kfac/all.log"
    log.unlink()
    proc = start(work, *CFG)
    interrupt_when(proc, log, "cutoff(s) to evaluate")  # the job has started; loading the model takes seconds
    assert proc.returncode != 0
    assert not (work / "results/lm/edits/layer0/kfac/all.json").exists(), "the job finished before the interrupt"
    out = snakemake(work, *CFG)
    assert "IncompleteFilesException" not in out
    same_results(work, test_run)
