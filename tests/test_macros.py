"""Card macros expand as SillyTavern documents them: one test per macro, then case and spaces,
unknown macros, nesting, stability of pick, dice bounds, time zones, and hostile input in linear time."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from greenroom.core.macros import MacroContext, expand

NOW = datetime(2026, 12, 5, 15, 7, tzinfo=UTC)  # a Saturday


def ctx(
    *,
    user: str = "Mei",
    chat: str = "chat-1",
    now: datetime = NOW,
    idle_seconds: float | None = None,
    rng: random.Random | None = None,
) -> MacroContext:
    """Lao Li's context; a fixed seed unless ``rng`` is given."""
    return MacroContext("Lao Li", user, chat, now, idle_seconds, rng or random.Random(7))


def test_char_and_user() -> None:
    assert expand("{{char}} greets {{user}}.", ctx()) == "Lao Li greets Mei."


@pytest.mark.parametrize("text", ["{{Char}}", "{{CHAR}}", "{{ char }}", "{{\tchar\n}}"])
def test_names_are_case_insensitive_and_tolerate_spaces(text: str) -> None:
    assert expand(text, ctx()) == "Lao Li"


@pytest.mark.parametrize(
    "text", ["{{random::a::b::c}}", "{{random:a,b,c}}", "{{random: a , b,c }}", "{{Random::a::b::c}}"]
)
def test_random_picks_one_option(text: str) -> None:
    seen = {expand(text, ctx(rng=random.Random(seed))) for seed in range(60)}
    assert seen == {"a", "b", "c"}


def test_random_draws_anew_at_each_occurrence() -> None:
    out = expand(" ".join(["{{random::a::b::c::d}}"] * 40), ctx())
    assert len(set(out.split())) > 1


def test_random_without_options_is_empty_and_options_may_be_empty() -> None:
    assert expand("[{{random}}]", ctx()) == "[]"
    seen = {expand("[{{random::x::}}]", ctx(rng=random.Random(seed))) for seed in range(40)}
    assert seen == {"[x]", "[]"}


def test_random_comma_form_reads_an_escaped_comma() -> None:
    assert expand(r"{{random:a\, b}}", ctx()) == "a, b"


def test_pick_is_stable_for_a_chat_and_differs_across_chats() -> None:
    text = "{{pick::a::b::c::d::e}} and {{pick:a,b,c,d,e}}"
    first = expand(text, ctx(rng=random.Random(1)))
    assert all(expand(text, ctx(rng=random.Random(seed))) == first for seed in range(10))
    others = {expand(text, ctx(chat=f"chat-{n}")) for n in range(2, 20)}
    assert others - {first}


def test_pick_depends_on_the_occurrence() -> None:
    assert len(set(expand(" ".join(["{{pick::a::b::c::d}}"] * 12), ctx()).split())) > 1


@pytest.mark.parametrize(
    ("formula", "low", "high"),
    [("d6", 1, 6), ("2d6", 2, 12), ("1d20+3", 4, 23), ("20", 1, 20), ("3D4-2", 1, 10), ("roll 2d6", 2, 12)],
)
def test_roll_totals_stay_in_bounds(formula: str, low: int, high: int) -> None:
    text = "{{" + formula + "}}" if formula.startswith("roll ") else "{{roll:" + formula + "}}"
    rng = random.Random(3)
    totals = {int(expand(text, ctx(rng=rng))) for _ in range(2000)}
    assert min(totals) == low and max(totals) == high


@pytest.mark.parametrize(
    "text", ["{{roll:101d6}}", "{{roll:1d1000001}}", "{{roll:0d6}}", "{{roll:d0}}", "{{roll:lots}}"]
)
def test_absurd_rolls_are_left_as_written(text: str) -> None:
    assert expand(text, ctx()) == text


@pytest.mark.parametrize(
    ("macro", "value"),
    [
        ("{{time}}", "3:07 PM"),
        ("{{date}}", "December 5, 2026"),
        ("{{weekday}}", "Saturday"),
        ("{{isotime}}", "15:07"),
        ("{{isodate}}", "2026-12-05"),
    ],
)
def test_time_and_date(macro: str, value: str) -> None:
    assert expand(macro, ctx()) == value


def test_time_and_date_follow_the_given_zone() -> None:
    late = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    text = "{{isodate}} {{weekday}} {{time}}"
    assert expand(text, ctx(now=late)) == "2026-12-05 Saturday 11:30 PM"
    assert expand(text, ctx(now=late.astimezone(ZoneInfo("Asia/Shanghai")))) == "2026-12-06 Sunday 7:30 AM"
    assert expand("{{time}}", ctx(now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))) == "12:05 AM"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "just now"),
        (0, "a few seconds"),
        (44, "a few seconds"),
        (60, "a minute"),
        (300, "5 minutes"),
        (3600, "an hour"),
        (7200, "2 hours"),
        (86400, "a day"),
        (3 * 86400, "3 days"),
        (35 * 86400, "a month"),
        (90 * 86400, "3 months"),
        (400 * 86400, "a year"),
        (800 * 86400, "2 years"),
    ],
)
def test_idle_duration(seconds: float | None, words: str) -> None:
    assert expand("{{idle_duration}}", ctx(idle_seconds=seconds)) == words


def test_comments_are_removed() -> None:
    assert expand("a{{// note to self about {{char}} }}b", ctx()) == "ab"


def test_trim_removes_the_whitespace_around_it() -> None:
    assert expand("Hello  \n\n{{trim}}\n  world", ctx()) == "Helloworld"
    assert expand("{{ TRIM }}\n x {{trim}}", ctx()) == "x"


def test_newline() -> None:
    assert expand("a{{newline}}b", ctx()) == "a\nb"


def test_original_outside_a_card_system_prompt_is_empty() -> None:
    assert expand("[{{original}}] Be kind.", ctx()) == "[] Be kind."


@pytest.mark.parametrize("text", ["{{foo}}", "{{setvar::x::1}}", "{{ Foo }}", "{{}}", "{{ }}", "}} {{char", "{{{"])
def test_unknown_macros_and_stray_braces_are_left_alone(text: str) -> None:
    assert expand(text, ctx()) == text


def test_nested_macros_expand_innermost_first() -> None:
    seen = {expand("{{random::{{user}}::{{char}}}}!", ctx(rng=random.Random(seed))) for seed in range(30)}
    assert seen == {"Mei!", "Lao Li!"}
    assert expand("{{{{random::char::char}}}}", ctx()) == "Lao Li"
    assert expand("{{setvar::x::{{user}}}}", ctx()) == "{{setvar::x::Mei}}"


def test_what_an_expansion_produces_is_not_expanded_again() -> None:
    assert expand("{{user}}", ctx(user="{{user}}")) == "{{user}}"
    name = "{{user}}" * 8  # a hostile /iam name: it must not multiply itself
    assert expand("{{user}} " * 20, ctx(user=name)) == (name + " ") * 20
    assert expand("{{random::{{user}}::{{user}}}}", ctx(user="{{char}}")) == "{{char}}"


@pytest.mark.parametrize(
    "text",
    [
        "{{" * 500_000,
        "}}" * 500_000,
        "{{a" * 330_000,
        "{{char}}" * 10_000 + "{{roll:100d6}}" * 1000 + "{{random::a::b}}" * 10_000,
        "{{random::" * 100_000 + "x" + "}}" * 100_000,
        "{{ " + " " * 1_000_000,
    ],
)
def test_hostile_input_finishes_fast(text: str) -> None:
    started = time.perf_counter()
    expand(text, ctx())
    assert time.perf_counter() - started < 5
