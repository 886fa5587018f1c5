"""`greenroom`: run the bot, chat in the terminal, manage characters."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Offline by design: never reach for a model hub; keep library progress bars out of the chat.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging
import secrets

from greenroom.arguments import parser
from greenroom.core.characters import check_character
from greenroom.core.config import load_config, secret, secret_values
from greenroom.core.logs import setup_logging
from greenroom.errors import UserError
from greenroom.memory.characters import CharacterError, slug
from greenroom.memory.lorebook_store import BOT_WIDE
from greenroom.models.valley.errors import CheckpointError

if TYPE_CHECKING:
    from greenroom.compose import Greenroom

log = logging.getLogger("greenroom")


def _console(app: Greenroom, user: str | None, json_mode: bool = False):
    from greenroom.bots.console import Console

    return Console(app.dispatcher, app.persona, app.factcheck.idle, app.config.console, user, json_mode)


def _chat(app: Greenroom, args: argparse.Namespace) -> int:
    app.characters.ensure_default()
    console = _console(app, args.user, json_mode=args.json)
    if args.message:
        asyncio.run(console.run_script(args.message))
    else:
        asyncio.run(console.run_interactive())
    return 0


def _run(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.serve import serve

    platforms = app.platforms()
    if not platforms:
        print(
            "No chat platform token is set (DISCORD_TOKEN, TELEGRAM_TOKEN): starting the console chat.", file=sys.stderr
        )
        args.user, args.json, args.message = None, False, None
        return _chat(app, args)
    print(f"greenroom: starting {', '.join(platforms)}; SIGTERM or Ctrl-C stops", file=sys.stderr)
    console = (lambda: _console(app, None)) if args.console else None
    return asyncio.run(serve(app, lambda: app.adapters(platforms), console))


def _character(app: Greenroom, args: argparse.Namespace) -> int:
    if args.action == "load":
        if args.path.lower().startswith(("http://", "https://")):
            result, note = asyncio.run(app.characters.load_url(args.path, args.name))
        else:
            result, note = app.characters.load(args.path, args.name, progress=sys.stderr.isatty())
        character = result.character
        if result.changed:
            print(
                f"loaded {character.name} ({character.id}): {result.stories} stories, "
                f"{result.passages} passages in {result.seconds:.1f} s; {note}"
            )
        else:
            print(f"{character.name} ({character.id}) is already loaded with the same content")
    elif args.action == "list":
        rows = app.library.summaries()
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        elif not rows:
            print("no characters loaded")
        for r in rows if not args.json else []:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["loaded_at"]))
            print(f"{r['id']:<20} {r['name']:<24} {r['stories']:>6} stories  {r['format']}  {when}")
    elif args.action == "info":
        cid = slug(args.name)
        row = next((r for r in app.library.summaries() if r["id"] == cid), None)
        if row is None:
            raise CharacterError(f"no character named '{cid}'")
        c, _ = app.library.character(cid)
        detail = {
            **row,
            "speaker_aliases": list(c.speaker_aliases),
            "greeting": c.greeting,
            "settings": c.settings,
            "system_prompt": c.system_prompt,
        }
        if args.json:
            print(json.dumps(detail, ensure_ascii=False))
        else:
            for key, value in detail.items():
                print(f"{key}: {value}")
    elif args.action == "export":
        count = app.characters.export(slug(args.name), Path(args.out), args.format)
        print(f"wrote {count} stories of {slug(args.name)} to {args.out} ({args.format})")
    elif args.action == "remove":
        print(f"removed {app.characters.remove(args.name)}")
    return 0


def _lore(app: Greenroom, args: argparse.Namespace) -> int:
    books = app.lorebooks
    if args.action == "load":
        target = {"name": args.name, "character": args.character, "chat": args.chat}
        if args.path.lower().startswith(("http://", "https://")):
            print(asyncio.run(books.load_url(args.path, BOT_WIDE, **target)))
        else:
            print(books.load(Path(args.path), BOT_WIDE, **target))
    elif args.action == "list":
        rows = books.visible(None)
        if args.json:
            print(json.dumps([dataclasses.asdict(b) for b in rows], ensure_ascii=False))
        elif not rows:
            print("no lorebooks loaded")
        for b in rows if not args.json else []:
            uses = ", ".join(f"{kind} {target}" for kind, target in b.uses) or "nothing"
            print(f"{b.id:<20} {b.entries:>5} entries  {b.owner or 'bot-wide'}  used by: {uses}")
    elif args.action == "info":
        book = books.owned(args.name, args.chat or BOT_WIDE)
        for key, value in dataclasses.asdict(book).items():
            print(f"{key}: {value}")
    elif args.action == "remove":
        book = books.owned(args.name, args.chat or BOT_WIDE)
        books.remove(book)
        print(f"removed the lorebook {book.id}" + (f" of the chat {book.owner}" if book.owner else ""))
    return 0


def _fakenews(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.models.fakenews import training
    from greenroom.models.fakenews.data import read_records
    from greenroom.models.fakenews.detector import DEFAULT_MODEL, baseline_of, load_detector

    records = read_records(args.data)
    progress = sys.stderr.isatty()
    if args.action == "train":
        out = Path(args.out)
        if args.backbone == "embedder":
            trained = training.train_embedding(records, app.embedder, args.phase, args.mf_share, progress)
            trained.detector.save(out)
            training.write_card(out, trained, Path(args.data).name)
            print(f"trained on {trained.train_counts} ({args.phase}); wrote {out}")
            if trained.val:
                print(trained.val.table())
        else:
            evaluation = training.train_transformer(records, Path(args.backbone), args.phase, args.mf_share, out)
            print(f"fine-tuned {args.backbone} ({args.phase}); wrote {out}")
            if evaluation:
                print(evaluation.table())
    elif args.action == "eval":
        folder = Path(args.model) if args.model else DEFAULT_MODEL
        rows = training.split_rows(records, args.split)
        baseline = baseline_of(folder) or training.fit_baseline_on(records)
        evaluation = training.evaluate(load_detector(folder, lambda: app.embedder), baseline, rows)
        print(json.dumps(evaluation.to_json()) if args.json else evaluation.table())
    else:
        swept = training.sweep(records, app.embedder, progress=progress)
        if args.json:
            print(json.dumps([{"phase": p, "mf_share": s, **e.to_json()} for p, s, e in swept]))
        else:
            print(training.sweep_table(swept))
    return 0


def _links(app: Greenroom, args: argparse.Namespace) -> int:
    verdict = asyncio.run(app.link_checker.check(args.url))
    if args.json:
        print(json.dumps(verdict.to_json(), ensure_ascii=False))
    else:
        from greenroom.core.factcheck import describe

        print(describe(verdict))
    return 1 if verdict.verdict == "error" else 0


def _video(app: Greenroom, args: argparse.Namespace) -> int:
    import numpy as np

    from greenroom.models.video.answer import DEFAULT_QUESTION, Decoding

    if args.action == "embed":
        valley = app.load_valley(args.checkpoint, args.runtime)
        clip = valley.clip(args.file)
        np.save(args.out, clip.rows)
        print(f"wrote {clip.rows.shape[0]} x {clip.rows.shape[1]} visual rows (frames {clip.indices}) to {args.out}")
        return 0
    given = {k: v for k in ("checkpoint", "runtime", "model", "mmproj", "base_url") if (v := getattr(args, k))}
    named = {"checkpoint": "valley", "model": "llama_cpp", "base_url": "openai"}  # a model names its backend
    backend = args.backend or next((b for key, b in named.items() if key in given), app.config.video.backend)
    c = app.config.video.model_copy(update={**given, "backend": backend})
    if not c.enabled:
        needs = {"valley": "--checkpoint PATH", "llama_cpp": "--model GGUF", "openai": "--base-url URL"}[c.backend]
        raise CheckpointError(f"no video model for the {c.backend} backend: pass {needs} or set it in [video]")
    model = app.load_video_model(c)
    clip = model.clip(args.file)
    question = args.question or DEFAULT_QUESTION
    answer = model.ask(clip, question, [], Decoding(c.max_new_tokens, c.temperature))
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "question": question,
                    "answer": answer.text,
                    "backend": c.backend,
                    "runtime": model.runtime,
                    **({"template": template} if (template := getattr(model, "template", None)) else {}),
                    "frames": clip.indices,
                    "total_frames": clip.total_frames,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": len(answer.tokens),
                    "first_token_s": round(answer.first_token_s, 3),
                    "vision_s": round(answer.vision_s, 3),
                    "seconds": round(answer.seconds, 3),
                },
                ensure_ascii=False,
            )
        )
    else:
        print(answer.text)
    return 0


def _valley(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.models.valley.convert import apply_delta, convert

    if args.action == "apply-delta":
        count = apply_delta(Path(args.base), Path(args.delta), Path(args.out))
        print(f"wrote {count} tensors to {args.out}")
    else:
        meta = convert(Path(args.checkpoint), Path(args.out), args.outtype)
        print(
            f"wrote {args.out}: vision tower ({meta['vision_layers']} layers), projector, language.gguf "
            f"({args.outtype}); token ids checked: {meta['token_ids']}"
        )
    return 0


def _memory(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.memory.transfer import export_store, import_store

    path = Path(args.file)
    if args.action == "export":
        counts = export_store(app.store, path)
    else:
        counts = import_store(app.store, path, app.library.repoint)
    verb = "wrote" if args.action == "export" else "imported"
    print(
        f"{verb} {len(counts)} indexes, {sum(counts.values())} points"
        + (f": {', '.join(f'{k} ({v})' for k, v in counts.items())}" if counts else "")
    )
    return 0


def _database(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.memory.copy import copy_database
    from greenroom.memory.db import Database, database_url

    target = Database(database_url(args.url, app.data_dir, secret(app.config.database.password_env)))
    try:
        counts = copy_database(app.db, target)
    finally:
        target.close()
    print(f"copied {sum(counts.values())} rows to {target.where}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _worker(app: Greenroom, args: argparse.Namespace) -> int:
    return app.run_video_worker(burst=args.burst)


def _plugins(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.compose import describe_plugins

    for group, names in describe_plugins().items():
        print(f"{group}: {', '.join(names) or '(none)'}")
    return 0


def _model(app: Greenroom, args: argparse.Namespace) -> int:
    from greenroom.model_command import run

    return run(app, args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    app = None
    try:
        config = load_config(getattr(args, "config", None), getattr(args, "data_dir", None))
        setup_logging(config.bot.log_level, secret_values(config))
        character = getattr(args, "character", None)
        if character:  # this process's character for chats that have not chosen one
            persona = config.persona.model_copy(update={"default_character": slug(character)})
            config = config.model_copy(update={"persona": persona})
        from greenroom.compose import Greenroom

        app = Greenroom(config)
        if character:
            check_character(app.db, character)
        handler = {
            "run": _run,
            "chat": _chat,
            "character": _character,
            "lore": _lore,
            "fakenews": _fakenews,
            "links": _links,
            "video": _video,
            "valley": _valley,
            "memory": _memory,
            "database": _database,
            "worker": _worker,
            "plugins": _plugins,
            "model": _model,
        }[args.command]
        return handler(app, args)
    except UserError as e:
        print(f"greenroom: {getattr(e, 'detail', e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngreenroom: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except Exception:
        error_id = secrets.token_hex(4)
        log.exception("greenroom %s failed (error id %s)", args.command, error_id)
        print(f"greenroom: something went wrong (error id {error_id}); the log has the details", file=sys.stderr)
        return 1
    finally:
        if app is not None:
            app.close()


if __name__ == "__main__":
    sys.exit(main())
