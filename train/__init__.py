"""Training: PyTorch models, data, losses, metrics and training loops. May import sdk."""
