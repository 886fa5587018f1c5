"""Prompt assembly: ChatHaruhi 2.0's exact layout, budgets, ordering and post-processing."""

from greenroom.core.prompt import (
    DIVIDER,
    STORY_PREFIX,
    Budgets,
    PastTurn,
    StoryRef,
    build_chat,
    build_haruhi2,
    pack_stories,
    query_string,
    response_postprocess,
    stop_strings,
    strip_wrapper,
)


def chars(text: str) -> int:
    """One token per character keeps the budget arithmetic readable."""
    return len(text)


def story(i: int, text: str) -> StoryRef:
    return StoryRef(f"s{i}", text, len(text), 1.0 - i / 10)


STORIES = [
    story(1, "阿虚:「早」\n春日:「迟到了！」"),
    story(2, "春日:「SOS团成立！」"),
    story(3, "x" * 60),
    story(4, "short"),
]
HISTORY = [PastTurn("阿虚", "你好", "你好啊", "春日:「你好啊」"), PastTurn("阿虚", "在吗", "在", "春日:「在」")]
ROOMY = Budgets(story=1500, history=1200, context=100_000, reply=100)


def test_faithful_mode_reproduces_chatharuhi2_messages_exactly():
    budgets = Budgets(
        story=len(STORY_PREFIX) + 2 * len(DIVIDER) + len(STORIES[0].text) + len(STORIES[1].text),
        history=1200,
        context=100_000,
        reply=100,
    )
    prompt = build_haruhi2("你正在扮演凉宫春日", STORIES, HISTORY, "阿虚", "今天做什么？", budgets, chars)
    assert prompt.messages == [
        {"role": "system", "content": "你正在扮演凉宫春日"},
        {
            "role": "user",
            "content": "Classic scenes for the role are as follows:\n"
            "阿虚:「早」\n春日:「迟到了！」\n###\n春日:「SOS团成立！」\n###\n",
        },
        {"role": "user", "content": "阿虚:「你好」"},
        {"role": "assistant", "content": "春日:「你好啊」"},
        {"role": "user", "content": "阿虚:「在吗」"},
        {"role": "assistant", "content": "春日:「在」"},
        {"role": "user", "content": "阿虚:「今天做什么？」"},
    ]
    assert [s.id for s in prompt.stories] == ["s1", "s2"]
    assert prompt.history_turns == 2
    assert "\n阿虚:" in prompt.stop


def test_story_packing_stops_at_first_story_that_does_not_fit():
    # s3 (60 tokens) does not fit; ChatHaruhi stops there and never skips ahead to the short s4.
    budget = len(STORY_PREFIX) + sum(len(s.text) + len(DIVIDER) for s in STORIES[:2]) + 30
    packed = pack_stories(STORIES, budget, chars, len(STORY_PREFIX))
    assert [s.id for s in packed] == ["s1", "s2"]


def test_history_keeps_the_newest_turns_within_budget():
    newest_cost = len("阿虚:「在吗」") + len("春日:「在」")
    budgets = Budgets(story=0, history=newest_cost, context=100_000, reply=100)
    prompt = build_haruhi2("sys", [], HISTORY, "阿虚", "hi", budgets, chars)
    assert prompt.history_turns == 1
    assert prompt.messages[2:4] == [
        {"role": "user", "content": "阿虚:「在吗」"},
        {"role": "assistant", "content": "春日:「在」"},
    ]


def test_history_longer_than_budget_adds_none_rather_than_all():
    # ChatHaruhi 2.0 sent the whole history here (dialogue_history[-0:]); we send none.
    budgets = Budgets(story=0, history=3, context=100_000, reply=100)
    prompt = build_haruhi2("sys", [], HISTORY, "阿虚", "hi", budgets, chars)
    assert prompt.history_turns == 0
    assert [m["role"] for m in prompt.messages] == ["system", "user", "user"]


def test_stories_are_clamped_to_the_model_context():
    tight = Budgets(story=1500, history=1200, context=len("sys") + len("阿虚:「hi」") + 120 + 16 + 100, reply=100)
    prompt = build_haruhi2("sys", STORIES, [], "阿虚", "hi", tight, chars)
    total = sum(len(m["content"]) for m in prompt.messages)
    assert total + tight.reply <= tight.context


def test_narrator_roles_have_no_brackets():
    assert query_string("旁白", "天黑了") == "旁白:天黑了"
    assert query_string("Tom", "hello") == "Tom:「hello」"


def test_chat_mode_puts_what_stays_first_and_this_turns_scenes_last():
    prompt = build_chat("You are Haruhi.", STORIES[:2], HISTORY, "阿虚", "今天做什么？", ROOMY, chars)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[0]["content"] == "You are Haruhi."  # the same every turn: the cache keeps it
    assert prompt.messages[1]["content"] == "你好"  # history as it was said, without scenes
    assert prompt.messages[2]["content"] == "你好啊"  # displayed replies, without the wrapper
    last = prompt.messages[-1]["content"]
    assert last.startswith(STORY_PREFIX + STORIES[0].text + DIVIDER + STORIES[1].text + DIVIDER)
    assert last.endswith(DIVIDER + "今天做什么？")  # the user's raw words close the prompt, as ChatHaruhi 3.0


def test_chat_mode_follow_up_extends_the_previous_prompt():
    """Only the newest turn and this turn's scenes differ from the last prompt (its scenes aside)."""
    before = build_chat("sys", STORIES[:2], HISTORY[:1], "阿虚", "今天做什么？", ROOMY, chars)
    after = build_chat(
        "sys", STORIES[2:3], [*HISTORY[:1], PastTurn("阿虚", "今天做什么？", "去冒险", "")], "阿虚", "好", ROOMY, chars
    )
    assert after.messages[: len(before.messages) - 1] == before.messages[:-1]
    assert after.messages[-3]["content"] == "今天做什么？"


def test_chat_mode_names_speakers_in_groups():
    prompt = build_chat("sys", [], HISTORY, "Mika", "hello all", ROOMY, chars, group=True)
    assert prompt.messages[-1]["content"] == "Mika: hello all"
    assert prompt.messages[1]["content"] == "阿虚: 你好"


def test_postprocess_keeps_first_speakers_lines():
    raw = "春日:「好！」\n春日:「出发吧」\n阿虚:「等等」\n春日:「不等」"
    assert response_postprocess(raw) == "春日:「好！出发吧」"


def test_postprocess_returns_free_text_unchanged_and_stops_at_stage_directions():
    assert response_postprocess("just words\n春日:「x」") == "just words\n春日:「x」"
    assert response_postprocess("春日:「走」\n春日:「快」(跑)") == "春日:「走」"


def test_wrapper_is_stripped_for_display():
    assert strip_wrapper("春日:「好！出发吧」") == "好！出发吧"
    assert strip_wrapper("Wren: Places, please.", ["Wren"]) == "Places, please."
    assert strip_wrapper("Places, please.", ["Wren"]) == "Places, please."
    assert strip_wrapper("Wren「Places, please.」", ["Wren"]) == "Places, please."


def test_both_modes_stop_at_every_speaker_of_the_prompt():
    history = [*HISTORY, PastTurn("Mika", "hi", "hi", "春日:「hi」")]
    for build in (build_haruhi2, build_chat):
        prompt = build("sys", STORIES[:2], history, "阿虚", "hi", ROOMY, chars)
        assert set(prompt.stop) == set(stop_strings("阿虚", "春日", "Mika")), build  # the user, stories, history
    assert stop_strings("Tom", "Tom", " ") == ["\nTom:", "\nTom：", "\nTom「"]
