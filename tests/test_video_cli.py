"""`greenroom valley convert|apply-delta` and `greenroom video describe|embed` end to end."""

from __future__ import annotations

import json

import numpy as np

from greenroom.cli import main
from greenroom.models.valley.model import load_valley
from greenroom.models.video.answer import Decoding
from tests.clips import lossless_clip, numbered_frames
from tests.valley_fixture import build_checkpoint


def test_convert_then_describe_and_embed(config_file, tmp_path, capsys) -> None:
    common = ["--config", str(config_file)]
    checkpoint = build_checkpoint(tmp_path / "ck", fmt="bin")
    out = tmp_path / "cpu"
    assert main([*common, "valley", "convert", str(checkpoint), str(out), "--outtype", "f32"]) == 0
    assert "token ids checked" in capsys.readouterr().out
    clip = lossless_clip(tmp_path / "clip.mkv", numbered_frames(10))

    assert (
        main(
            [
                *common,
                "video",
                "describe",
                str(clip),
                "--checkpoint",
                str(out),
                "--question",
                "What is happening?",
                "--json",
            ]
        )
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    valley = load_valley(out)
    expected = valley.ask(valley.clip(clip), "What is happening?", decoding=Decoding(256))
    assert shown["answer"] == expected.text and shown["runtime"] == "cpu"
    assert shown["frames"] == [0, 1, 2, 3, 5, 6, 7, 9] and shown["total_frames"] == 10

    assert (
        main([*common, "video", "embed", str(clip), "--checkpoint", str(out), "--out", str(tmp_path / "rows.npy")]) == 0
    )
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (264, 64)
    torch_side = load_valley(checkpoint, "gpu", device="cpu")
    assert np.allclose(rows, torch_side.clip(clip).rows, atol=1e-2)  # bf16 tower where the CPU has it


def test_bad_inputs_get_a_message_and_exit_2(config_file, tmp_path, capsys) -> None:
    common = ["--config", str(config_file)]
    (tmp_path / "noise.mp4").write_bytes(b"\x00garbage" * 100)
    assert main([*common, "video", "describe", str(tmp_path / "noise.mp4")]) == 2
    assert "no video model for the llama_cpp backend: pass --model GGUF" in capsys.readouterr().err
    assert main([*common, "video", "describe", str(tmp_path / "noise.mp4"), "--backend", "valley"]) == 2
    assert "pass --checkpoint PATH" in capsys.readouterr().err
    assert main([*common, "valley", "convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no config.json" in capsys.readouterr().err
    checkpoint = build_checkpoint(tmp_path / "ck")
    assert main([*common, "valley", "convert", str(checkpoint), str(tmp_path / "cpu")]) == 0
    assert main([*common, "video", "describe", str(tmp_path / "noise.mp4"), "--checkpoint", str(tmp_path / "cpu")]) == 2
    assert "could not read that as a video" in capsys.readouterr().err
