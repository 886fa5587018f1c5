"""Telegram HTML rendering of the core's light Markdown."""

from greenroom.bots.telegram.html import to_html


def test_escapes_markup_and_keeps_code_and_bold():
    text = "Use **care** with `a<b` & this:\n```python\nif x < 1:\n    pass\n```\ndone <3"
    assert to_html(text) == (
        "Use <b>care</b> with <code>a&lt;b</code> &amp; this:\n"
        '<pre><code class="language-python">if x &lt; 1:\n    pass</code></pre>\ndone &lt;3'
    )


def test_an_unclosed_fence_while_streaming_stays_literal():
    assert to_html("```py\nprint(1) <") == "```py\nprint(1) &lt;"
