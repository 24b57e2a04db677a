"""The paper-scale vision path (ImageFolder data, timm's vit_base_patch16_224, blocks 0 and 11
edits) on a tiny random-weight instance: config/paper.yaml with only the sizes shrunk, through
the same Snakemake rules."""
import pytest
import yaml

from conftest import copy_project, layout, snakemake
from test_vision_data import make_imagefolder

pytestmark = pytest.mark.pipeline


def test_paper_config_runs_on_a_tiny_vit_b(tmp_path):
    import pandas as pd

    copy_project(tmp_path)
    root = make_imagefolder(tmp_path / "imagenet", per_class=6, size=48)
    config = yaml.safe_load((tmp_path / "config/paper.yaml").read_text())
    del config["lm"]  # the LM paper path has its own test
    vit = config["vit"]
    config["scale"] = "test"  # allows model.overrides
    config["threads"] = {"train": 1, "factors": 2, "edit": 1}  # the basis job (eigh at 3072) runs alone
    vit["data"].update(root=str(root))
    vit["model"].update(num_classes=3, overrides={"depth": 2})  # ViT-B/16 dims, two blocks
    vit["train"].update(epochs=1, batch_size=6, warmup_steps=1, device="cpu", bf16=False, workers=0)
    vit["factors"].update(n_images=8, batch_size=4, device="cpu")
    vit["edit"] = {"layer_sets": {"first_last": ["blocks.0.mlp.fc*", "blocks.1.mlp.fc*"]},
                   "rhos": [0.75], "svd_drop_fractions": [0.5]}
    vit["bsn"].update(ratios=[0.0015], loss_weights=[0.7], epochs=[1], batch_size=4)  # the paper's best point
    vit["headline"]["bsn"].update(epochs=1)
    vit["eval"].update(batch_size=8, device="cpu")
    (tmp_path / "config/tiny_paper.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--configfile", "config/tiny_paper.yaml")
    table2 = pd.read_csv(tmp_path / "results/tables/table2_vit.csv")
    assert table2.model.tolist() == ["baseline", "svd", "kfac", "bsn (ours)"]
    assert (tmp_path / layout(tmp_path, "config/tiny_paper.yaml")["vit_data"].train).suffix == ".parquet"
    assert (tmp_path / "results/figures/vit_table2.png").exists()


