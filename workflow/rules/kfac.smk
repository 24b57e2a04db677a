# K-FAC factors and the curvature basis (one eigendecomposition per factor, reused by every cutoff);
# with the frontier's ekfac method, EK-FAC's eigenvalue corrections (a second pass, in that basis); with
# a kfac_<fisher> method, the factors and basis of that Fisher type too, and how far the two bases agree.


if VIT:  # one job per model of the vision arm: the trained model and each member of the weight-decay family

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_factors:
        input:
            model=upstream_of("vit_factors", "vit_train", "model"),
            data=ancient(ART["vit_data"].train),
            corruption=ancient(ART["vit_corrupt"].corruption),
        output:
            **TEMPLATES["vit_factors"],
        params:
            **stage("vit_factors", artifact_params("vit_factors")),
        threads: config["threads"]["factors"]
        resources:
            gpu=0,  # GPUs, one rank each: set per cluster (profiles/slurm)
        log:
            "logs/vit_factors/{fp}.log",
        benchmark:
            "logs/benchmarks/vit_factors/{fp}.tsv"
        shell:
            RANKED_STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_basis:
        input:
            factors=upstream_of("vit_basis", "vit_factors", "factors"),
        output:
            **TEMPLATES["vit_basis"],
        params:
            **stage("vit_basis", artifact_params("vit_basis")),
        threads: config["threads"]["factors"]
        log:
            "logs/vit_basis/{fp}.log",
        benchmark:
            "logs/benchmarks/vit_basis/{fp}.tsv"
        shell:
            STAGE

    if "vit_ekfac" in ART:

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule vit_ekfac:
            input:
                model=ancient(ART["vit_train"].model),
                data=ancient(ART["vit_data"].train),
                corruption=ancient(ART["vit_corrupt"].corruption),
                basis=ancient(ART["vit_basis"].basis),
            output:
                **ART["vit_ekfac"].outputs,
            params:
                **stage("vit_ekfac", ART["vit_ekfac"].params),
            threads: config["threads"]["factors"]
            resources:
                gpu=0,  # GPUs, one rank each: set per cluster (profiles/slurm)
            log:
                "logs/vit_ekfac.log",
            benchmark:
                "logs/benchmarks/vit_ekfac.tsv"
            shell:
                RANKED_STAGE

    if ART.fisher_bases.get("vit"):

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule vit_fisher_overlap:
            input:
                basis=ancient(ART["vit_basis"].basis),
                other=other_fisher_bases("vit"),
            output:
                **reported("vit_fisher_overlap", "overlap"),
            params:
                **stage("vit_fisher_overlap", fisher_overlap_params("vit")),
            threads: config["threads"]["edit"]
            log:
                "logs/vit_fisher_overlap.log",
            benchmark:
                "logs/benchmarks/vit_fisher_overlap.tsv"
            shell:
                STAGE


if LM:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_factors:  # one job per Fisher type the study needs (the factors' own, and the compared one)
        input:
            model=upstream_of("lm_factors", lm_model_rule(LM), "model"),
            clean=upstream_of("lm_factors", "lm_data", "clean"),
        output:
            **TEMPLATES["lm_factors"],
        params:
            **stage("lm_factors", artifact_params("lm_factors")),
        threads: config["threads"]["factors"]
        resources:
            gpu=0,  # GPUs, one rank each: set per cluster (profiles/slurm)
        log:
            "logs/lm_factors/{fp}.log",
        benchmark:
            "logs/benchmarks/lm_factors/{fp}.tsv"
        shell:
            RANKED_STAGE

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_basis:
        input:
            factors=upstream_of("lm_basis", "lm_factors", "factors"),
        output:
            **TEMPLATES["lm_basis"],
        params:
            **stage("lm_basis", artifact_params("lm_basis")),
        threads: config["threads"]["factors"]
        log:
            "logs/lm_basis/{fp}.log",
        benchmark:
            "logs/benchmarks/lm_basis/{fp}.tsv"
        shell:
            STAGE

    if "lm_ekfac" in ART:

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule lm_ekfac:
            input:
                model=ancient(lm_model()),
                clean=ancient(ART["lm_data"].clean),
                basis=ancient(ART["lm_basis"].basis),
            output:
                **ART["lm_ekfac"].outputs,
            params:
                **stage("lm_ekfac", ART["lm_ekfac"].params),
            threads: config["threads"]["factors"]
            resources:
                gpu=0,  # GPUs, one rank each: set per cluster (profiles/slurm)
            log:
                "logs/lm_ekfac.log",
            benchmark:
                "logs/benchmarks/lm_ekfac.tsv"
            shell:
                RANKED_STAGE

    if ART.fisher_bases.get("lm"):

        # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
        rule lm_fisher_overlap:
            input:
                basis=ancient(ART["lm_basis"].basis),
                other=other_fisher_bases("lm"),
            output:
                **reported("lm_fisher_overlap", "overlap"),
            params:
                **stage("lm_fisher_overlap", fisher_overlap_params("lm")),
            threads: config["threads"]["edit"]
            log:
                "logs/lm_fisher_overlap.log",
            benchmark:
                "logs/benchmarks/lm_fisher_overlap.tsv"
            shell:
                STAGE
