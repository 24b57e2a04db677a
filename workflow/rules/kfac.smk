# K-FAC factors and the curvature basis (one eigendecomposition per factor, reused by every cutoff).


if VIT:
    rule vit_factors:
        input:
            model="results/vit/model.safetensors",
            train=vit_split("train"),
            corruption="data/vit/corruption.json",
        output:
            "results/vit/factors.safetensors",
        params:
            model=as_json(VIT["model"]),
            factors=as_json(VIT["factors"]),
        threads: config["threads"]["factors"]
        log:
            "logs/vit_factors.log",
        benchmark:
            "logs/benchmarks/vit_factors.tsv"
        shell:
            "python -m curvmem.vision.factors --model-config {params.model:q} --factor-config {params.factors:q} "
            "--model {input.model} --data {input.train} --corruption {input.corruption} --out {output} "
            "--threads {threads} > {log} 2>&1"


    rule vit_basis:
        input:
            "results/vit/factors.safetensors",
        output:
            basis="results/vit/basis.safetensors",
            spectra="results/vit/spectra.parquet",
        threads: config["threads"]["factors"]
        log:
            "logs/vit_basis.log",
        benchmark:
            "logs/benchmarks/vit_basis.tsv"
        shell:
            "python -m curvmem.basis --factors {input} --out {output.basis} --spectra {output.spectra} "
            "--threads {threads} > {log} 2>&1"


if LM:
    rule lm_factors:
        input:
            model=lm_model_dir(),
            clean="data/lm/clean.parquet",
        output:
            "results/lm/factors.safetensors",
        params:
            factors=as_json(LM["factors"]),
        threads: config["threads"]["factors"]
        log:
            "logs/lm_factors.log",
        benchmark:
            "logs/benchmarks/lm_factors.tsv"
        shell:
            "python -m curvmem.lm.factors --model {input.model} --clean {input.clean} "
            "--factor-config {params.factors:q} --out {output} --threads {threads} > {log} 2>&1"

    rule lm_basis:
        input:
            "results/lm/factors.safetensors",
        output:
            basis="results/lm/basis.safetensors",
            spectra="results/lm/spectra.parquet",
        threads: config["threads"]["factors"]
        log:
            "logs/lm_basis.log",
        benchmark:
            "logs/benchmarks/lm_basis.tsv"
        shell:
            "python -m curvmem.basis --factors {input} --out {output.basis} --spectra {output.spectra} "
            "--threads {threads} > {log} 2>&1"
