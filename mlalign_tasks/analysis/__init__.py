"""The paper's interpretability analyses: logit lens over layers and PCA of hidden states across languages.

Both collect every layer's hidden states in one forward pass per batch (``hidden_states``), compare
a base model with its question-aligned LoRA adapter when one is given, and write JSON + plots.
"""
