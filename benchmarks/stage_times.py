"""Wall time per stage of the last run, from Snakemake's per-job benchmark files.

    python benchmarks/stage_times.py            # reads logs/benchmarks/
"""
import sys
from pathlib import Path

import pandas as pd

root = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/benchmarks")
rows = []
for tsv in sorted(root.rglob("*.tsv")):
    stage = tsv.relative_to(root).parts[0].removesuffix(".tsv")
    rows.append({"stage": stage, "seconds": pd.read_csv(tsv, sep="\t")["s"].iloc[-1]})
if not rows:
    sys.exit(f"no benchmark files under {root}: run the pipeline first")
table = pd.DataFrame(rows).groupby("stage", sort=False).agg(jobs=("seconds", "size"), seconds=("seconds", "sum"))
print(table.round(1).to_string())
print(f"total job time: {table.seconds.sum():.0f}s (wall time is lower when jobs run in parallel)")
