"""The files Character Cards travel in, read and written alike: `.json`; `.png`/`.apng` with the
card in tEXt chunks (`chara`: base64 V2 JSON; `ccv3`: base64 V3 JSON, which wins when both exist);
`.charx`, a zip with the V3 card as `card.json` and its icon under `assets/`.

A card's image comes along: the PNG it was read from (its card chunks taken out), or a CHARX's PNG
icon. Writing puts that image back, or draws one with the character's name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from greenroom.memory.archives import extract_zip
from greenroom.memory.cards import V2, V3, as_spec
from greenroom.memory.characters import CharacterError, json_object

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CARD_BYTES = 20 * 1024 * 1024
MAX_CHUNK_BYTES = 16 * 1024 * 1024
PNG_SUFFIXES = (".png", ".apng")
CARD_SUFFIXES = (*PNG_SUFFIXES, ".json", ".charx")
CHARX_ICON = "assets/icon/images/main.png"
EMBEDDED = ("embeded://", "embedded://")  # the V3 spec's spelling, and the one people fix it to
NOT_CARRIED = (*EMBEDDED, "__asset:", "ccdefault:")  # assets that live in the file the card came in
IMAGE_SIZE = (400, 600)
BACKGROUNDS = ("#33415c", "#5c3341", "#2f5c4a", "#5c4d2f", "#4a2f5c", "#2f4f5c")


def _png_chunks(data: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    """A PNG's chunks (kind, body) up to IEND, every length and checksum checked against the file."""
    if not data.startswith(PNG_SIGNATURE):
        raise CharacterError(f"{where}: not a PNG file")
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise CharacterError(f"{where}: truncated PNG (chunk header at byte {pos})")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > MAX_CHUNK_BYTES or pos + 12 + length > len(data):
            raise CharacterError(f"{where}: truncated or corrupt PNG (chunk {kind!r} at byte {pos})")
        body = data[pos + 8 : pos + 8 + length]
        if struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] != zlib.crc32(kind + body):
            raise CharacterError(f"{where}: corrupt PNG (bad checksum in chunk {kind!r})")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length


def png_text_chunks(data: bytes, where: str) -> dict[str, str]:
    """The tEXt chunks of a PNG (keyword -> text)."""
    chunks: dict[str, str] = {}
    for kind, body in _png_chunks(data, where):
        if kind == b"tEXt" and b"\0" in body:
            key, _, text = body.partition(b"\0")
            chunks[key.decode("latin-1")] = text.decode("latin-1")
    return chunks


def _is_card_chunk(kind: bytes, body: bytes) -> bool:
    """A text chunk that carries a card or a card's asset (SillyTavern's `chara-ext-asset_`)."""
    key = body.partition(b"\0")[0]
    return kind in (b"tEXt", b"zTXt", b"iTXt") and (key in (b"chara", b"ccv3") or key.startswith(b"chara-ext-asset_"))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_cards(image: bytes, cards: dict[str, dict[str, Any]], where: str = "image") -> bytes:
    """The PNG with its card chunks replaced by ``cards`` (keyword -> card, base64 JSON), at the end."""
    kept = b"".join(
        _chunk(kind, body)
        for kind, body in _png_chunks(image, where)
        if kind != b"IEND" and not _is_card_chunk(kind, body)
    )
    texts = b"".join(
        _chunk(b"tEXt", key.encode("latin-1") + b"\0" + base64.b64encode(json.dumps(card, ensure_ascii=False).encode()))
        for key, card in cards.items()
    )
    return PNG_SIGNATURE + kept + texts + _chunk(b"IEND", b"")


def _card_from_png(data: bytes, where: str) -> tuple[dict[str, Any], bytes]:
    chunks = png_text_chunks(data, where)
    key = "ccv3" if "ccv3" in chunks else "chara" if "chara" in chunks else None
    if key is None:
        raise CharacterError(f"{where}: the PNG carries no character card (no 'chara' or 'ccv3' tEXt chunk)")
    try:
        card = json_object(base64.b64decode(chunks[key], validate=True), f"{where} ({key} chunk)")
    except (binascii.Error, ValueError):
        raise CharacterError(f"{where}: the '{key}' chunk is not base64") from None
    return card, png_with_cards(data, {}, where)


def _charx_icon(card: dict[str, Any], root: Path, where: str) -> bytes | None:
    """The card's main icon from an extracted CHARX, when it is a PNG in the archive."""
    data = card.get("data")
    assets = data.get("assets") if isinstance(data, dict) else None
    icons = [a for a in assets or [] if isinstance(a, dict) and a.get("type") == "icon"]
    for icon in sorted(icons, key=lambda a: a.get("name") != "main"):
        uri = str(icon.get("uri", ""))
        member = next((PurePosixPath(uri[len(p) :]) for p in EMBEDDED if uri.startswith(p)), None)
        if member is None or member.is_absolute() or ".." in member.parts:  # only files in the archive
            continue
        path = root.joinpath(*member.parts)
        if path.is_file() and (image := path.read_bytes()).startswith(PNG_SIGNATURE):
            return png_with_cards(image, {}, f"{where} {member}")
    return None


