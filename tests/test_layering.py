"""The library's import graph has layers: the core and the curvature engine never import an arm, the
two arms never import each other, and only the pipeline layer sees everything."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "curvmem"
CORE = {"common", "artifacts", "io", "layers"}
ENGINE = {"kfac", "basis", "edit", "bsn", "activations", "training", "distributed", "sweep", "intervals", "plotting", "paper",
          "frontier", "subspaces", "stability"}
PIPELINE = {"config", "cli", "study", "publish", "__main__", "__init__"}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top in ("vision", "lm"):
        return top
    for name, members in (("core", CORE), ("engine", ENGINE), ("pipeline", PIPELINE)):
        if top in members:
            return name
    raise AssertionError(f"curvmem.{module} belongs to no layer: add it to test_layering.py")


ALLOWED = {"core": {"core"}, "engine": {"core", "engine"}, "vision": {"core", "engine", "vision"},
           "lm": {"core", "engine", "lm"}, "pipeline": {"core", "engine", "vision", "lm", "pipeline"}}


def imports(path: Path) -> set[str]:
    """curvmem modules a file imports (relative or absolute, at any depth), as dotted names."""
    here = path.relative_to(PACKAGE).with_suffix("").parts  # e.g. ("lm", "stages")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                names = [".".join(parts + [a.name]) if not node.module else ".".join(parts) for a in node.names]
            elif node.module and node.module.startswith("curvmem"):
                names = [node.module.removeprefix("curvmem").lstrip(".")]
            else:
                continue
            found.update(n for n in names if n)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("curvmem.") for a in node.names if a.name.startswith("curvmem."))
    return found


def test_layers():
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        graph[module] = imports(path)
    violations = [f"curvmem.{m} ({layer(m)}) imports curvmem.{d} ({layer(d)})"
                  for m, deps in graph.items() for d in deps if layer(d) not in ALLOWED[layer(m)]]
    assert not violations, violations
    assert graph["lm.train"] and not any(d.startswith("vision") for d in graph["lm.train"])
