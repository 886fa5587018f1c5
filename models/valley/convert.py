"""One-time conversions: the 13B delta onto LLaMA-13B, and a checkpoint into the CPU runtime's files.

``convert`` writes ``vision.safetensors`` (the tower's used layers, prefix removed),
``projector.safetensors``, ``language.gguf`` (LLaMA with its sentencepiece vocabulary and
the added tokens at their ids), the tokenizer files and ``valley.json``; then it reads the
GGUF back and checks the visual tokens' ids against the tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import save_file

from greenroom.models.valley.checkpoint import (
    PROJECTOR_PREFIX,
    TOKENIZER_FILES,
    VISION_PREFIX,
    Shards,
    default_template,
    load_tokenizer,
    read_config,
)
from greenroom.models.valley.errors import CheckpointError
from greenroom.models.valley.prompt import IM_END, IM_PATCH, IM_START, VI_END, VI_FRAME, VI_START
from greenroom.models.valley.vision import GEOMETRY, declared_tower, layers_used, stored_layers, vision_config

VISUAL_TOKENS = (IM_START, IM_PATCH, IM_END, VI_START, VI_FRAME, VI_END)
OUT_TYPES = {"f32": (np.float32, gguf.LlamaFileType.ALL_F32), "f16": (np.float16, gguf.LlamaFileType.MOSTLY_F16)}
_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def apply_delta(base: Path, delta: Path, out: Path) -> int:
    """Valley's ``apply_delta.py``: target = delta + base for every tensor of base; the embedding and
    output rows of the added tokens, the projector and the tower are stored in full in the delta.
    Writes safetensors shards and copies the delta's config and tokenizer. Returns the tensor count."""
    base_shards, delta_shards = Shards(base), Shards(delta)
    read_config(delta)
    out.mkdir(parents=True, exist_ok=True)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    size = 0

    def flush() -> None:
        nonlocal shard, size
        if shard:
            name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
            save_file(shard, str(out / name), metadata={"format": "pt"})
            index.update(dict.fromkeys(shard, name))
            shard, size = {}, 0

    for name in delta_shards.names():
        tensor = delta_shards.get(name).clone()
        if name in base_shards:
            add = base_shards.get(name)
            if add.shape == tensor.shape:
                tensor += add.to(tensor.dtype)
            elif add.dim() == 2 and add.shape[1] == tensor.shape[1] and add.shape[0] < tensor.shape[0]:
                tensor[: add.shape[0]] += add.to(tensor.dtype)  # the added tokens' rows are stored in full
            else:
                raise CheckpointError(f"{name}: base shape {tuple(add.shape)} does not fit delta {tuple(tensor.shape)}")
        shard[name] = tensor.contiguous()
        size += tensor.numel() * tensor.element_size()
        if size > 4_000_000_000:
            flush()
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=1))
    for file in ("config.json", *TOKENIZER_FILES):
        if (delta / file).exists():
            shutil.copy2(delta / file, out / file)
    return len(index)


def convert(checkpoint: Path, out: Path, outtype: str = "f16") -> dict:
    """Write the CPU runtime's files for a Valley checkpoint; returns what ``valley.json`` holds."""
    config = read_config(checkpoint)
    shards = Shards(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    vision = shards.group(VISION_PREFIX)
    if not vision or not shards.group(PROJECTOR_PREFIX):
        raise CheckpointError(f"{checkpoint}: no model.vision_tower.vision_model.* or model.mm_projector.* weights")
    used = layers_used(stored_layers(list(vision)), config.get("mm_vision_select_layer", -2))
    tower = vision_config(vision, used, declared_tower(config, checkpoint))
    vision = {
        k: v.contiguous()
        for k, v in vision.items()
        if not k.startswith("post_layernorm") and not _layer_at_or_after(k, used)
    }
    save_file(vision, str(out / "vision.safetensors"))
    save_file(
        {k: v.contiguous() for k, v in shards.group(PROJECTOR_PREFIX).items()}, str(out / "projector.safetensors")
    )
    for file in TOKENIZER_FILES:
        if (checkpoint / file).exists():
            shutil.copy2(checkpoint / file, out / file)
    token_ids: list[int] = tokenizer.convert_tokens_to_ids(list(VISUAL_TOKENS))  # type: ignore[assignment]
    ids = dict(zip(VISUAL_TOKENS, token_ids, strict=True))
    write_gguf(shards, config, checkpoint, out / "language.gguf", outtype)
    check_gguf(out / "language.gguf", ids, config["vocab_size"])
    meta = {
        "format": "greenroom-valley-cpu/1",
        "vision_layers": used,
        "vision": {k: getattr(tower, k) for k in GEOMETRY},  # what the weights' shapes cannot tell: the heads
        "hidden_size": config["hidden_size"],
        "template": default_template(config),
        "token_ids": ids,
        "n_ctx": config.get("max_position_embeddings", 2048),
        "source": str(checkpoint),
    }
    (out / "valley.json").write_text(json.dumps(meta, indent=2))
    return meta


def _layer_at_or_after(name: str, layers: int) -> bool:
    parts = name.split(".")
    return name.startswith("encoder.layers.") and int(parts[2]) >= layers


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (halves) to llama.cpp's (interleaved pairs), as convert_hf_to_gguf.py does."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(shards: Shards, config: dict, tokenizer_dir: Path, path: Path, outtype: str = "f16") -> None:
    """The LLaMA part as a llama-architecture GGUF (norms in F32, matrices in ``outtype``)."""
    dtype, file_type = OUT_TYPES[outtype]
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(config.get("_name_or_path") or "valley")
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_file_type(file_type)
    _add_vocab(writer, tokenizer_dir, config["vocab_size"])
    for name, tensor in shards.language():
        w = tensor.float().numpy()
        target = _gguf_name(name)
        if target.endswith("attn_q.weight"):
            w = _permute(w, heads)
        elif target.endswith("attn_k.weight"):
            w = _permute(w, kv_heads)
        writer.add_tensor(target, w if w.ndim == 1 else w.astype(dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _gguf_name(name: str) -> str:
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if name in fixed:
        return fixed[name]
    parts = name.split(".")  # model.layers.{i}.{module...}.weight
    if parts[:2] == ["model", "layers"] and ".".join(parts[3:-1]) in _BLOCK:
        return f"blk.{parts[2]}.{_BLOCK['.'.join(parts[3:-1])]}.weight"
    raise CheckpointError(f"unexpected language-model tensor {name}")


def _add_vocab(writer: gguf.GGUFWriter, folder: Path, vocab_size: int) -> None:
    """The sentencepiece vocabulary plus ``added_tokens.json``, padded to the model's vocab size."""
    vocab = gguf.vocab.SentencePieceVocab(folder)
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    if len(tokens) > vocab_size:
        raise CheckpointError(f"the tokenizer has {len(tokens)} tokens but the model only {vocab_size} rows")
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, n_vocab=vocab_size).add_to_gguf(writer)


def check_gguf(path: Path, ids: dict[str, int], vocab_size: int) -> None:
    """Read the GGUF back: vocabulary size and the visual tokens at the tokenizer's ids."""
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    if len(tokens) != vocab_size:
        raise CheckpointError(f"{path.name}: {len(tokens)} tokens, the model has {vocab_size}")
    wrong = [
        f"{name} (tokenizer {i}, GGUF {tokens[i] if i < len(tokens) else '-'})"
        for name, i in ids.items()
        if i >= len(tokens) or tokens[i] != name
    ]
    if wrong:
        raise CheckpointError(f"{path.name}: token ids differ from the tokenizer: {', '.join(wrong)}")
