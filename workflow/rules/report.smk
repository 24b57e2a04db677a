# Tables, the headline metrics DVC reads, and the figures: the results a reader looks at.
# `results/figures` stands for the whole study: its rule reads every artifact and result (STUDY),
# and anything deleted or lost to a failed job is rebuilt by `snakemake --cores all results/figures`
# (see study_stamp in common.smk).
# `snakemake --report report.html` gathers the figures and the main tables with their captions
# (workflow/report/); REPORT_ITEMS in common.smk says where each appears.


if VIT:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_tables:
        input:
            baseline=TEMPLATES["vit_baseline"]["metrics"],
            edits=edit_results("vit"),
            bsn=bsn_results("vit"),
            ratio=TEMPLATES["vit_activation_ratio"]["ratio"],
            family=weight_decay_results(),
        output:
            **reported("vit_tables", "table2", "differences", "weight_decay", "budgets",
                       *(["fisher"] if ART.fisher_bases.get("vit") else [])),
        params:
            **stage("vit_tables", VIT["headline"]),
        log:
            "logs/vit_tables.log",
        benchmark:
            "logs/benchmarks/vit_tables.tsv"
        shell:
            STAGE


if LM:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_tables:
        input:
            baseline=TEMPLATES["lm_baseline"]["metrics"],
            edits=edit_results("lm"),
            bsn=bsn_results("lm"),
            ratio=TEMPLATES["lm_activation_ratio"]["ratio"],
            profile=TEMPLATES["lm_activation_ratio"]["profile"],
        output:
            **reported("lm_tables", "table1", "tasks", "table7", "differences", "bands", "band_correlation", "budgets",
                       *(["fisher"] if ART.fisher_bases.get("lm") else [])),
        params:
            **stage("lm_tables", LM["selection"]),
        log:
            "logs/lm_tables.log",
        benchmark:
            "logs/benchmarks/lm_tables.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_headline:
        input:
            model=lm_model(),
            sets=ART["lm_sets"].sets,
            tasks=ART["lm_data"].tasks,
            basis=ART["lm_basis"].basis,
            selection=TEMPLATES["lm_tables"]["selection"],
            masks=bsn_results("lm", "masks"),
        output:
            **reported("lm_headline", "table6", "generations"),
        params:
            **stage("lm_headline", {"eval": LM["eval"], "layer_sets": LM["edit"]["layer_sets"],
                                    "factor_modules": LM["factors"]["modules"], "stress": LM["stress"],
                                    "generations": LM["generations"]}),
        threads: config["threads"].get("headline", config["threads"]["edit"])
        log:
            "logs/lm_headline.log",
        benchmark:
            "logs/benchmarks/lm_headline.tsv"
        shell:
            STAGE


    if LM.get("benchmarks"):

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule lm_benchmarks:  # lm-evaluation-harness on the unedited model and each headline edit, in memory
            input:
                model=lm_model(),
                tasks=ART["lm_data"].tasks,
                basis=ART["lm_basis"].basis,
                selection=TEMPLATES["lm_tables"]["selection"],
                masks=bsn_results("lm", "masks"),
            output:
                **{**reported("lm_benchmarks", "table"),
                   "harness_tasks": directory(TEMPLATES["lm_benchmarks"]["harness_tasks"])},
            params:
                **stage("lm_benchmarks", {"benchmarks": LM["benchmarks"], "eval": LM["eval"],
                                          "layer_sets": LM["edit"]["layer_sets"],
                                          "factor_modules": LM["factors"]["modules"]}),
            threads: config["threads"].get("headline", config["threads"]["edit"])
            log:
                "logs/lm_benchmarks.log",
            benchmark:
                "logs/benchmarks/lm_benchmarks.tsv"
            shell:
                STAGE


# lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
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


# lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
rule cost:
    input:
        records=cost_records(),
        after=[TEMPLATES[f"{arm}_tables"]["sweep"] for arm in ("vit", "lm") if config.get(arm)],
        **({"lm_selection": TEMPLATES["lm_tables"]["selection"]} if LM else {}),
    output:
        **reported("cost", "table"),
    params:
        **stage("cost", {"vit_headline": VIT["headline"] if VIT else {},
                         "benchmarks": {f"{arm}_{rule}": benchmark_file(f"{arm}_{rule}") for arm in ("vit", "lm")
                                        for rule in ("factors", "basis") if config.get(arm)}}),
    log:
        "logs/cost.log",
    benchmark:
        "logs/benchmarks/cost.tsv"
    shell:
        STAGE


STUDY = [*ART.expensive_paths(), *cheap_outputs()]  # every artifact and result of the configured arms


# lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
rule figures:
    input:
        study=STUDY,
        stamp=study_stamp(STUDY),
        **(dict(vit_table2=TEMPLATES["vit_tables"]["table2"], vit_sweep=TEMPLATES["vit_tables"]["sweep"],
                vit_activation=TEMPLATES["vit_tables"]["activation"], vit_spectra=ART["vit_basis"].spectra,
                vit_train_metrics=ART["vit_train"].metrics, vit_weight_decay=TEMPLATES["vit_tables"]["weight_decay"],
                vit_frontier=TEMPLATES["vit_tables"]["frontier"])
           if VIT else {}),
        **(dict(lm_table1=TEMPLATES["lm_tables"]["table1"], lm_sweep=TEMPLATES["lm_tables"]["sweep"],
                lm_tasks=TEMPLATES["lm_tables"]["tasks"], lm_facts=TEMPLATES["lm_tables"]["facts"],
                lm_activation=TEMPLATES["lm_tables"]["activation"], lm_selection=TEMPLATES["lm_tables"]["selection"],
                lm_table6=TEMPLATES["lm_headline"]["table6"], lm_bands=TEMPLATES["lm_tables"]["bands"],
                lm_band_correlation=TEMPLATES["lm_tables"]["band_correlation"],
                lm_frontier=TEMPLATES["lm_tables"]["frontier"])
           if LM else {}),
        cost=TEMPLATES["cost"]["table"],
        **({"vit_stability_overlap": TEMPLATES["vit_stability"]["overlap"],
            "vit_stability_edits": TEMPLATES["vit_stability"]["edits"]} if VIT and ART.stability.get("vit") else {}),
        **({"lm_stability_overlap": TEMPLATES["lm_stability"]["overlap"],
            "lm_stability_edits": TEMPLATES["lm_stability"]["edits"]} if LM and ART.stability.get("lm") else {}),
        **({"lm_train_metrics": ART["lm_train"].metrics} if LM and "lm_train" in ART else {}),
        **({"lm_benchmarks": TEMPLATES["lm_benchmarks"]["table"]} if LM and LM.get("benchmarks") else {}),
    output:
        figures=report(directory(TEMPLATES["figures"]["figures"]), patterns=["{name}.png"],
                       caption="../report/figures.rst", category=lambda w: report_place(w.name)[0],
                       subcategory=lambda w: report_place(w.name)[1], labels={"item": "{name}"}),
    params:
        **stage("figures", {"vit_headline": VIT["headline"] if VIT else {}}),
    threads: 2  # each arm draws its figures in a process of its own
    log:
        "logs/figures.log",
    benchmark:
        "logs/benchmarks/figures.tsv"
    shell:
        STAGE
