# Tables and figures: the results a reader looks at.


if VIT:
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


if LM:
    rule lm_tables:
        input:
            edits=lm_edit_results(),
            activation="results/lm/activation_ratio.parquet",
        output:
            table1="results/tables/table1_lm.csv",
            sweep="results/tables/lm_sweep.csv",
            tasks="results/tables/lm_tasks.csv",
            facts="results/tables/lm_facts.csv",
            activation="results/tables/lm_activation_ratio.csv",
            selection="results/lm/selection.json",
        params:
            selection=as_json(LM["selection"]),
        log:
            "logs/lm_tables.log",
        benchmark:
            "logs/benchmarks/lm_tables.tsv"
        shell:
            "python -m curvmem.lm.tables --edits {input.edits} --activation {input.activation} "
            "--selection-config {params.selection:q} --sweep {output.sweep} --selection {output.selection} "
            "--table1 {output.table1} --tasks {output.tasks} --facts {output.facts} "
            "--activation-out {output.activation} > {log} 2>&1"


def figure_inputs() -> dict:
    inputs = {}
    if VIT:
        inputs.update(vit_table2="results/tables/table2_vit.csv", vit_sweep="results/tables/vit_sweep.csv",
                      vit_activation="results/tables/vit_activation_ratio.csv",
                      vit_spectra="results/vit/spectra.parquet", vit_train_metrics="results/vit/train_metrics.json")
    if LM:
        inputs.update(lm_table1="results/tables/table1_lm.csv", lm_sweep="results/tables/lm_sweep.csv",
                      lm_tasks="results/tables/lm_tasks.csv", lm_facts="results/tables/lm_facts.csv",
                      lm_activation="results/tables/lm_activation_ratio.csv",
                      lm_selection="results/lm/selection.json")
        if LM.get("train"):
            inputs["lm_train_metrics"] = "results/lm/train_metrics.json"
    return inputs


rule figures:
    input:
        **figure_inputs(),
    output:
        directory("results/figures"),
    params:
        args=lambda wc, input: " ".join(f"--{k.replace('_', '-')} {v}" for k, v in input.items()),
        headline=as_json(VIT["headline"] if VIT else {}),
    log:
        "logs/figures.log",
    benchmark:
        "logs/benchmarks/figures.tsv"
    shell:
        "python -m curvmem.figures {params.args} --headline {params.headline:q} --out {output} > {log} 2>&1"
