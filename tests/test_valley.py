"""Valley v1 on tiny random checkpoints in the published layout: vision, pooling, token layout,
templates, checkpoint formats, the two runtimes, apply-delta and convert."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file

from greenroom.models.valley.checkpoint import Shards, read_config
from greenroom.models.valley.convert import apply_delta, check_gguf, convert
from greenroom.models.valley.errors import CheckpointError
from greenroom.models.valley.model import load_valley
from greenroom.models.valley.prompt import TokenIds, encode, postprocess, render, video_tokens, visual_runs
from greenroom.models.valley.vision import build_tower, layers_used, pool, project_then_pool, stored_layers
from greenroom.models.video.answer import Decoding
from tests.clips import lossless_clip, numbered_frames
from tests.valley_fixture import VISION_LAYERS, build_checkpoint

GREEDY = Decoding(max_new_tokens=12)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("valley") / "tiny-valley")


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "cpu"
    convert(checkpoint, out, "f32")
    return out


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return lossless_clip(tmp_path_factory.mktemp("clips") / "clip.mkv", numbered_frames(20, 160, 120))


def test_pooling_first_equals_valleys_project_then_pool() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(8, 257, 48, dtype=torch.float64)
    projector = torch.nn.Linear(48, 80).double()
    first = projector(pool(hidden))
    assert first.shape == (264, 80)
    assert torch.allclose(first, project_then_pool(hidden, projector), atol=1e-10)


def test_cut_tower_gives_the_full_towers_second_to_last_hidden_state(checkpoint) -> None:
    vision = Shards(checkpoint).group("model.vision_tower.vision_model.")
    assert stored_layers(list(vision)) == VISION_LAYERS
    full = build_tower(vision, VISION_LAYERS, torch.float32)
    cut = build_tower(vision, layers_used(VISION_LAYERS, -2), torch.float32)
    assert cut.config.num_hidden_layers == VISION_LAYERS - 1
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = full(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        assert torch.allclose(cut(pixel_values=pixels).last_hidden_state, expected, atol=1e-5)


def test_video_placeholder_has_264_visual_positions_between_4_delimiters(checkpoint) -> None:
    valley = load_valley(checkpoint, "gpu", device="cpu")
    ids = valley.tokenizer(render("v1", [], "What happens?", 8)).input_ids
    runs = visual_runs(ids, valley.ids, 8)
    assert [(r.length, r.row) for r in runs] == [(256, 0), (8, 256)]
    start = ids.index(valley.ids.im_start)
    assert ids[start : start + 268].count(valley.ids.im_patch) == 256 and ids[start + 267] == valley.ids.vi_end
    assert ids[runs[1].start - 2] == valley.ids.im_end  # <im_end> <vi_start> keep their own embeddings
    assert video_tokens(8).count("<") == 268


def test_frame_count_mismatch_is_an_error_not_a_silent_skip(checkpoint) -> None:
    valley = load_valley(checkpoint, "gpu", device="cpu")
    ids = valley.tokenizer(render("v1", [], "What happens?", 7)).input_ids
    with pytest.raises(ValueError, match="7 frame tokens where the clip has 8"):
        visual_runs(ids, valley.ids, 8)


def test_templates_render_as_in_the_docs() -> None:
    v1 = render("v1", [], "Describe this video concisely.\n<video>", 2)
    assert v1.startswith("You are Valley, a large language and vision assistant trained by ByteDance. You are able")
    assert v1.endswith(".\n\n### Human: Describe this video concisely.\n" + video_tokens(2) + " \n###")
    june = render("june", [], "What is he cooking?", 2)
    assert "ByteDance.You are able" in june and "language.Follow" in june
    assert june.endswith(
        "###Human: Hi!###Assistant: Hi there!  How can I help you today?\n"
        "###Human: What is he cooking?\n" + video_tokens(2) + "###Assistant:"
    )


def slow_tokenizer_ids(folder, text: str) -> list[int]:
    """Valley's training tokenizer (transformers 4.28's slow LlamaTokenizer), redone with sentencepiece:
    split on the added tokens, strip whitespace on both sides of each, encode every other piece alone."""
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    added = json.loads((folder / "added_tokens.json").read_text())
    parts = re.split("(" + "|".join(map(re.escape, added)) + ")", text)
    ids = [sp.bos_id()]
    for i, part in enumerate(parts):
        if part in added:
            ids.append(added[part])
            continue
        part = part.lstrip() if i > 0 else part
        part = part.rstrip() if i < len(parts) - 1 else part
        ids += sp.encode(part) if part else []
    return ids


@pytest.mark.parametrize("template", ["v1", "june"])
def test_prompt_ids_are_those_valley_was_trained_on(checkpoint, template) -> None:
    valley = load_valley(checkpoint, "gpu", device="cpu")
    turns = [("What is in the pan?", "Milk.")]
    for text in (
        render(template, [], "Describe this video concisely.", 8),
        render(template, turns, "The liquid is egg, not milk; fix your description.", 8),
    ):
        ids = encode(valley.tokenizer, text)
        assert ids == slow_tokenizer_ids(checkpoint, text)
        assert len(visual_runs(ids, valley.ids, 8)) == 2


def test_follow_ups_carry_the_video_in_the_first_question_only() -> None:
    text = render("june", [("Describe it.", "A man pours milk.")], "The liquid is egg, not milk; fix it.", 8)
    assert text.count("<im_start>") == 1
    assert text.index("<im_start>") < text.index("A man pours milk.") < text.index("egg, not milk")
    assert text.endswith("###Human: The liquid is egg, not milk; fix it.###Assistant:")


def test_postprocess_strips_role_prefixes_and_cuts_at_the_separator() -> None:
    assert postprocess("### Assistant: Valley: A dog runs. ###Human: more") == "A dog runs."
    assert postprocess("Response: two cats\n###") == "two cats"


def test_tokenizer_without_valleys_tokens_is_refused(checkpoint) -> None:
    valley = load_valley(checkpoint, "gpu", device="cpu")
    tokenizer = valley.tokenizer
    with pytest.raises(ValueError, match="<vi_frame>"):
        TokenIds.of(
            type(
                "T",
                (),
                {
                    "convert_tokens_to_ids": lambda self, names: [
                        tokenizer.unk_token_id if n == "<vi_frame>" else 5 for n in names
                    ]
                },
            )(),
            tokenizer.unk_token_id,
        )


def test_bin_and_safetensors_checkpoints_load_the_same_model(checkpoint, tmp_path, clip_file) -> None:
    as_bin = build_checkpoint(tmp_path / "bin", fmt="bin")
    assert list(as_bin.glob("*.bin")) and not list(as_bin.glob("*.safetensors"))
    a = load_valley(checkpoint, "gpu", device="cpu", vision_dtype="float32")
    b = load_valley(as_bin, "gpu", device="cpu", vision_dtype="float32")
    clip = a.clip(clip_file)
    assert np.array_equal(clip.rows, b.clip(clip_file).rows)
    assert a.ask(clip, decoding=GREEDY).tokens == b.ask(clip, decoding=GREEDY).tokens


def test_cpu_and_torch_runtimes_agree_on_rows_and_greedy_tokens(checkpoint, converted, clip_file) -> None:
    torch_side = load_valley(checkpoint, "gpu", device="cpu", vision_dtype="float32")
    cpu_side = load_valley(converted, "cpu", vision_dtype="float32")
    assert cpu_side.runtime == "cpu" and torch_side.runtime == "gpu"
    clip = torch_side.clip(clip_file)
    assert clip.rows.shape == (264, 64) and clip.indices == list(np.linspace(0, 19, 8).astype(int))
    assert np.allclose(cpu_side.clip(clip_file).rows, clip.rows, atol=1e-6)
    for question, turns in (
        ("Describe this video concisely.", []),
        ("The liquid is egg, not milk; fix your description.", [("Describe it.", "milk")]),
    ):
        a = torch_side.ask(clip, question, turns, GREEDY)
        b = cpu_side.ask(clip, question, turns, GREEDY)
        assert a.tokens and a.tokens == b.tokens and a.text == b.text


def test_convert_writes_the_used_layers_and_checks_token_ids(checkpoint, converted) -> None:
    meta = json.loads((converted / "valley.json").read_text())
    assert meta["vision_layers"] == VISION_LAYERS - 1 and meta["template"] == "v1"
    vision = load_file(str(converted / "vision.safetensors"))
    assert stored_layers(list(vision)) == VISION_LAYERS - 1 and not any(k.startswith("post_") for k in vision)
    vocab = read_config(checkpoint)["vocab_size"]
    check_gguf(converted / "language.gguf", meta["token_ids"], vocab)  # passes as written
    wrong = {**meta["token_ids"], "<vi_frame>": meta["token_ids"]["<vi_start>"]}
    with pytest.raises(CheckpointError, match="<vi_frame>"):
        check_gguf(converted / "language.gguf", wrong, vocab)


def test_runtime_choice_follows_the_folder(checkpoint, converted) -> None:
    assert load_valley(converted).runtime == "cpu"
    with pytest.raises(CheckpointError, match="greenroom valley convert"):
        load_valley(checkpoint, "cpu")
    with pytest.raises(CheckpointError, match="config.json"):
        load_valley(converted.parent, "gpu", device="cpu")


def test_apply_delta_restores_the_target_weights(checkpoint, tmp_path, clip_file) -> None:
    target = Shards(checkpoint)
    base, delta = tmp_path / "base", tmp_path / "delta"
    base.mkdir()
    delta.mkdir()
    base_state, delta_state = {}, {}
    torch.manual_seed(3)
    for name in target.names():
        tensor = target.get(name)
        if name.startswith("model.vision_tower") or name.startswith("model.mm_projector"):
            delta_state[name] = tensor  # stored in full
            continue
        rows = 320 if name in ("model.embed_tokens.weight", "lm_head.weight") else tensor.shape[0]
        base_state[name] = torch.randn(rows, *tensor.shape[1:])
        d = tensor.clone()
        d[:rows] -= base_state[name]
        delta_state[name] = d
    from safetensors.torch import save_file

    save_file(base_state, str(base / "model.safetensors"))
    save_file(delta_state, str(delta / "model.safetensors"))
    for file in (
        "config.json",
        "tokenizer.model",
        "added_tokens.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ):
        (delta / file).write_bytes((checkpoint / file).read_bytes())
    out = tmp_path / "restored"
    assert apply_delta(base, delta, out) == len(target.names())
    restored = Shards(out)
    for name in target.names():
        assert torch.allclose(restored.get(name), target.get(name), atol=1e-5), name
    original = load_valley(checkpoint, "gpu", device="cpu", vision_dtype="float32")
    clip = original.clip(clip_file)
    assert (
        load_valley(out, "gpu", device="cpu", vision_dtype="float32").ask(clip, decoding=GREEDY).tokens
        == original.ask(clip, decoding=GREEDY).tokens
    )


def test_long_conversations_drop_the_oldest_turns(converted, clip_file) -> None:
    valley = load_valley(converted, "cpu", vision_dtype="float32")
    clip = valley.clip(clip_file)
    turns = [
        (f"Question {i} about the people dancing at the party?", "They dance with music and lights. " * 8)
        for i in range(12)
    ]
    answer = valley.ask(clip, "And now?", turns, GREEDY)
    assert answer.prompt_tokens + 12 <= valley.language.n_ctx
    assert answer.tokens
