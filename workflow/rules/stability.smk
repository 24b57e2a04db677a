# Is the curvature basis stable across training seeds and through training (docs/method.md, section 12)?
# With <arm>.stability, each seed's model and each checkpoint of the trained model's run has its own
# factors and basis (and, LM, its own memorized sets): the jobs of the arm's model, factor and basis
# rules by fingerprint. One job per arm compares them.


if VIT and ART.stability.get("vit"):

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule vit_stability:
        input:
            models=stability_inputs("vit", "model"),
            bases=stability_inputs("vit", "basis"),
            data=ancient(ART["vit_data"].train),
            val=ancient(ART["vit_data"].val),
            corruption=ancient(ART["vit_corrupt"].corruption),
        output:
            **reported("vit_stability", "overlap", "edits", "seeds"),
        params:
            **stage("vit_stability", stability_params("vit")),
        threads: config["threads"]["edit"]
        log:
            "logs/vit_stability.log",
        benchmark:
            "logs/benchmarks/vit_stability.tsv"
        shell:
            STAGE


if LM and ART.stability.get("lm"):

    # lint 'conda environment or container': none on purpose: runs in envs/setup.sh's pinned pip env; no conda channel or container engine here to test one
    rule lm_stability:
        input:
            models=stability_inputs("lm", "model"),
            sets=stability_inputs("lm", "sets"),
            bases=stability_inputs("lm", "basis"),
            clean=ancient(ART["lm_data"].clean),
            tasks=ancient(ART["lm_data"].tasks),
        output:
            **reported("lm_stability", "overlap", "edits", "seeds"),
        params:
            **stage("lm_stability", stability_params("lm")),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_stability.log",
        benchmark:
            "logs/benchmarks/lm_stability.tsv"
        shell:
            STAGE
