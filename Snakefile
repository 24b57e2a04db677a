# From memorization to reasoning in the spectrum of loss curvature: the reproduction pipeline.
# Usage: snakemake --cores all results/figures   (README.md; another scale: --configfile=config/test.yaml)
from snakemake.utils import min_version

from curvmem.config import ConfigError, load_yaml

min_version("9.0")

report: "workflow/report/workflow.rst"  # the front page of `snakemake --report report.html`


# The default config only when none is given: --configfile replaces it instead of being merged into
# it (a merge would keep the default's layer sets in a smaller model's config). Read here first so a
# YAML error names the file and line.
if not workflow.overwrite_configfiles:
    try:
        load_yaml("config/config.yaml")
    except ConfigError as err:
        sys.exit(str(err))

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/kfac.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/stability.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/figures",
