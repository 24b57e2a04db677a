# Edits and their evaluation. One job per layer set and method evaluates every cutoff (the model is
# loaded and each layer decomposed once); with edit.one_job_per_cutoff each cutoff is its own job,
# to spread a paper-scale sweep over a cluster. Changing the cutoffs reruns the jobs that hold them,
# then the tables and figures. BalancedSubnet trains one job per point of its grid.

wildcard_constraints:
    layer_set="[A-Za-z0-9_]+",
    method="|".join(sorted(METHODS, key=len, reverse=True)),  # kfac_scaled before kfac
    chunk="all|[0-9][0-9.e+-]*",
    setting="r[0-9][0-9A-Za-z.+-]*",
    weight_decay="[0-9][0-9.e+-]*",


if VIT:
    VIT_EVAL_INPUTS = dict(
        model=ART["vit_train"].model,
        data=ART["vit_data"].train,
        val=ART["vit_data"].val,
        corruption=ART["vit_corrupt"].corruption,
    )

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_baseline:
        input:
            **VIT_EVAL_INPUTS,
        output:
            **TEMPLATES["vit_baseline"],
        params:
            **stage("vit_baseline", {"model": VIT["model"], "eval": VIT["eval"]}),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_baseline.log",
        benchmark:
            "logs/benchmarks/vit_baseline.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_edits:
        input:
            **VIT_EVAL_INPUTS,
            basis=edit_basis("vit"),
            corrections=edit_corrections("vit"),
        output:
            **TEMPLATES["vit_edits"],
        params:
            **stage("vit_edits", lambda wildcards: edit_params("vit", wildcards)),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_edits/{layer_set}/{method}/{chunk}.log",
        benchmark:
            "logs/benchmarks/vit_edits/{layer_set}/{method}/{chunk}.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_bsn:
        input:
            **VIT_EVAL_INPUTS,
        output:
            **TEMPLATES["vit_bsn"],
        params:
            **stage("vit_bsn", lambda wildcards: bsn_params("vit", wildcards)),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_bsn/{layer_set}/{setting}.log",
        benchmark:
            "logs/benchmarks/vit_bsn/{layer_set}/{setting}.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_activation_ratio:
        input:
            model=ART["vit_train"].model,
            data=ART["vit_data"].train,
            corruption=ART["vit_corrupt"].corruption,
            basis=ART["vit_basis"].basis,
        output:
            **TEMPLATES["vit_activation_ratio"],
        params:
            **stage("vit_activation_ratio", {"model": VIT["model"], "eval": VIT["eval"], "factors": VIT["factors"]}),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_activation_ratio.log",
        benchmark:
            "logs/benchmarks/vit_activation_ratio.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_weight_decay:  # paper App. H: each member of the family, unedited and after the headline edit
        input:
            model=member_artifact("vit_train", "model"),
            data=ART["vit_data"].train,
            val=ART["vit_data"].val,
            corruption=ART["vit_corrupt"].corruption,
            basis=member_artifact("vit_basis", "basis"),
        output:
            **TEMPLATES["vit_weight_decay"],
        params:
            **stage("vit_weight_decay", weight_decay_params),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_weight_decay/wd{weight_decay}.log",
        benchmark:
            "logs/benchmarks/vit_weight_decay/wd{weight_decay}.tsv"
        shell:
            STAGE


if LM:
    LM_EVAL_INPUTS = dict(
        model=lm_model(),
        sets=ART["lm_sets"].sets,
        clean=ART["lm_data"].clean,
        tasks=ART["lm_data"].tasks,
    )

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_baseline:
        input:
            **LM_EVAL_INPUTS,
        output:
            **TEMPLATES["lm_baseline"],
        params:
            **stage("lm_baseline", {"eval": LM["eval"]}),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_baseline.log",
        benchmark:
            "logs/benchmarks/lm_baseline.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_edits:
        input:
            **LM_EVAL_INPUTS,
            basis=edit_basis("lm"),
            corrections=edit_corrections("lm"),
            reference=TEMPLATES["lm_baseline"]["reference"],
        output:
            **TEMPLATES["lm_edits"],
        params:
            **stage("lm_edits", lambda wildcards: edit_params("lm", wildcards)),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_edits/{layer_set}/{method}/{chunk}.log",
        benchmark:
            "logs/benchmarks/lm_edits/{layer_set}/{method}/{chunk}.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_bsn:
        input:
            **LM_EVAL_INPUTS,
            reference=TEMPLATES["lm_baseline"]["reference"],
        output:
            **TEMPLATES["lm_bsn"],
        params:
            **stage("lm_bsn", lambda wildcards: bsn_params("lm", wildcards)),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_bsn/{layer_set}/{setting}.log",
        benchmark:
            "logs/benchmarks/lm_bsn/{layer_set}/{setting}.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_activation_ratio:
        input:
            model=lm_model(),
            sets=ART["lm_sets"].sets,
            clean=ART["lm_data"].clean,
            tasks=ART["lm_data"].tasks,
            basis=ART["lm_basis"].basis,
        output:
            **TEMPLATES["lm_activation_ratio"],
        params:
            **stage("lm_activation_ratio", {"eval": LM["eval"], "factors": LM["factors"],
                                            "layer_sets": LM["edit"]["layer_sets"]}),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_activation_ratio.log",
        benchmark:
            "logs/benchmarks/lm_activation_ratio.tsv"
        shell:
            STAGE
