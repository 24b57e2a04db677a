# Data and memorized sets: vision splits and label corruption; LM text artifacts and the verified
# memorized windows. Each arm's rules exist only when its section is in the config.
# Expensive artifacts read expensive inputs as ancient(): their paths carry a fingerprint of
# everything upstream (curvmem.artifacts), so file times, e.g. the order of a `dvc pull`, say nothing.


if VIT:

    # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
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

    # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
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

    # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
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

        # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
        rule lm_mine:
            input:
                model=ancient(lm_model()),
                train_docs=ancient(ART["lm_data"].train_docs),
            output:
                **ART["lm_mine"].outputs,
            params:
                **stage("lm_mine", ART["lm_mine"].params),
            threads: config["threads"]["edit"]
            log:
                "logs/lm_mine.log",
            benchmark:
                "logs/benchmarks/lm_mine.tsv"
            shell:
                STAGE

    # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
    rule lm_sets:
        input:
            model=ancient(lm_model()),
            candidates=ancient(ART["lm_data"].candidates),
            **({"mined": ancient(ART["lm_mine"].mined)} if "lm_mine" in ART else {}),
        output:
            **ART["lm_sets"].outputs,
        params:
            **stage("lm_sets", ART["lm_sets"].params),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_sets.log",
        benchmark:
            "logs/benchmarks/lm_sets.tsv"
        shell:
            STAGE
