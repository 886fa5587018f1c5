"""The core's light Markdown as Telegram HTML: code fences, inline code and bold; the rest escaped."""

from __future__ import annotations

import html
import re

FENCE = re.compile(r"```([\w+-]*)\n?(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`|\*\*([^*\n]+)\*\*")


def _inline(text: str) -> str:
    out, at = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[at : m.start()], quote=False))
        code, bold = m.groups()
        out.append(
            f"<code>{html.escape(code, quote=False)}</code>"
            if code is not None
            else f"<b>{html.escape(bold, quote=False)}</b>"
        )
        at = m.end()
    out.append(html.escape(text[at:], quote=False))
    return "".join(out)


def to_html(text: str) -> str:
    """Telegram HTML for ``text``; an unclosed fence (a reply still streaming) stays literal."""
    out, at = [], 0
    for m in FENCE.finditer(text):
        out.append(_inline(text[at : m.start()]))
        lang, body = m.groups()
        attr = f' class="language-{lang}"' if lang else ""
        out.append(f"<pre><code{attr}>{html.escape(body.rstrip(chr(10)), quote=False)}</code></pre>")
        at = m.end()
    out.append(_inline(text[at:]))
    return "".join(out)
