# Models: the ViT trained on noisy labels; the LM imported (pretrained source) and/or trained.


if VIT:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_train:  # the trained model and each member of the weight-decay family, by fingerprint
        input:
            data=ancient(ART["vit_data"].train),
            corruption=ancient(ART["vit_corrupt"].corruption),
        output:
            **TEMPLATES["vit_train"],
        params:
            **stage("vit_train", artifact_params("vit_train")),
        threads: config["threads"]["train"]
        resources:
            gpu=0,  # GPUs, one rank each: set per cluster (profiles/slurm)
        log:
            "logs/vit_train/{fp}.log",
        benchmark:
            "logs/benchmarks/vit_train/{fp}.tsv"
        shell:
            RANKED_STAGE


if LM and "lm_import" in ART:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_import:
        output:
            model=directory(ART["lm_import"].model),
        params:
            **stage("lm_import", ART["lm_import"].params),
        log:
            "logs/lm_import.log",
        benchmark:
            "logs/benchmarks/lm_import.tsv"
        shell:
            STAGE


if LM and "lm_train" in ART:

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_train:  # the trained model and each member of the stability study, by fingerprint
        input:
            docs=upstream_of("lm_train", "lm_data", "train_docs"),
            init=(lambda wildcards: [ancient(ART.upstream("lm_train", wildcards.fp, "lm_import").model)])
            if "lm_import" in ART else [],
        output:
            model=directory(TEMPLATES["lm_train"]["model"]),
            metrics=TEMPLATES["lm_train"]["metrics"],
        params:
            **stage("lm_train", artifact_params("lm_train")),
        threads: config["threads"]["train"]
        log:
            "logs/lm_train/{fp}.log",
        benchmark:
            "logs/benchmarks/lm_train/{fp}.tsv"
        shell:
            STAGE
