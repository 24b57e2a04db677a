# Train the ViT on the noisy labels.


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
