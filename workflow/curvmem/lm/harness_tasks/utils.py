"""Scoring of the custom harness tasks in this directory."""
import json


def popqa_results(doc, results):
    """Correct when any possible answer appears in the generation, case-insensitively."""
    answers = json.loads(doc["possible_answers"]) if isinstance(doc["possible_answers"], str) else doc["possible_answers"]
    text = results[0].lower()
    return {"acc": float(any(a.lower() in text for a in answers))}
