"""The vision arm: label-noise memorization in a Vision Transformer (paper section 4 / Table 2)."""
