# Data and memorized sets: vision splits and label corruption; LM text artifacts and the verified
# memorized windows. Each arm's rules exist only when its section is in the config.


if VIT:
    rule prepare_vision_data:
        output:
            train=vit_split("train"),
            val=vit_split("val"),
        params:
            data=as_json({k: v for k, v in VIT["data"].items() if k != "noise_rate"}),
        log:
            "logs/prepare_vision_data.log",
        benchmark:
            "logs/benchmarks/prepare_vision_data.tsv"
        shell:
            "python -m curvmem.vision.data prepare --params {params.data:q} "
            "--train {output.train} --val {output.val} > {log} 2>&1"


    rule corrupt_labels:
        input:
            train=vit_split("train"),
        output:
            "data/vit/corruption.json",
        params:
            data=as_json({"noise_rate": VIT["data"]["noise_rate"], "seed": VIT["data"]["seed"]}),
        log:
            "logs/corrupt_labels.log",
        benchmark:
            "logs/benchmarks/corrupt_labels.tsv"
        shell:
            "python -m curvmem.vision.data corrupt --params {params.data:q} "
            "--train {input.train} --out {output} > {log} 2>&1"


if LM:
    rule lm_data:
        output:
            **{name: f"data/lm/{name}.parquet" for name in ("train_docs", "candidates", "clean", "tasks")},
        params:
            data=as_json({"world": LM["world"], "files": LM.get("files"), "few_shot": LM.get("few_shot", 0)}),
        log:
            "logs/lm_data.log",
        benchmark:
            "logs/benchmarks/lm_data.tsv"
        shell:
            "python -m curvmem.lm.data --params {params.data:q} --out-dir data/lm > {log} 2>&1"

    rule lm_sets:
        input:
            model=lm_model_dir(),
            candidates="data/lm/candidates.parquet",
        output:
            sets="results/lm/sets.parquet",
            summary="results/lm/sets_summary.json",
        params:
            windows=as_json(LM["windows"]),
            batch_size=LM["eval"]["batch_size"],
            device=LM["eval"]["device"],
        threads: config["threads"]["edit"]
        log:
            "logs/lm_sets.log",
        benchmark:
            "logs/benchmarks/lm_sets.tsv"
        shell:
            "python -m curvmem.lm.sets --model {input.model} --candidates {input.candidates} "
            "--windows {params.windows:q} --batch-size {params.batch_size} --device {params.device} "
            "--out {output.sets} --summary {output.summary} --threads {threads} > {log} 2>&1"
