"""The report's captions quote the paper's numbers; they must be the numbers the tables and figures
draw (curvmem.paper), so a caption cannot drift from the data beside it."""
from pathlib import Path

import pytest

from curvmem import paper

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


def section(figures_rst: str, name: str) -> str:
    """The text of one figure's `{% if/elif name == "..." %}` branch of figures.rst."""
    start = figures_rst.index(f'name == "{name}" %}}')
    end = figures_rst.index("{%", start + 1)
    return figures_rst[start:end]


def cited(text: str, value: float) -> bool:
    return f"{value:g}" in text or f"{value:.2f}" in text


CASES = {  # caption file or figures.rst branch -> the paper's numbers it must quote
    "table2_vit.rst": [paper.TABLE2_VIT["kfac"][k] for k in paper.TABLE2_VIT["kfac"]]
                      + [paper.TABLE2_VIT["baseline"][k] for k in paper.TABLE2_VIT["baseline"]],
    "figures:vit_table2": [*paper.TABLE2_VIT["kfac"].values(), *paper.TABLE2_VIT["baseline"].values()],
    "table1_lm.rst": [v for m in ("kfac", "svd", "bsn") for v in paper.TABLE1_LM[m].values()]
                     + [paper.TABLE1_LM["baseline"]["perplexity_batch_mean"]],
    "figures:lm_table1": [paper.TABLE1_LM[m][k] for m in ("kfac", "svd", "bsn")
                          for k in ("memorized_val_strict_pct", "quotes_strict_pct")],
    "table6_lm_stress.rst": [paper.TABLE6_LM[m][k] for m in paper.TABLE6_LM for k in ("original_mean", "perturbed_mean")],
    "figures:lm_stress_test": [paper.TABLE6_LM[m][k] for m in paper.TABLE6_LM
                               for k in ("original_mean", "perturbed_mean")],
    "table7_lm_coherence.rst": [paper.TABLE7_LM[m]["perplexity_batch_mean"] for m in paper.TABLE7_LM]
                               + [paper.TABLE7_LM["bsn"]["ndcg10"]],
    "lm_tasks.rst": [v for r in paper.RETENTION_LM.values() for v in r],
    "figures:lm_task_retention": [v for r in paper.RETENTION_LM.values() for v in r],
}


@pytest.mark.parametrize("where", CASES)
def test_captions_quote_the_papers_numbers(where):
    if where.startswith("figures:"):
        text = section((REPORT / "figures.rst").read_text(), where.split(":")[1])
    else:
        text = (REPORT / where).read_text()
    missing = [v for v in CASES[where] if not cited(text, v)]
    assert not missing, f"{where} does not quote the paper's {missing} (curvmem/paper.py)"
