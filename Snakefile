# From memorization to reasoning in the spectrum of loss curvature: the reproduction pipeline.
# Usage: snakemake --cores all results/figures   (see README.md; other scales: --configfile config/test.yaml)
from snakemake.utils import min_version

min_version("9.0")


# The default config only when none is given: --configfile replaces it instead of being merged into
# it (a merge would keep the default's layer sets in a smaller model's config).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/kfac.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/figures",
