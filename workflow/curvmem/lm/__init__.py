"""The language-model arm: verbatim recitation in a causal LM (paper section 5 / Table 1).

Reuses the curvature engine (kfac, basis, edit, activations); what is LM-specific lives here:
the model loader, the next-token position selection, and batched greedy recitation.
"""

SETS = ("memorized_train", "memorized_val", "quotes")  # the verified memorized sets, in report order
