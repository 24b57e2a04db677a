# Edits and their evaluation: one job per (layer set, method, cutoff), so changing one cutoff
# reruns exactly that job and the tables and figures that read it.

wildcard_constraints:
    layer_set="[A-Za-z0-9_]+",
    method="kfac|svd",
    cutoff="[0-9.]+",


if VIT:
    VIT_EVAL_INPUTS = dict(
        model="results/vit/model.safetensors",
        train=vit_split("train"),
        val=vit_split("val"),
        corruption="data/vit/corruption.json",
    )


    rule vit_baseline:
        input:
            **VIT_EVAL_INPUTS,
        output:
            "results/vit/edits/baseline.json",
        params:
            model=as_json(VIT["model"]),
            batch_size=VIT["eval"]["batch_size"],
            device=VIT["eval"]["device"],
        threads: config["threads"]["edit"]
        log:
            "logs/vit_edits/baseline.log",
        benchmark:
            "logs/benchmarks/vit_edits/baseline.tsv"
        shell:
            "python -m curvmem.vision.evaluate --model-config {params.model:q} --model {input.model} "
            "--train {input.train} --val {input.val} --corruption {input.corruption} --method none "
            "--batch-size {params.batch_size} --device {params.device} --out {output} "
            "--threads {threads} > {log} 2>&1"


    rule vit_edit:
        input:
            **VIT_EVAL_INPUTS,
            basis="results/vit/basis.safetensors",
        output:
            "results/vit/edits/{layer_set}/{method}_{cutoff}.json",
        params:
            model=as_json(VIT["model"]),
            modules=lambda wc: as_json(vit_layer_set_modules(wc.layer_set)),
            batch_size=VIT["eval"]["batch_size"],
            device=VIT["eval"]["device"],
        threads: config["threads"]["edit"]
        log:
            "logs/vit_edits/{layer_set}/{method}_{cutoff}.log",
        benchmark:
            "logs/benchmarks/vit_edits/{layer_set}/{method}_{cutoff}.tsv"
        shell:
            "python -m curvmem.vision.evaluate --model-config {params.model:q} --model {input.model} "
            "--train {input.train} --val {input.val} --corruption {input.corruption} --basis {input.basis} "
            "--method {wildcards.method} --cutoff {wildcards.cutoff} --modules {params.modules:q} "
            "--layer-set {wildcards.layer_set} --batch-size {params.batch_size} "
            "--device {params.device} --out {output} --threads {threads} > {log} 2>&1"


    rule vit_activation_ratio:
        input:
            model="results/vit/model.safetensors",
            train=vit_split("train"),
            corruption="data/vit/corruption.json",
            basis="results/vit/basis.safetensors",
        output:
            "results/vit/activation_ratio.parquet",
        params:
            model=as_json(VIT["model"]),
            batch_size=VIT["eval"]["batch_size"],
            device=VIT["eval"]["device"],
        threads: config["threads"]["edit"]
        log:
            "logs/vit_activation_ratio.log",
        benchmark:
            "logs/benchmarks/vit_activation_ratio.tsv"
        shell:
            "python -m curvmem.vision.activations --model-config {params.model:q} --model {input.model} "
            "--train {input.train} --corruption {input.corruption} --basis {input.basis} "
            "--batch-size {params.batch_size} --device {params.device} --out {output} "
            "--threads {threads} > {log} 2>&1"


if LM:
    LM_EVAL_INPUTS = dict(
        model=lm_model_dir(),
        sets="results/lm/sets.parquet",
        clean="data/lm/clean.parquet",
        tasks="data/lm/tasks.parquet",
    )
    LM_EVAL_ARGS = ("--model {input.model} --sets {input.sets} --clean {input.clean} --tasks {input.tasks} "
                    "--eval-config {params.eval:q} --threads {threads}")

    rule lm_baseline:
        input:
            **LM_EVAL_INPUTS,
        output:
            metrics="results/lm/edits/baseline.json",
            reference="results/lm/reference_top10.safetensors",
        params:
            eval=as_json(LM["eval"]),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_edits/baseline.log",
        benchmark:
            "logs/benchmarks/lm_edits/baseline.tsv"
        shell:
            "python -m curvmem.lm.evaluate " + LM_EVAL_ARGS + " --method none "
            "--reference {output.reference} --out {output.metrics} > {log} 2>&1"

    rule lm_edit:
        input:
            **LM_EVAL_INPUTS,
            basis="results/lm/basis.safetensors",
            reference="results/lm/reference_top10.safetensors",
        output:
            "results/lm/edits/{layer_set}/{method}_{cutoff}.json",
        params:
            eval=as_json(LM["eval"]),
            modules=lambda wc: as_json(LM["edit"]["layer_sets"][wc.layer_set]),
        threads: config["threads"]["edit"]
        log:
            "logs/lm_edits/{layer_set}/{method}_{cutoff}.log",
        benchmark:
            "logs/benchmarks/lm_edits/{layer_set}/{method}_{cutoff}.tsv"
        shell:
            "python -m curvmem.lm.evaluate " + LM_EVAL_ARGS + " --method {wildcards.method} "
            "--cutoff {wildcards.cutoff} --modules {params.modules:q} --layer-set {wildcards.layer_set} "
            "--basis {input.basis} --reference {input.reference} --out {output} > {log} 2>&1"

    rule lm_activation_ratio:
        input:
            model=lm_model_dir(),
            sets="results/lm/sets.parquet",
            clean="data/lm/clean.parquet",
            basis="results/lm/basis.safetensors",
        output:
            "results/lm/activation_ratio.parquet",
        params:
            batch_size=LM["eval"]["batch_size"],
            device=LM["eval"]["device"],
        threads: config["threads"]["edit"]
        log:
            "logs/lm_activation_ratio.log",
        benchmark:
            "logs/benchmarks/lm_activation_ratio.tsv"
        shell:
            "python -m curvmem.lm.activations --model {input.model} --sets {input.sets} --clean {input.clean} "
            "--basis {input.basis} --batch-size {params.batch_size} --device {params.device} "
            "--out {output} --threads {threads} > {log} 2>&1"
