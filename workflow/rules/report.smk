# Tables and figures: the results a reader looks at.


rule vit_tables:
    input:
        edits=vit_edit_results(),
        activation="results/vit/activation_ratio.parquet",
    output:
        table2="results/tables/table2_vit.csv",
        sweep="results/tables/vit_sweep.csv",
        activation="results/tables/vit_activation_ratio.csv",
    params:
        headline=as_json(VIT["headline"]),
    log:
        "logs/vit_tables.log",
    benchmark:
        "logs/benchmarks/vit_tables.tsv"
    shell:
        "python -m curvmem.vision.tables --edits {input.edits} --activation {input.activation} "
        "--headline {params.headline:q} --table2 {output.table2} --sweep {output.sweep} "
        "--activation-out {output.activation} > {log} 2>&1"


rule figures:
    input:
        table2="results/tables/table2_vit.csv",
        sweep="results/tables/vit_sweep.csv",
        activation="results/tables/vit_activation_ratio.csv",
        spectra="results/vit/spectra.parquet",
        train_metrics="results/vit/train_metrics.json",
    output:
        directory("results/figures"),
    params:
        headline=as_json(VIT["headline"]),
    log:
        "logs/figures.log",
    benchmark:
        "logs/benchmarks/figures.tsv"
    shell:
        "python -m curvmem.figures --vit-table2 {input.table2} --vit-sweep {input.sweep} "
        "--vit-activation {input.activation} --vit-spectra {input.spectra} "
        "--vit-train-metrics {input.train_metrics} --headline {params.headline:q} --out {output} > {log} 2>&1"
