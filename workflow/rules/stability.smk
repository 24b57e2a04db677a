# Is the curvature basis stable across training seeds and through training (docs/method.md, section 12)?
# With vit.stability, each seed's model and each checkpoint of the trained model's run has its own factors
# and basis (the jobs of vit_train, vit_factors and vit_basis, by fingerprint); one job compares them.


if VIT and ART.stability.get("vit"):

    # lint 'conda environment or container': none on purpose, the pinned pip env (why: beside STAGE, common.smk)
    rule vit_stability:
        input:
            models=stability_inputs("model"),
            bases=stability_inputs("basis"),
            data=ancient(ART["vit_data"].train),
            val=ancient(ART["vit_data"].val),
            corruption=ancient(ART["vit_corrupt"].corruption),
        output:
            **reported("vit_stability", "overlap", "edits", "seeds"),
        params:
            **stage("vit_stability", stability_params()),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_stability.log",
        benchmark:
            "logs/benchmarks/vit_stability.tsv"
        shell:
            STAGE