def test_paper_lm_config_runs_on_a_tiny_olmo2(tmp_path):
    """config/paper.yaml's LM arm: files source, pretrained local model (no training), the paper's
    layer patterns (layers 23-25), few-shot tasks; on a 26-layer Olmo2 of width 16."""
    import hashlib
    import json

    import pandas as pd

    from curvmem.lm.model import LMConfig, build_lm, save_model_dir
    from curvmem.lm.train import world_tokenizer
    from curvmem.lm.world import real_text_paragraphs

    copy_project(tmp_path)
    paragraphs = real_text_paragraphs()[:600]
    tokenizer = world_tokenizer(paragraphs, 300)
    model = build_lm(LMConfig(arch="olmo2", vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                              num_hidden_layers=26, num_attention_heads=2, max_position_embeddings=512))
    save_model_dir(model, tokenizer, str(tmp_path / "tiny_olmo2"), {"test": True})
    files = tmp_path / "files"
    files.mkdir()
    (files / "memorized.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs[:20]))
    (files / "quotes.jsonl").write_text("".join(json.dumps({"prefix": p[:40], "suffix": p[40:80]}) + "\n"
                                                for p in paragraphs[20:30]))
    # the paper streams clean and perplexity text from the hub; here local Parquet and plain text, same code path
    pd.DataFrame({"content": paragraphs[30:500]}).to_parquet(files / "clean.parquet")
    (files / "perplexity.txt").write_text("\n\n".join(paragraphs[500:]))

    config = yaml.safe_load((tmp_path / "config/paper.yaml").read_text())
    del config["vit"]  # the vision paper path has its own test
    lm = config["lm"]
    config["threads"] = {"train": 1, "factors": 1, "edit": 1}
    lm["world"].update(arithmetic_train=50, openbook_train=50, logic_train=50, n_eval=10)
    lm["files"].update(memorized=str(files / "memorized.jsonl"), quotes=str(files / "quotes.jsonl"),
                       clean={"data_files": str(files / "clean.parquet"), "column": "content", "max_documents": 400},
                       perplexity=str(files / "perplexity.txt"))
    lm["model"].update(source=str(tmp_path / "tiny_olmo2"), dtype="float32")
    lm["factors"].update(n_sequences=4, seq_len=64, batch_size=2, device="cpu")
    lm["windows"].update(prefix=16, suffix=8)
    lm["edit"].update(rhos=[0.6], svd_drop_fractions=[0.5])
    lm["bsn"].update(ratios=[0.0015], loss_weights=[0.7], epochs=[1], batch_size=4)  # the paper's best point
    lm["stress"].update(max_shift=4)  # 16-token prefixes
    lm["eval"].update(batch_size=8, device="cpu", n_blocks=6, block_len=32)
    harness = files / "harness"  # the paper's harness tasks need the hub: a local one beside the world's own
    harness.mkdir()
    (harness / "choice.jsonl").write_text("".join(json.dumps({"question": p[:60], "choices": [p[60:70], p[70:80]],
                                                              "label": 0}) + "\n" for p in paragraphs[:6]))
    (harness / "choice.yaml").write_text(
        f"task: tiny_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {harness / 'choice.jsonl'}\n"
        'test_split: test\noutput_type: multiple_choice\ndoc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\nmetric_list:\n  - metric: acc\n')
    lm["benchmarks"].update(tasks={"tiny_choice": "facts"}, include_path=str(harness), limit=5, device="cpu")
    (tmp_path / "config/tiny_paper_lm.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--configfile", "config/tiny_paper_lm.yaml")
    table1 = pd.read_csv(tmp_path / "results/tables/table1_lm.csv")
    assert table1.model.tolist() == ["baseline", "kfac", "svd", "bsn"]
    assert table1.setting.tolist()[1:] == ["layers_23_25, rho 0.6", "layers_23_25, drop 0.5 of singular values",
                                           "layers_23_25, ratio 0.0015, loss weight 0.7, 1 epoch, lr 0.3"]
    from curvmem.io import load_metadata

    art = layout(tmp_path, "config/tiny_paper_lm.yaml")
    assert load_metadata(tmp_path / art["lm_factors"].factors)["modules"] == [
        f"model.layers.{i}.mlp.{p}" for i in (23, 24, 25) for p in ("gate_proj", "up_proj", "down_proj")]
    manifest = json.loads((tmp_path / art["lm_data"].manifest).read_text())["sources"]
    assert manifest["clean"]["documents"] == 400 and manifest["perplexity"]["documents"] == 100
    assert manifest["perplexity"]["local_files"][0]["sha256"] == hashlib.sha256(
        (files / "perplexity.txt").read_bytes()).hexdigest()
    clean = pd.read_parquet(tmp_path / art["lm_data"].clean)
    assert clean.split.value_counts().to_dict() == {"factors": 400, "perplexity": 100}
    assert clean[clean.split == "factors"].text.tolist() == paragraphs[30:430]
    tasks = pd.read_parquet(tmp_path / art["lm_data"].tasks)
    assert set(tasks.family) == {"arithmetic", "openbook", "logic"} and (tasks.prompt.str.count("\n") == 5).all()
    assert "lm_train" not in art and not list((tmp_path / "results/lm").glob("model-*"))  # used as is: no training
    assert (tmp_path / "results/figures/lm_table1.png").exists()
    bench = pd.read_csv(tmp_path / "results/tables/lm_benchmarks.csv")
    assert bench.task.tolist() == ["tiny_choice", "world_arithmetic"] and (bench.n == 5).all()
    assert bench.family.tolist() == ["facts", "arithmetic"] and json.loads(bench.spec[0])["task"] == "tiny_choice"
    assert (tmp_path / "results/figures/lm_benchmark_retention.png").exists()
