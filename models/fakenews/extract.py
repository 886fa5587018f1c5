"""Title and main text of an article page: trafilatura, then readability-lxml, then the page's
OpenGraph description. Fetched HTML is only ever parsed here, never rendered."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import lxml.html
from lxml.etree import ParserError

from greenroom.errors import UserError
from greenroom.models.fakenews.fetch import Fetched

log = logging.getLogger(__name__)

MIN_TEXT = 200  # characters: less than this is a teaser, a login wall or an index page, not an article
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.I)
NOT_AN_ARTICLE = "could not read an article here"


class ExtractError(UserError):
    """A page without a readable article."""


@dataclass(frozen=True)
class Article:
    title: str
    text: str
    url: str = ""
    method: str = ""  # which extractor found it


def decode(body: bytes, charset: str | None) -> str:
    """The page as text: the header's charset, then a <meta charset>, then detection."""
    from charset_normalizer import from_bytes

    for name in (charset, _meta_charset(body)):
        if name:
            try:
                return body.decode(name, errors="replace")
            except LookupError:  # an unknown charset name
                continue
    best = from_bytes(body[:200_000]).best()
    return body.decode(best.encoding if best else "utf-8", errors="replace")


def _meta_charset(body: bytes) -> str | None:
    found = META_CHARSET.search(body[:4096])
    return found.group(1).decode("ascii") if found else None


def extract(fetched: Fetched) -> Article:
    """The article on a fetched page, or ExtractError."""
    text = decode(fetched.body, fetched.charset)
    if fetched.content_type == "text/plain":
        body = text.strip()
        if len(body) < MIN_TEXT:
            raise ExtractError(NOT_AN_ARTICLE + " (the page is too short)")
        return Article(body.splitlines()[0][:200], body, fetched.url, "plain text")
    return extract_html(text, fetched.url)


def extract_html(html: str, url: str = "") -> Article:
    if not html.strip():
        raise ExtractError(NOT_AN_ARTICLE + " (the page is empty)")
    for method in (_trafilatura, _readability, _opengraph):
        try:
            found = method(html, url)
        except Exception as e:  # a broken page must not stop the next extractor
            log.info("%s could not parse %s: %s", method.__name__.strip("_"), url, e)
            continue
        if found and len(found.text) >= MIN_TEXT:
            return found
    raise ExtractError(NOT_AN_ARTICLE)


def _trafilatura(html: str, url: str) -> Article | None:
    """Main text from trafilatura; the title from the page's own metadata (trafilatura's full
    metadata pass, dates included, costs five times the text extraction)."""
    import trafilatura
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return None
    title = _title(tree)
    text = trafilatura.extract(tree, url=url or None, include_comments=False, include_tables=False)
    return Article(title, (text or "").strip(), url, "trafilatura") if text else None


def _title(tree) -> str:
    """og:title or twitter:title, else the first <h1>, else <title> without a " | Site" suffix."""
    for name in ("og:title", "twitter:title"):
        found = tree.xpath(f"//meta[@property='{name}' or @name='{name}']/@content")
        if found and found[0].strip():
            return " ".join(found[0].split())
    for path in ("//h1", "//title"):
        found = tree.xpath(path)
        if found:
            text = " ".join(found[0].text_content().split())
            if text:
                return max(re.split(r" [|–—-] ", text), key=len) if path == "//title" else text
    return ""


def _readability(html: str, url: str) -> Article | None:
    from readability import Document

    document = Document(html)
    summary = lxml.html.fromstring(document.summary(html_partial=True))
    blocks = [" ".join(b.text_content().split()) for b in summary.iter("p", "h1", "h2", "h3", "li", "blockquote")]
    text = "\n".join(b for b in blocks if b) or " ".join(summary.text_content().split())
    return Article(document.short_title().strip(), text, url, "readability")


def _opengraph(html: str, url: str) -> Article | None:
    try:
        tree = lxml.html.fromstring(html)
    except ParserError:
        return None
    meta = {
        (m.get("property") or m.get("name") or "").lower(): (m.get("content") or "").strip() for m in tree.iter("meta")
    }
    title = meta.get("og:title") or (tree.findtext(".//title") or "").strip()
    text = meta.get("og:description") or meta.get("description") or ""
    return Article(title, text, url, "og:description")
