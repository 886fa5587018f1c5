"""Run Valley v1's own inference code on a tiny checkpoint and write down what it computed.

Run by ``tests/test_valley_original.py`` with the interpreter in ``GREENROOM_VALLEY_PYTHON`` (one with
Valley's requirements: transformers 4.28-4.31, decord), never inside Greenroom's environment:

    python valley_original.py SOURCE CHECKPOINT TOWER.json OUT QUESTION MAX_NEW_TOKENS CLIP [CLIP ...]

SOURCE is a checkout of RupertLuo/Valley (``main``). This is ``run_valley.py``'s ``main()`` and
``ValleyLlamaForCausalLM.completion()`` on the CPU in fp32 (the original casts the frames to fp16 for a
GPU), with the slow tokenizer Valley was trained with (``run_valley.py``'s fast ``AutoTokenizer``, converted from
``tokenizer.model``, does not find Valley's tokens after a line break, so it leaves the video out). OUT gets
``original.json`` (prompt ids, generated ids, answers) and per clip ``pixels{i}.npy`` (T x 3 x 224 x 224)
and ``rows{i}.npy`` (the 256 + T embeddings the original put in place of its visual tokens).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaModel

source, checkpoint, tower_config, out, question, max_new, *clips = sys.argv[1:]
sys.path.insert(0, source)
from valley.model.valley_model import ValleyLlamaForCausalLM  # noqa: E402 (from the checkout put on sys.path above)
from valley.util import config as tokens  # noqa: E402 (from the checkout put on sys.path above)
from valley.util.data_util import KeywordsStoppingCriteria, load_video  # noqa: E402 (from the checkout put on sys.path above)

# run_valley.py's DEFAULT_SYSTEM (the module imports peft at the top, so it is not imported here)
SYSTEM = (
    "You are Valley, a large language and vision assistant trained by ByteDance. You are able to understand "
    "the visual content or video that the user provides, and assist the user with a variety of tasks using "
    "natural language. Follow the instructions carefully and explain your answers in detail."
)


def model_folder(checkpoint: Path, tower_config: dict, work: Path) -> Path:
    """The checkpoint with ``mm_vision_tower`` pointing at a local tower (the original loads the tower
    named there first, then the checkpoint's ``model.vision_tower.*`` weights over it)."""
    state = {}
    for file in sorted(checkpoint.glob("*.safetensors")):
        state.update(load_file(str(file)))
    tower = CLIPVisionModel(CLIPVisionConfig(**tower_config))
    tower.load_state_dict(
        {k[len("model.vision_tower.") :]: v for k, v in state.items() if k.startswith("model.vision_tower.")},
        strict=False,
    )
    tower.save_pretrained(work / "tower")
    folder = work / "valley"
    folder.mkdir()
    for file in checkpoint.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((checkpoint / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "mm_vision_tower": str(work / "tower")}))
    return folder


def main() -> None:
    folder = model_folder(Path(checkpoint), json.loads(Path(tower_config).read_text()), Path(tempfile.mkdtemp()))
    model = ValleyLlamaForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=False)
    vision = model.get_model().vision_tower.config  # run_valley.py's init_vision_token
    vision.im_start_token, vision.im_end_token = tokenizer.convert_tokens_to_ids(
        [tokens.DEFAULT_IM_START_TOKEN, tokens.DEFAULT_IM_END_TOKEN]
    )
    vision.vi_start_token, vision.vi_end_token = tokenizer.convert_tokens_to_ids(
        [tokens.DEFAULT_VI_START_TOKEN, tokens.DEFAULT_VI_END_TOKEN]
    )
    vision.vi_frame_token = tokenizer.convert_tokens_to_ids(tokens.DEFAULT_VIDEO_FRAME_TOKEN)
    vision.im_patch_token = tokenizer.convert_tokens_to_ids([tokens.DEFAULT_IMAGE_PATCH_TOKEN])[0]

    seen: dict[str, np.ndarray] = {}
    plain_forward = LlamaModel.forward

    def recording(self, *args, **kwargs):  # the embeddings after the original put the visual rows in
        seen.setdefault("embeds", kwargs["inputs_embeds"][0].detach().numpy().copy())
        return plain_forward(self, *args, **kwargs)

    LlamaModel.forward = recording
    message = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    results = []
    for i, clip in enumerate(clips):
        seen.clear()
        ids = torch.as_tensor(model.build_inputs(tokenizer, message).input_ids)
        images = load_video(clip).permute(1, 0, 2, 3).unsqueeze(0)
        stop = KeywordsStoppingCriteria(["###"], tokenizer, ids)
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                images=images,
                stopping_criteria=[stop],
                do_sample=False,
                temperature=0.2,
                max_new_tokens=int(max_new),
            )
        generated = output[0, ids.shape[1] :].tolist()
        answer = model.process_response(tokenizer.batch_decode([generated], skip_special_tokens=True))[0]
        start = ids[0].tolist().index(vision.im_start_token) + 1
        frames = ids[0].tolist().index(vision.vi_start_token) + 1
        t = images.shape[1]
        np.save(Path(out) / f"pixels{i}.npy", images[0].numpy())
        np.save(
            Path(out) / f"rows{i}.npy",
            np.concatenate([seen["embeds"][start : start + 256], seen["embeds"][frames : frames + t]]),
        )
        results.append({"clip": clip, "ids": ids[0].tolist(), "generated": generated, "answer": answer})
    (Path(out) / "original.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
