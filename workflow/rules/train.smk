# Models: the ViT trained on noisy labels; the LM imported (pretrained source) and/or trained.


if VIT:
    rule train_vit:
        input:
            train=vit_split("train"),
            corruption="data/vit/corruption.json",
        output:
            model="results/vit/model.safetensors",
            metrics="results/vit/train_metrics.json",
        params:
            model=as_json(VIT["model"]),
            train=as_json(VIT["train"]),
        threads: config["threads"]["train"]
        log:
            "logs/train_vit.log",
        benchmark:
            "logs/benchmarks/train_vit.tsv"
        shell:
            "python -m curvmem.vision.train --model {params.model:q} --train-config {params.train:q} "
            "--data {input.train} --corruption {input.corruption} --out {output.model} "
            "--metrics {output.metrics} --threads {threads} > {log} 2>&1"


if LM and LM["model"].get("source"):
    rule lm_import:
        output:
            directory("results/lm/pretrained"),
        params:
            model=as_json(LM["model"]),
        log:
            "logs/lm_import.log",
        benchmark:
            "logs/benchmarks/lm_import.tsv"
        shell:
            "python -m curvmem.lm.model --model {params.model:q} --out {output} > {log} 2>&1"


if LM and LM.get("train"):
    rule lm_train:
        input:
            docs="data/lm/train_docs.parquet",
            init=["results/lm/pretrained"] if LM["model"].get("source") else [],
        output:
            model=directory("results/lm/model"),
            metrics="results/lm/train_metrics.json",
        params:
            train=as_json(LM["train"]),
            start=lambda wc, input: (f"--init {input.init}" if input.init else
                                     "--model-config " + shlex.quote(as_json(LM["model"]))),
        threads: config["threads"]["train"]
        log:
            "logs/lm_train.log",
        benchmark:
            "logs/benchmarks/lm_train.tsv"
        shell:
            "python -m curvmem.lm.train --docs {input.docs} --train-config {params.train:q} {params.start} "
            "--out {output.model} --metrics {output.metrics} --threads {threads} > {log} 2>&1"
