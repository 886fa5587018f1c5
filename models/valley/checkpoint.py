"""Valley checkpoint folders as published: ``config.json`` (``model_type: valley``), ``.bin`` or
``.safetensors`` shards with ``model.vision_tower.*``, ``model.mm_projector.*`` and LLaMA keys,
and a LLaMA tokenizer with ``added_tokens.json``. Read without ``trust_remote_code``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaTokenizer, PreTrainedTokenizerBase

from greenroom.models.valley.errors import CheckpointError

VISION_PREFIX = "model.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_DROPPED = ("rotary_emb.inv_freq",)  # buffers old transformers saved; not weights


class Shards:
    """The tensors of a checkpoint folder, read lazily (a 13B checkpoint does not fit in memory twice)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._where: dict[str, Path] = {}
        self._bins: dict[Path, dict[str, torch.Tensor]] = {}
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
        if not files:
            raise CheckpointError(f"{folder}: no .safetensors or pytorch_model*.bin weights")
        for file in files:
            for name in self._names(file):
                if not name.endswith(_DROPPED):
                    self._where[name] = file

    def _names(self, file: Path) -> list[str]:
        if file.suffix == ".safetensors":
            with safe_open(file, "pt") as f:
                return list(f.keys())
        return list(self._bin(file))

    def _bin(self, file: Path) -> dict[str, torch.Tensor]:
        if file not in self._bins:  # mmap: pages are read when a tensor is used
            try:
                self._bins[file] = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise CheckpointError(f"{file.name}: not a readable PyTorch weights file ({e})") from e
        return self._bins[file]

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> torch.Tensor:
        file = self._where[name]
        if file.suffix == ".safetensors":
            with safe_open(file, "pt") as f:
                return f.get_tensor(name)
        return self._bin(file)[name]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Every tensor under ``prefix``, with the prefix removed."""
        return {n[len(prefix) :]: self.get(n) for n in self._where if n.startswith(prefix)}

    def language(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The LLaMA tensors (everything but the tower and the projector), one at a time."""
        for name in self._where:
            if not name.startswith((VISION_PREFIX, PROJECTOR_PREFIX, "model.vision_tower.")):
                yield name, self.get(name)


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json; is this a Valley checkpoint folder?")
    config = json.loads(path.read_text(encoding="utf-8"))
    if str(config.get("model_type", "")).lower() != "valley" or "mm_hidden_size" not in config:
        raise CheckpointError(
            f"{folder}: config.json is not a Valley v1 config (model_type "
            f"'{config.get('model_type')}', expected 'valley' with mm_hidden_size)"
        )
    return config


def llama_config(config: dict) -> LlamaConfig:
    """The language model's config: the Valley config read as a plain LLaMA one."""
    plain = {k: v for k, v in config.items() if not k.startswith(("mm_", "use_mm", "tune_mm", "freeze_mm", "sep_"))}
    plain.update(model_type="llama", architectures=["LlamaForCausalLM"])
    return LlamaConfig(**plain)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    if not any((folder / f).exists() for f in ("tokenizer.model", "tokenizer.json")):
        raise CheckpointError(f"{folder}: no tokenizer (tokenizer.model or tokenizer.json)")
    return LlamaTokenizer.from_pretrained(str(folder), local_files_only=True)


def default_template(config: dict) -> str:
    """The June-2023 template for the 13B v1 release (LLaMA-13B, hidden 5120), v1 ``main``'s for the rest
    (Valley2-7b's README points to ``run_valley_llamma_v2.py``)."""
    return "june" if config.get("hidden_size") == 5120 else "v1"
