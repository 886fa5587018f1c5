"""The GPU runtime: the language model in transformers, visual rows placed in ``inputs_embeds``."""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaForCausalLM

from greenroom.models.valley.checkpoint import Shards, llama_config
from greenroom.models.valley.errors import CheckpointError
from greenroom.models.valley.prompt import VisualRun


def load_language(shards: Shards, config: dict, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    """The LLaMA part of a Valley checkpoint (the tower and projector keys are skipped)."""
    with torch.device("meta"):
        model = LlamaForCausalLM(llama_config(config))
    state = dict(shards.language())
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if model.config.tie_word_embeddings and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
        model.tie_weights()
    if missing or unexpected:
        raise CheckpointError(f"language weights do not fit LLaMA: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.model.rotary_emb = type(model.model.rotary_emb)(model.config)  # the buffer was built on meta
    return model.to(device=device, dtype=dtype).eval()  # type: ignore[call-arg]  # transformers' .to typing


class TorchLanguage:
    """Prefill with ``inputs_embeds`` (token embeddings, placeholder rows replaced), then a KV cache."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        self.model = model
        self.n_ctx = model.config.max_position_embeddings
        self.eos = model.config.eos_token_id
        self._cache = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def prefill(self, ids: list[int], rows: np.ndarray, runs: list[VisualRun]) -> np.ndarray:
        embeds = self.model.get_input_embeddings()(torch.tensor(ids, device=self.device))
        visual = torch.from_numpy(rows).to(self.device, embeds.dtype)
        for run in runs:
            embeds[run.start : run.start + run.length] = visual[run.row : run.row + run.length]
        out = self.model(inputs_embeds=embeds[None], use_cache=True, logits_to_keep=1)
        self._cache = out.cache
        return out.logits[0, -1].float().cpu().numpy()

    @torch.inference_mode()
    def step(self, token: int) -> np.ndarray:
        out = self.model(input_ids=torch.tensor([[token]], device=self.device), cache=self._cache, use_cache=True)
        self._cache = out.cache
        return out.logits[0, -1].float().cpu().numpy()
