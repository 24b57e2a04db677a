"""Run one job of the pipeline:

    python -m curvmem <rule> --params JSON [--<input or output name> PATH ...] --threads N --log FILE

Every rule calls its stage function through this one entry point. The function's keyword-only
arguments are the rule's named inputs and outputs (same names, so flags are written once, in the
function signature); its first argument receives the rule's params as the dataclass it is
annotated with, built here (`common.from_dict`) in one place for every stage. A stage with a
keyword argument `threads` gets the job's threads there, to divide its work itself.

Everything the job prints goes to the log file. If it fails, one line saying why goes to the
console, where Snakemake shows it above its own report, and the traceback stays in the log.

With `--ranks N` (N > 1; the rules pass their `gpu` resource) the job relaunches itself under
torchrun with N ranks: every rank runs the stage in one process group (`curvmem.distributed`), and
all append to the one log, each line marked with its rank. A failing rank writes its one line to
the log (after CONSOLE_MARK); the launcher prints the first such line, so the console still gets
one line however many ranks failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import logging
import os
import platform
import sys
import traceback
import typing

from .common import ConfigError, InputError, from_dict
from .io import ArtifactError

# rule -> "module:function"; modules are imported only for the rule that runs.
STAGES = {
    "vit_data": "curvmem.vision.stages:data",
    "vit_corrupt": "curvmem.vision.stages:corrupt",
    "vit_train": "curvmem.vision.stages:train",
    "vit_factors": "curvmem.vision.stages:factors",
    "vit_basis": "curvmem.basis:basis_stage",
    "vit_ekfac": "curvmem.vision.stages:ekfac",
    "vit_fisher_overlap": "curvmem.subspaces:fisher_overlap",
    "vit_baseline": "curvmem.vision.stages:baseline",
    "vit_edits": "curvmem.vision.stages:edits",
    "vit_bsn": "curvmem.vision.stages:bsn",
    "vit_activation_ratio": "curvmem.vision.stages:activation_ratio",
    "vit_weight_decay": "curvmem.vision.stages:weight_decay_member",
    "vit_stability": "curvmem.vision.stages:stability",
    "vit_tables": "curvmem.vision.tables:stage",
    "lm_stability": "curvmem.lm.stages:stability",
    "lm_data": "curvmem.lm.stages:data",
    "lm_import": "curvmem.lm.stages:import_model",
    "lm_train": "curvmem.lm.stages:train",
    "lm_mine": "curvmem.lm.stages:mine_sets",
    "lm_sets": "curvmem.lm.stages:sets",
    "lm_factors": "curvmem.lm.stages:factors",
    "lm_basis": "curvmem.basis:basis_stage",
    "lm_ekfac": "curvmem.lm.stages:ekfac",
    "lm_fisher_overlap": "curvmem.subspaces:fisher_overlap",
    "lm_baseline": "curvmem.lm.stages:baseline",
    "lm_edits": "curvmem.lm.stages:edits",
    "lm_bsn": "curvmem.lm.stages:bsn",
    "lm_activation_ratio": "curvmem.lm.stages:activation_ratio",
    "lm_tables": "curvmem.lm.tables:stage",
    "lm_headline": "curvmem.lm.stages:headline",
    "lm_benchmarks": "curvmem.lm.stages:benchmarks",
    "metrics": "curvmem.study:metrics",
    "cost": "curvmem.study:cost",
    "figures": "curvmem.study:figures",
}
EXPECTED = (ConfigError, InputError, ArtifactError)  # problems whose message says all: no traceback
CONSOLE_MARK = "console line: "  # a rank's one line for the console, written to the shared log


def stage_function(rule: str):
    if rule not in STAGES:
        raise SystemExit(f"unknown rule {rule!r}; known: {', '.join(STAGES)}")
    module, name = STAGES[rule].split(":")
    return getattr(importlib.import_module(module), name)


def parser_for(rule: str, fn) -> argparse.ArgumentParser:
    """Flags from the stage function: --params, --threads, --log, and one per path argument."""
    p = argparse.ArgumentParser(prog=f"python -m curvmem {rule}", description=inspect.getdoc(fn))
    p.add_argument("--params", default="{}", help="JSON of the rule's params")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log", help="log file (default: the console)")
    p.add_argument("--ranks", type=int, default=1, help="data-parallel ranks (torchrun; one per GPU)")
    hints = typing.get_type_hints(fn)
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or name == "threads":  # --threads, given as is
            continue
        many = typing.get_origin(hints.get(name)) is list
        optional = param.default is not inspect.Parameter.empty
        p.add_argument(f"--{name}", nargs="*" if many else None, required=not optional, default=param.default,
                       metavar="PATH")
    return p


def build_params(fn, raw: dict):
    """The stage's first argument: its annotated dataclass built from the rule's params."""
    first = next(iter(inspect.signature(fn).parameters))
    cls = typing.get_type_hints(fn).get(first, dict)
    return from_dict(cls, raw, "params") if dataclasses.is_dataclass(cls) else raw


def relaunch_under_torchrun(argv: list[str], args) -> typing.NoReturn:
    """Run the same command as `args.ranks` ranks under torchrun (this process becomes its agent)."""
    from torch.distributed.run import parse_args, run

    if args.log:
        os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
        open(args.log, "w").close()
    launch = parse_args(["--standalone", f"--nproc-per-node={args.ranks}", "-m", "curvmem"])
    launch.training_script_args = argv  # set here: torchrun's own parser would take --log for its --log-dir
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the ranks' own line says why
    try:
        run(launch)
    except Exception as err:  # a rank failed: the first reason a rank logged, else where to look
        lines = open(args.log).read().splitlines() if args.log and os.path.exists(args.log) else []
        reasons = [line.split(CONSOLE_MARK, 1)[1] for line in lines if CONSOLE_MARK in line]
        sys.exit(reasons[0] if reasons else f"rule {argv[0]} failed on a rank ({type(err).__name__}); "
                                            f"see {args.log or 'above'}")
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        raise SystemExit(f"usage: python -m curvmem <rule> ...; rules: {', '.join(STAGES)}")
    rule = argv[0]
    fn = stage_function(rule)
    args = parser_for(rule, fn).parse_args(argv[1:])
    ranks = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    if args.ranks > 1 and ranks == 1:
        relaunch_under_torchrun(argv, args)
    console = sys.stderr
    if args.log:  # the job's output, progress bars included, goes to the log
        os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
        console = os.fdopen(os.dup(2), "w")
        mode = os.O_APPEND if ranks > 1 else os.O_TRUNC  # ranks share the log (emptied before the relaunch)
        log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | mode, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    who = f"rank {os.environ.get('RANK', '0')}/{ranks} " if ranks > 1 else ""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format=f"%(asctime)s {who}%(name)s %(levelname)s: %(message)s")
    if "SLURM_JOB_ID" in os.environ:  # where a cluster job ran, for `sacct`/`scontrol show job`
        logging.info("rule %s: Slurm job %s on %s", rule, os.environ["SLURM_JOB_ID"], platform.node())
    try:
        params = build_params(fn, json.loads(args.params))
        if "torch" in sys.modules:  # the stage module needs torch: fixed threads and seeds
            from .common import setup_torch

            setup_torch(max(1, args.threads // ranks))  # the job's threads are shared by its ranks
        paths = {k: v for k, v in vars(args).items() if k not in ("params", "threads", "log", "ranks")}
        if "threads" in inspect.signature(fn).parameters:  # a stage that divides its work itself
            paths["threads"] = args.threads
        if ranks > 1:
            from . import distributed

            distributed.init_from_env()
        fn(params, **paths)
        if ranks > 1:
            distributed.shutdown()
    except EXPECTED as err:
        logging.error("%s", err)
        tell(console, f"rule {rule}: {err}", ranks)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException as err:  # the traceback goes to the log, one line to the console
        traceback.print_exc()
        if not isinstance(err, KeyboardInterrupt):
            where = f" (traceback in {args.log})" if args.log else ""
            tell(console, f"rule {rule} failed: {type(err).__name__}: {err}{where}".splitlines()[0], ranks)
        sys.exit(1)


def tell(console, line: str, ranks: int) -> None:
    """The job's one console line: printed by a single process, left in the log for the launcher
    to print when the job runs as several ranks."""
    if ranks > 1:
        logging.error("%s%s", CONSOLE_MARK, line)
    else:
        print(line, file=console, flush=True)
