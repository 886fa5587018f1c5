"""Tiny random Valley checkpoints in the published layout, built offline in well under a second.

CLIP and LLaMA come from configs (ViT-L/14 geometry: 224 px, patch 14, 257 tokens a frame),
the tokenizer is a small sentencepiece model trained here, with Valley's added tokens in
``added_tokens.json`` after it, as in the released checkpoints.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

ADDED = ["[PAD]", "<vi_frame>", "<vi_start>", "<vi_end>", "<im_patch>", "<im_start>", "<im_end>"]  # train.py's order
CORPUS = [
    "A man is cooking eggs in a pan in the kitchen.",
    "The cat sits on the mat and looks at the camera.",
    "People dance at a party with music and bright lights.",
    "Describe this video concisely.",
    "A chat between a curious human and an artificial intelligence assistant.",
    "You are Valley, a large language and vision assistant trained by ByteDance.",
    "What is the person doing? Human: Assistant: ### Hi there! How can I help you today?",
]
VISION_LAYERS = 3
HIDDEN = 64


def write_tokenizer(folder: Path) -> int:
    """A byte-fallback sentencepiece BPE model with LLaMA's normaliser settings (line breaks and runs of
    spaces kept) plus Valley's tokens; returns the vocabulary size."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 10),
        model_writer=model,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
    )  # LLaMA's normaliser settings
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    base = 320
    (folder / "added_tokens.json").write_text(json.dumps({t: base + i for i, t in enumerate(ADDED)}))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "[PAD]"})
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False})
    )
    return base + len(ADDED)


def tower_config(width: int = 32) -> dict:
    """The tiny CLIP tower's config (Valley's own code needs ``width`` 1024, ViT-L/14's); heads of 64 like CLIP's."""
    return dict(
        hidden_size=width,
        intermediate_size=64,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=max(1, width // 64),
        image_size=224,
        patch_size=14,
        hidden_act="quick_gelu",
    )


def build_checkpoint(
    folder: Path,
    fmt: str = "safetensors",
    seed: int = 0,
    hidden: int = HIDDEN,
    select_layer: int = -2,
    vision_width: int = 32,
    kv_heads: int = 2,
) -> Path:
    """A Valley checkpoint folder: config.json, weights as ``safetensors`` (two shards and an index)
    or ``bin`` (one pytorch_model.bin), tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(folder)
    torch.manual_seed(seed)
    vision = CLIPVisionModel(CLIPVisionConfig(**tower_config(vision_width)))
    llama_cfg = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    llama = LlamaForCausalLM(LlamaConfig(**llama_cfg))
    projector = torch.nn.Linear(vision_width, hidden)
    state = {k: v for k, v in llama.state_dict().items()}
    state.update({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()})
    state.update(
        {
            f"model.vision_tower.vision_model.{k.removeprefix('vision_model.')}": v
            for k, v in vision.state_dict().items()
            if "position_ids" not in k
        }
    )
    state = {k: v.contiguous() for k, v in state.items()}
    config = {
        **llama_cfg,
        "architectures": ["ValleyLlamaForCausalLM"],
        "model_type": "valley",
        "mm_hidden_size": vision_width,
        "mm_vision_select_layer": select_layer,
        "mm_vision_tower": "openai/clip-vit-large-patch14",
        "mm_use_im_start_end": True,
        "use_mm_proj": True,
        "torch_dtype": "float32",
        "_name_or_path": "tiny-valley",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        names = sorted(state)
        halves = {
            "model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2 :],
        }
        for file, keys in halves.items():
            save_file({k: state[k] for k in keys}, str(folder / file), metadata={"format": "pt"})
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": {k: f for f, keys in halves.items() for k in keys}})
        )
    return folder
