# K-FAC factors and the curvature basis (one eigendecomposition per factor, reused by every cutoff).
# `snakemake --lint` asks each rule below for a conda environment or container: none, on purpose (every
# job runs in the pinned pip environment of envs/setup.sh; the reason is beside STAGE in common.smk).


if VIT:

    rule vit_factors:
        input:
            model=ancient(ART["vit_train"].model),
            data=ancient(ART["vit_data"].train),
            corruption=ancient(ART["vit_corrupt"].corruption),
        output:
            **ART["vit_factors"].outputs,
        params:
            **stage("vit_factors", ART["vit_factors"].params),
        threads: config["threads"]["factors"]
        log:
            "logs/vit_factors.log",
        benchmark:
            "logs/benchmarks/vit_factors.tsv"
        shell:
            STAGE

    rule vit_basis:
        input:
            factors=ancient(ART["vit_factors"].factors),
        output:
            **ART["vit_basis"].outputs,
        params:
            **stage("vit_basis", ART["vit_basis"].params),
        threads: config["threads"]["factors"]
        log:
            "logs/vit_basis.log",
        benchmark:
            "logs/benchmarks/vit_basis.tsv"
        shell:
            STAGE


if LM:

    rule lm_factors:
        input:
            model=ancient(lm_model()),
            clean=ancient(ART["lm_data"].clean),
        output:
            **ART["lm_factors"].outputs,
        params:
            **stage("lm_factors", ART["lm_factors"].params),
        threads: config["threads"]["factors"]
        log:
            "logs/lm_factors.log",
        benchmark:
            "logs/benchmarks/lm_factors.tsv"
        shell:
            STAGE

    rule lm_basis:
        input:
            factors=ancient(ART["lm_factors"].factors),
        output:
            **ART["lm_basis"].outputs,
        params:
            **stage("lm_basis", ART["lm_basis"].params),
        threads: config["threads"]["factors"]
        log:
            "logs/lm_basis.log",
        benchmark:
            "logs/benchmarks/lm_basis.tsv"
        shell:
            STAGE
