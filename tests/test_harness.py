"""lm-evaluation-harness on our models, offline (custom YAML tasks over local JSON): a multiple-choice
task on a tiny random Olmo2 against log-likelihoods computed by hand, and the pipeline's own task
suite on the test world's trained model against the pipeline's evaluator, item for item."""
import json

import pytest
import torch

from curvmem.lm.harness import HarnessConfig, evaluate, write_world_tasks

QUESTIONS = [("The capital of France is", ["Paris", "a dog", "blue"], 0),
             ("Two plus two makes", ["seven", "four", "never"], 1),
             ("Water is made of hydrogen and", ["iron", "sand", "oxygen"], 2),
             ("The sun rises in the", ["east", "sea", "cupboard"], 0),
             ("Cats are a kind of", ["stone", "animal", "song"], 1)]


def tiny_olmo2():
    from curvmem.lm.model import LMConfig, build_lm
    from curvmem.lm.train import world_tokenizer
    from curvmem.lm.world import real_text_paragraphs

    tokenizer = world_tokenizer(real_text_paragraphs()[:200], 300)
    torch.manual_seed(0)
    model = build_lm(LMConfig(arch="olmo2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128)).eval()
    return model, tokenizer


def loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context), the continuation's tokens being those the joint string adds."""
    start = tokenizer("a", add_special_tokens=True)["input_ids"][:-1]  # the document-start tokens
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([start + whole])
    n_cont = len(whole) - len(context_ids)
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0].log_softmax(-1)  # (T, V)
    targets = ids[0, -n_cont:]
    return float(logprobs[-n_cont - 1:-1].gather(1, targets[:, None]).sum())


def test_a_multiple_choice_task_equals_loglikelihoods_by_hand(tmp_path):
    model, tokenizer = tiny_olmo2()
    data = tmp_path / "choice.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "label": y}) + "\n" for q, c, y in QUESTIONS))
    (tmp_path / "choice.yaml").write_text(
        "task: tiny_choice\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n")
    scores = evaluate(model, tokenizer, HarnessConfig(tasks={"tiny_choice": "facts"}, include_path=str(tmp_path),
                                                     batch_size=4), "cpu")
    picks = [max(range(3), key=lambda i: loglikelihood(model, tokenizer, q, " " + c[i])) for q, c, _ in QUESTIONS]
    expected = sum(p == y for p, (_, _, y) in zip(picks, QUESTIONS)) / len(QUESTIONS)
    assert scores["tiny_choice"]["value"] == pytest.approx(expected) and scores["tiny_choice"]["n"] == 5
    assert json.loads(scores["tiny_choice"]["spec"])["output_type"] == "multiple_choice"


@pytest.mark.pipeline
def test_the_world_suite_scores_as_the_pipelines_evaluator(test_run, tmp_path):
    from conftest import layout
    from curvmem.io import load_parquet
    from curvmem.lm.evaluate import EvalConfig, LMEvaluation
    from curvmem.lm.model import load_model_dir

    art = layout(test_run)
    model, tokenizer = load_model_dir(str(test_run / art["lm_train"].model))
    tasks = load_parquet(test_run / art["lm_data"].tasks)
    clean = load_parquet(test_run / art["lm_data"].clean)
    ours = LMEvaluation(tokenizer, load_parquet(test_run / art["lm_sets"].sets), clean.text.tolist(), tasks,
                        EvalConfig(batch_size=32, block_len=32, n_blocks=1), "cpu")
    names = write_world_tasks(tasks, tmp_path, ours.answer_tokens)
    scores = evaluate(model, tokenizer, HarnessConfig(tasks=names, include_path=str(tmp_path)), "cpu")
    reference = ours.task_accuracy(model)
    for task, family in names.items():
        assert scores[task]["n"] == reference[family]["n"]
        assert 100 * scores[task]["value"] == pytest.approx(reference[family]["accuracy_pct"]), (task, scores[task])