def read_card_file(path: Path) -> tuple[dict[str, Any], bytes | None]:
    """The raw card JSON from a .json, .png/.apng or .charx file, and the PNG image it came with."""
    where = path.name
    suffix = path.suffix.lower()
    if path.stat().st_size > MAX_CARD_BYTES and suffix != ".charx":
        raise CharacterError(f"{where}: over the {MAX_CARD_BYTES}-byte limit")
    if suffix in PNG_SUFFIXES:
        return _card_from_png(path.read_bytes(), where)
    if suffix == ".charx":
        with tempfile.TemporaryDirectory(prefix="greenroom-charx-") as tmp:
            root = extract_zip(path, Path(tmp))
            if not (root / "card.json").is_file():
                raise CharacterError(f"{where}: no card.json at the top of the archive")
            card = json_object((root / "card.json").read_bytes(), f"{where} card.json")
            return card, _charx_icon(card, root, where)
    return json_object(path.read_bytes(), where), None


def check_card_path(out: Path, spec: str) -> None:
    """Refuse a file name that does not say a card container, or a container the spec cannot use."""
    suffix = out.suffix.lower()
    if suffix not in CARD_SUFFIXES:
        raise CharacterError(f"{out.name}: a card is written as .png, .json or .charx; end the file name with one")
    if suffix == ".charx" and spec != V3:
        raise CharacterError(f"{out.name}: a .charx file holds a V3 card; use --format card-v3")


def _with_icon(card: dict[str, Any], uri: str | None) -> dict[str, Any]:
    """The card with its main icon at ``uri`` (in place of any other; None: none added), and
    without the assets that lived in the file it was read from (this file does not carry them)."""
    data = card["data"]
    kept = [
        a
        for a in data.get("assets") or []
        if isinstance(a, dict)
        and not str(a.get("uri", "")).startswith(NOT_CARRIED)
        and (uri is None or (a.get("type"), a.get("name")) != ("icon", "main"))
    ]
    if uri is not None:
        kept.insert(0, {"type": "icon", "uri": uri, "name": "main", "ext": "png"})
    if not kept and "assets" not in data:
        return card
    return {**card, "data": {**data, "assets": kept}}


def write_card_file(out: Path, card: dict[str, Any], image: bytes | None) -> None:
    """Write a V2 or V3 card as the file ``out``'s name says (checked by `check_card_path`): JSON;
    a PNG of ``image`` (else one drawn with the name) carrying the card, and for V3 a V2 copy for
    older readers; or a CHARX with the image as its icon."""
    v3 = card["spec"] == V3
    suffix = out.suffix.lower()
    if suffix == ".json":
        out.write_text(json.dumps(_with_icon(card, None), ensure_ascii=False, indent=2), encoding="utf-8")
        return
    picture = image or name_image(card["data"].get("nickname") or card["data"]["name"])
    if suffix in PNG_SUFFIXES:
        card = _with_icon(card, "ccdefault:" if v3 else None)
        cards = {"chara": as_spec(card, V2), "ccv3": card} if v3 else {"chara": card}
        out.write_bytes(png_with_cards(picture, cards))
        return
    with zipfile.ZipFile(out, "w") as archive:
        body = json.dumps(_with_icon(card, EMBEDDED[0] + CHARX_ICON), ensure_ascii=False, indent=2)
        archive.writestr("card.json", body, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(CHARX_ICON, picture, compress_type=zipfile.ZIP_STORED)


def name_image(name: str) -> bytes:
    """A plain PNG portrait with the name on it (a colour of its own per name). A name the default
    font cannot draw still gives an image."""
    width, height = IMAGE_SIZE
    colour = BACKGROUNDS[hashlib.sha256(name.encode()).digest()[0] % len(BACKGROUNDS)]
    picture = Image.new("RGB", IMAGE_SIZE, colour)
    draw = ImageDraw.Draw(picture)
    try:
        for size in range(56, 11, -4):
            font = ImageFont.load_default(size)
            left, _, right, _ = draw.textbbox((0, 0), name, font=font)
            if right - left <= width - 40:
                break
        draw.text((width / 2, height / 2), name, font=font, fill="#f4f1ea", anchor="mm")
    except UnicodeEncodeError:  # Pillow without FreeType: its bitmap font draws Latin-1 only
        pass
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()
