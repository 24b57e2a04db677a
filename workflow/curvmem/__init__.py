"""curvmem: memorization in the low-curvature spectrum of MLP weights (Merullo et al. 2025).

Modules, one paper concept each:
  kfac       K-FAC factor collection (A, G) for target nn.Linear layers
  basis      eigendecomposition of the factors (the curvature basis), once per layer
  edit       the keep-rho-of-the-curvature-mass edit and the SVD baseline
  activations  activation-ratio analysis (paper Fig. 2)
  config     config schema validation and semantic checks
  vision/    the label-noise ViT arm: data, model, training, evaluation
"""
__version__ = "0.1.0"
