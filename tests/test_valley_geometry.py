"""The vision tower's geometry from the tower's own config: a tiny CLIP with 2 heads of 24 (hidden 48),
which the shape-based guess (64-wide heads) would build with 1 head."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModel

from greenroom.models.valley.checkpoint import VISION_PREFIX, Shards
from greenroom.models.valley.convert import convert
from greenroom.models.valley.errors import CheckpointError
from greenroom.models.valley.model import load_valley
from greenroom.models.valley.vision import build_tower
from tests.valley_fixture import VISION_LAYERS, build_checkpoint, tower_config

WIDTH = 48
HEADS = 2


def name_tower(checkpoint, tower) -> None:
    """Point the checkpoint's ``mm_vision_tower`` at a local folder, as some Valley configs do."""
    config = json.loads((checkpoint / "config.json").read_text())
    config["mm_vision_tower"] = str(tower)
    (checkpoint / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Valley checkpoint whose tower folder (weights and config) holds the same CLIP tower."""
    root = tmp_path_factory.mktemp("geometry")
    folder = build_checkpoint(root / "valley", vision_width=WIDTH)
    tower = CLIPVisionModel(CLIPVisionConfig(**{**tower_config(WIDTH), "num_attention_heads": HEADS}))
    vision_model = getattr(tower, "vision_model", tower)  # transformers 4.x nests it
    assert not vision_model.load_state_dict(Shards(folder).group(VISION_PREFIX), strict=False).unexpected_keys
    tower.save_pretrained(root / "clip-tower")
    name_tower(folder, root / "clip-tower")
    return folder


@pytest.fixture(scope="module")
def reference(checkpoint):
    """transformers' own CLIPVisionModel from the tower folder: hidden_states[-2] (Valley's select layer)."""
    tower = CLIPVisionModel.from_pretrained(checkpoint.parent / "clip-tower").eval()
    assert tower.config.num_attention_heads == HEADS
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        return pixels, tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]


def test_the_tower_gets_the_head_count_its_config_names(checkpoint, reference) -> None:
    pixels, expected = reference
    valley = load_valley(checkpoint, "gpu", device="cpu", vision_dtype="float32")
    assert valley.encoder.tower.config.num_attention_heads == HEADS
    assert torch.allclose(valley.encoder.clip_features(pixels), expected, atol=1e-5)
    guessed = build_tower(Shards(checkpoint).group(VISION_PREFIX), VISION_LAYERS - 1, torch.float32)
    assert guessed.config.num_attention_heads == 1  # what the weights alone suggest
    with torch.no_grad():
        assert not torch.allclose(guessed(pixel_values=pixels).last_hidden_state, expected, atol=1e-3)


def test_the_converted_folder_keeps_the_head_count(checkpoint, reference, tmp_path) -> None:
    pixels, expected = reference
    out = tmp_path / "cpu"
    assert convert(checkpoint, out, "f32")["vision"]["num_attention_heads"] == HEADS
    valley = load_valley(out, "cpu", vision_dtype="float32")  # valley.json, not the tower folder
    assert torch.allclose(valley.encoder.clip_features(pixels), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_size": 64}, "hidden_size 64, but the vision weights' is 48"),
        ({"patch_size": 16}, "patch_size 16, but the vision weights' is 14"),
    ],
)
def test_a_tower_config_that_does_not_fit_the_weights_is_a_clear_error(tmp_path, change, message) -> None:
    folder = build_checkpoint(tmp_path / "valley", vision_width=WIDTH)
    vision = {**tower_config(WIDTH), "num_attention_heads": HEADS, **change}
    CLIPConfig(vision_config=vision).save_pretrained(tmp_path / "tower")  # the whole CLIP's config
    name_tower(folder, tmp_path / "tower")
    for run in (lambda: load_valley(folder, "gpu", device="cpu"), lambda: convert(folder, tmp_path / "cpu")):
        with pytest.raises(CheckpointError, match=re.escape(f"tower config {tmp_path / 'tower'}: {message}")):
            run()
