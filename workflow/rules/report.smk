# Tables, the headline metrics DVC reads, and the figures: the results a reader looks at.
# `results/figures` stands for the whole study: its rule reads every artifact and result (STUDY),
# and anything deleted or lost to a failed job is rebuilt by `snakemake --cores all results/figures`
# (see study_stamp in common.smk).


if VIT:

    rule vit_tables:
        input:
            baseline=TEMPLATES["vit_baseline"]["metrics"],
            edits=edit_results("vit"),
            ratio=TEMPLATES["vit_activation_ratio"]["ratio"],
        output:
            **TEMPLATES["vit_tables"],
        params:
            **stage("vit_tables", VIT["headline"]),
        log:
            "logs/vit_tables.log",
        benchmark:
            "logs/benchmarks/vit_tables.tsv"
        shell:
            STAGE


if LM:

    rule lm_tables:
        input:
            baseline=TEMPLATES["lm_baseline"]["metrics"],
            edits=edit_results("lm"),
            ratio=TEMPLATES["lm_activation_ratio"]["ratio"],
        output:
            **TEMPLATES["lm_tables"],
        params:
            **stage("lm_tables", LM["selection"]),
        log:
            "logs/lm_tables.log",
        benchmark:
            "logs/benchmarks/lm_tables.tsv"
        shell:
            STAGE


rule metrics:
    input:
        **({"vit_table2": TEMPLATES["vit_tables"]["table2"]} if VIT else {}),
        **({"lm_table1": TEMPLATES["lm_tables"]["table1"], "lm_tasks": TEMPLATES["lm_tables"]["tasks"]} if LM else {}),
    output:
        **TEMPLATES["metrics"],
    params:
        **stage("metrics", {}),
    log:
        "logs/metrics.log",
    benchmark:
        "logs/benchmarks/metrics.tsv"
    shell:
        STAGE


STUDY = [*ART.expensive_paths(), *cheap_outputs()]  # every artifact and result of the configured arms


rule figures:
    input:
        study=STUDY,
        stamp=study_stamp(STUDY),
        **(dict(vit_table2=TEMPLATES["vit_tables"]["table2"], vit_sweep=TEMPLATES["vit_tables"]["sweep"],
                vit_activation=TEMPLATES["vit_tables"]["activation"], vit_spectra=ART["vit_basis"].spectra,
                vit_train_metrics=ART["vit_train"].metrics) if VIT else {}),
        **(dict(lm_table1=TEMPLATES["lm_tables"]["table1"], lm_sweep=TEMPLATES["lm_tables"]["sweep"],
                lm_tasks=TEMPLATES["lm_tables"]["tasks"], lm_facts=TEMPLATES["lm_tables"]["facts"],
                lm_activation=TEMPLATES["lm_tables"]["activation"], lm_selection=TEMPLATES["lm_tables"]["selection"])
           if LM else {}),
        **({"lm_train_metrics": ART["lm_train"].metrics} if LM and "lm_train" in ART else {}),
    output:
        figures=directory(TEMPLATES["figures"]["figures"]),
    params:
        **stage("figures", {"vit_headline": VIT["headline"] if VIT else {}}),
    log:
        "logs/figures.log",
    benchmark:
        "logs/benchmarks/figures.tsv"
    shell:
        STAGE
