"""The README's promises that code can keep: its library example runs verbatim, and the package
declares every library it imports (so `pip install .` gives a package that works)."""
import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_library_example_runs_verbatim(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_block("Use the library directly"))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("rho ")]
    assert len(lines) == 3, proc.stdout
    kept = [float(re.search(r"kept ([\d.]+)%", line).group(1)) for line in lines]
    assert kept == sorted(kept) and kept[-1] < 100  # more curvature mass kept, more pairs kept


def test_every_imported_library_is_declared():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    owners = packages_distributions()
    missing = set()
    for path in (REPO / "workflow/curvmem").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "curvmem":
                    continue
                for dist in owners.get(top, [top]):
                    if dist.lower().replace("_", "-") not in declared:
                        missing.add(f"{dist} (imported as {top} in {path.name})")
    assert not missing, sorted(missing)


def test_every_document_the_project_cites_is_in_the_repository():
    """Docstrings, configs and docs cite documents by file name (`docs/method.md`, `RESULTS.md`);
    each must exist in a clone (results the pipeline writes, such as Table 12's Markdown, excepted)."""
    from curvmem.artifacts import TEMPLATES

    outputs = {Path(p).name for paths in TEMPLATES.values() for p in paths.values()}
    sources = [p for pattern in ("*.md", "*.py", "*.smk", "*.yaml", "*.rst", "Snakefile") for p in REPO.rglob(pattern)
               if not {".venv", ".git", ".snakemake", "results", "data"} & set(p.relative_to(REPO).parts)]
    missing = []
    for source in sources:
        for cited in re.findall(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b", source.read_text(errors="replace")):
            if cited.startswith("results/") or Path(cited).name in outputs:
                continue
            if not ((REPO / cited).exists() or (source.parent / cited).exists()):
                missing.append(f"{source.relative_to(REPO)} cites {cited}")
    assert not missing, missing
