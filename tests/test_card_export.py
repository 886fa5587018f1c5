"""Cards as people share them: `character export --format card-v2|card-v3` to .png, .json and .charx,
each loading back to the same prompt; a card's own image travels with it."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageFont

from greenroom.cli import main
from greenroom.memory.card_files import CHARX_ICON, name_image, png_text_chunks, png_with_cards, read_card_file
from greenroom.memory.cards import card_image
from greenroom.memory.characters import Character, CharacterError
from greenroom.memory.importers import read_character
from tests.test_cards import RICH, png_with

EXPORTS = [("card-v2", ".json"), ("card-v2", ".png"), ("card-v3", ".json"), ("card-v3", ".png"), ("card-v3", ".charx")]


def prompt_of(c: Character) -> dict:
    """Everything a prompt is built from."""
    return {
        "id": c.id,
        "name": c.name,
        "system_prompt": c.system_prompt,
        "greeting": c.greeting,
        "stories": [s.text for s in c.stories],
        "speakers": c.speakers,
        "settings": c.settings,
        "alternate_greetings": c.extra.get("alternate_greetings", []),
        "post_history": c.extra.get("post_history", ""),
        "book": c.extra.get("book", {}),
    }


def daiyu(tmp_path: Path) -> Path:
    """A small Chinese character folder."""
    folder = tmp_path / "daiyu"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("你是林黛玉，住在潇湘馆。说话含蓄，爱作诗。", encoding="utf-8")
    (folder / "texts" / "01.txt").write_text("宝玉:「妹妹今日可好？」\n黛玉:「我好不好，与你何干。」", encoding="utf-8")
    (folder / "texts" / "02.txt").write_text("旁白:黛玉葬花\n黛玉:「花谢花飞花满天。」", encoding="utf-8")
    (folder / "character.toml").write_text(
        'name = "daiyu"\ndisplay_name = "林黛玉"\nspeaker_aliases = ["黛玉"]\ngreeting = "你来了。"\n'
        '[persona]\nmode = "haruhi2"\n',
        encoding="utf-8",
    )
    return folder


def source_path(tmp_path: Path, source: str) -> Path | None:
    """The file or folder each source loads from (None: the demo character, loaded already)."""
    if source == "chinese":
        return daiyu(tmp_path)
    if source == "json card":
        path = tmp_path / "mira.json"
        path.write_text(json.dumps(RICH), encoding="utf-8")
        return path
    if source == "png card":  # V3 with a nickname, and V2 for older readers
        path = tmp_path / "mira.png"
        v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**RICH["data"], "nickname": "Mira"}}
        path.write_bytes(png_with({"chara": RICH, "ccv3": v3}))
        return path
    return None


@pytest.mark.parametrize("source", ["demo folder", "chinese", "json card", "png card"])
def test_every_export_loads_back_to_the_same_prompt(app, tmp_path, source):
    path = source_path(tmp_path, source)
    cid = app.characters.load(path)[0].character.id if path else "wren"
    original, _ = app.library.character(cid)
    own_image = card_image(original)
    assert (own_image is not None) == (source == "png card")
    for format, suffix in EXPORTS:
        out = tmp_path / f"export-{format}{suffix}"
        assert app.characters.export(cid, out, format) == len(original.stories)
        card, image = read_card_file(out)
        assert card["spec"] == format.replace("card-", "chara_card_"), out.name
        again = read_character(out, None, "c", 384).character
        assert prompt_of(again) == prompt_of(original), out.name
        if suffix == ".json":
            assert image is None
        elif own_image is not None:
            assert image == own_image, out.name  # the card's own image, byte for byte
        else:
            assert Image.open(io.BytesIO(image)).size == (400, 600), out.name  # drawn with the name
    chunks = png_text_chunks((tmp_path / "export-card-v3.png").read_bytes(), "x")
    assert set(chunks) == {"chara", "ccv3"}  # V3, and V2 for older readers
    assert set(png_text_chunks((tmp_path / "export-card-v2.png").read_bytes(), "x")) == {"chara"}


def test_v3_exports_name_their_icon_where_the_file_carries_it(app, tmp_path):
    app.characters.load(source_path(tmp_path, "png card"))
    app.characters.export("captain-mira", tmp_path / "mira.charx", "card-v3")
    with zipfile.ZipFile(tmp_path / "mira.charx") as z:
        card = json.loads(z.read("card.json"))
        assert z.read(CHARX_ICON) == png_with({})
    assert card["spec_version"] == "3.0" and card["data"]["group_only_greetings"] == []
    assert card["data"]["assets"] == [
        {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"}
    ]
    assert card["data"]["extensions"] == {"custom": {"keep": True}}
    app.characters.export("captain-mira", tmp_path / "mira.png", "card-v3")
    v3, _ = read_card_file(tmp_path / "mira.png")
    assert v3["data"]["assets"][0]["uri"] == "ccdefault:"
    app.characters.export("captain-mira", tmp_path / "mira.json", "card-v3")
    assert "assets" not in read_card_file(tmp_path / "mira.json")[0]["data"]  # a JSON carries no image


def test_a_charx_icon_is_kept_and_a_png_card_image_loses_only_its_card_chunks(tmp_path, monkeypatch):
    icon = png_with({"chara": RICH})  # an icon that carries a card of its own
    assets = [{"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"}]
    v3 = {"spec": "chara_card_v3", "data": {**RICH["data"], "assets": assets}}
    path = tmp_path / "mira.charx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("card.json", json.dumps(v3))
        z.writestr(CHARX_ICON, icon)
    assert read_card_file(path)[1] == png_with({})
    outside = tmp_path / "outside.png"
    outside.write_bytes(icon)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # extracted into tmp/greenroom-charx-*/
    for uri in (f"embeded://{outside}", "embeded://../../outside.png"):  # only files in the archive
        assets[0]["uri"] = uri
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("card.json", json.dumps(v3))
        assert read_card_file(path)[1] is None
    asset = png_with_cards(png_with({}), {"chara-ext-asset_:0": RICH, "chara": RICH})
    assert png_with_cards(asset, {}) == png_with({})


@pytest.mark.parametrize(
    "out,format,message",
    [
        ("mira.charx", "card-v2", "mira.charx: a .charx file holds a V3 card; use --format card-v3"),
        ("mira.txt", "card-v3", "mira.txt: a card is written as .png, .json or .charx"),
    ],
)
def test_a_file_name_that_does_not_fit_the_format_is_refused(app, tmp_path, out, format, message):
    with pytest.raises(CharacterError, match=message):
        app.characters.export("wren", tmp_path / out, format)
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("name", ["Wren Ashby", "林黛玉", "x" * 300])
def test_a_drawn_image_is_a_valid_png_for_any_name(monkeypatch, name):
    assert Image.open(io.BytesIO(name_image(name))).size == (400, 600)
    bitmap = ImageFont.load_default_imagefont()  # Pillow without FreeType: Latin-1 only
    monkeypatch.setattr(ImageFont, "load_default", lambda size=None: bitmap)
    assert Image.open(io.BytesIO(name_image(name))).size == (400, 600)


def test_export_from_the_command_line_writes_a_png_that_loads(capsys, config_file, tmp_path):
    cfg = ["--config", str(config_file)]
    assert main(cfg + ["chat", "--message", "/status"]) == 0  # loads the demo character
    out = tmp_path / "wren.png"
    assert main(cfg + ["character", "export", "wren", str(out), "--format", "card-v3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote 34 stories of wren to {out} (card-v3)"
    assert main(cfg + ["character", "load", str(out), "--name", "wren-card"]) == 0
    assert "loaded Wren Ashby (wren-card): 34 stories" in capsys.readouterr().out
    assert main(cfg + ["character", "export", "wren", str(tmp_path / "w.charx"), "--format", "card-v2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "greenroom: w.charx: a .charx file holds a V3 card; use --format card-v3"
    )
