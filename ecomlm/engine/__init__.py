"""The engine layer: models, tokenizers, generation and fine-tuning over ecomlm._core."""
