"""The vision side: CLIP ViT-L/14 up to the selected layer, mean pooling in CLIP space, the projector.

Valley projects every token of every frame (T x 257) and then averages the 256 patch
tokens over time; the projector is linear, so averaging first and projecting 256 + T
vectors gives the same rows for a fraction of the work. Only the CLIP layers whose output
is used are built: ``hidden_states[-2]`` of a 24-layer tower is the ``last_hidden_state``
of the same tower cut to 23 layers (before ``post_layernorm``, CLS kept).

The tower's widths come from the weights' shapes. Its head count (and activation, layer-norm eps)
cannot: they come from the tower's own config.json when ``mm_vision_tower`` names a local folder,
else CLIP's 64-wide heads are assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from greenroom.models.valley.errors import CheckpointError

HEAD_DIM = 64  # assumed without a tower config: OpenAI's and Chinese-CLIP's B and L towers (not ViT-H/14: 80)
GEOMETRY = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "hidden_act",
    "layer_norm_eps",
    "image_size",
    "patch_size",
)
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")


def stored_layers(names: list[str]) -> int:
    return 1 + max((int(m.group(1)) for n in names if (m := _LAYER.search(n))), default=-1)


def layers_used(stored: int, select_layer: int) -> int:
    """How many encoder layers produce ``hidden_states[select_layer]`` (entry 0 is the embeddings)."""
    used = stored + 1 + select_layer if select_layer < 0 else select_layer
    if not 1 <= used <= stored:
        raise ValueError(f"mm_vision_select_layer {select_layer} does not fit a {stored}-layer vision tower")
    return used


Declared = tuple[dict, str]  # a tower's GEOMETRY as its config declares it, and where that was read


def declared_tower(config: dict, checkpoint: Path) -> Declared | None:
    """The geometry of the tower ``mm_vision_tower`` names when that is a local folder (relative to the
    checkpoint or as given) with a config.json (a CLIPVisionConfig, or a CLIPConfig's ``vision_config``);
    None for a hub id."""
    name = config.get("mm_vision_tower")
    if not name:
        return None
    for folder in (checkpoint / Path(name).expanduser(), Path(name).expanduser()):
        if (folder / "config.json").is_file():
            tower = CLIPVisionConfig.from_pretrained(str(folder), local_files_only=True)
            return {k: getattr(tower, k) for k in GEOMETRY}, str(folder)
    return None


def vision_config(weights: dict[str, torch.Tensor], layers: int, declared: Declared | None = None) -> CLIPVisionConfig:
    """The tower's geometry: widths from the weights' shapes; heads, activation and layer-norm eps from
    ``declared`` (checked against the shapes), else 64-wide heads, quick_gelu and 1e-5 (OpenAI's CLIP)."""
    hidden = weights["embeddings.class_embedding"].shape[0]
    patch = weights["embeddings.patch_embedding.weight"].shape[-1]
    positions = weights["embeddings.position_embedding.weight"].shape[0]
    shaped = dict(
        hidden_size=hidden,
        intermediate_size=weights["encoder.layers.0.mlp.fc1.weight"].shape[0],
        image_size=round((positions - 1) ** 0.5) * patch,
        patch_size=patch,
    )
    if declared is None:
        geometry = dict(num_attention_heads=max(1, hidden // HEAD_DIM), hidden_act="quick_gelu", layer_norm_eps=1e-5)
    else:
        geometry, source = declared
        for key, value in shaped.items():
            if geometry[key] != value:
                raise CheckpointError(
                    f"tower config {source}: {key} {geometry[key]}, but the vision weights' is {value}"
                )
    return CLIPVisionConfig(**{**geometry, **shaped, "num_hidden_layers": layers})


def build_tower(
    weights: dict[str, torch.Tensor],
    layers: int,
    dtype: torch.dtype,
    declared: Declared | None = None,
) -> CLIPVisionModel:
    """A CLIP vision model with the first ``layers`` encoder layers of ``weights`` (no ``vision_model.`` prefix),
    its geometry from :func:`vision_config`."""
    keep = {
        k: v
        for k, v in weights.items()
        if not k.startswith("post_layernorm") and not ((m := _LAYER.match(k)) and int(m.group(1)) >= layers)
    }
    tower = CLIPVisionModel(vision_config(weights, layers, declared)).eval()
    missing, unexpected = getattr(tower, "vision_model", tower).load_state_dict(keep, strict=False)  # 4.x nests it
    missing = [k for k in missing if not k.startswith("post_layernorm") and "position_ids" not in k]
    if missing or unexpected:
        raise ValueError(f"vision weights do not fit a CLIP tower: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return tower.to(dtype)


def projector_of(weights: dict[str, torch.Tensor]) -> nn.Linear:
    out_dim, in_dim = weights["weight"].shape
    projector = nn.Linear(in_dim, out_dim)
    projector.load_state_dict(weights)
    return projector.float().eval()


def pool(hidden: torch.Tensor) -> torch.Tensor:
    """T x 257 x D -> (256 + T) x D: patch tokens averaged over frames, then each frame's CLS."""
    return torch.cat([hidden[:, 1:, :].mean(dim=0), hidden[:, 0, :]])


def project_then_pool(hidden: torch.Tensor, projector: nn.Linear) -> torch.Tensor:
    """Valley's own order (project all T x 257 tokens, then pool): the reference for :func:`pool` first."""
    return pool(projector(hidden))


class VisualEncoder:
    """Pixels (T x 3 x 224 x 224) -> the (256 + T) x H rows that replace the video placeholder."""

    def __init__(self, tower: CLIPVisionModel, projector: nn.Linear, device: str = "cpu") -> None:
        self.tower = tower.to(device)  # type: ignore[arg-type]  # transformers' .to typing
        self.projector = projector.to(device)
        self.device = device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.tower.parameters()).dtype

    @torch.inference_mode()
    def clip_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's ``last_hidden_state`` in float32 (T x 257 x D)."""
        out = self.tower(pixel_values=pixels.to(self.device, self.dtype))
        return out.last_hidden_state.float()

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projector(pool(self.clip_features(pixels))).cpu()
