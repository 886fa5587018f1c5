"""Valley v1 (ByteDance, 2023): CLIP ViT-L/14 frames, mean spatio-temporal pooling, a linear
projector into a LLaMA language model. See ``../shared/docs/valley.md`` for the facts."""
