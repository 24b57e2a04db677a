# Data and memorized sets: vision splits and label corruption; LM text artifacts and the verified
# memorized windows. Each arm's rules exist only when its section is in the config.
# Expensive artifacts read expensive inputs as ancient(): their paths carry a fingerprint of
# everything upstream (curvmem.artifacts), so file times, e.g. the order of a `dvc pull`, say nothing.


if VIT:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_data:
        output:
            **ART["vit_data"].outputs,
        params:
            **stage("vit_data", ART["vit_data"].params),
        log:
            "logs/vit_data.log",
        benchmark:
            "logs/benchmarks/vit_data.tsv"
        shell:
            STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_corrupt:
        input:
            train=ancient(ART["vit_data"].train),
        output:
            **ART["vit_corrupt"].outputs,
        params:
            **stage("vit_corrupt", ART["vit_corrupt"].params),
        log:
            "logs/vit_corrupt.log",
        benchmark:
            "logs/benchmarks/vit_corrupt.tsv"
        shell:
            STAGE


if LM:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_data:
        output:
            **ART["lm_data"].outputs,
        params:
            **stage("lm_data", ART["lm_data"].params),
        log:
            "logs/lm_data.log",
        benchmark:
            "logs/benchmarks/lm_data.tsv"
        shell:
            STAGE

    if "lm_mine" in ART:

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule lm_mine:  # one job per model (the trained one, each member of the stability study)
            input:
                model=upstream_of("lm_mine", lm_model_rule(LM), "model"),
                train_docs=upstream_of("lm_mine", "lm_data", "train_docs"),
            output:
                **TEMPLATES["lm_mine"],
            params:
                **stage("lm_mine", artifact_params("lm_mine")),
            threads: config["threads"]["edit"]
            log:
                "logs/lm_mine/{fp}.log",
            benchmark:
                "logs/benchmarks/lm_mine/{fp}.tsv"
            shell:
                STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_sets:  # one job per model (the trained one, each member of the stability study)
        input:
            model=upstream_of("lm_sets", lm_model_rule(LM), "model"),
            candidates=upstream_of("lm_sets", "lm_data", "candidates"),
            **({"mined": upstream_of("lm_sets", "lm_mine", "mined")} if "lm_mine" in ART else {}),
        output:
            **TEMPLATES["lm_sets"],
        params:
            **stage("lm_sets", artifact_params("lm_sets")),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_sets/{fp}.log",
        benchmark:
            "logs/benchmarks/lm_sets/{fp}.tsv"
        shell:
            STAGE
