# Prepared vision splits and the label corruption (the memorized set of the vision arm).


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
