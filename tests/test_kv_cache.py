"""Follow-ups reuse llama.cpp's cache: the real SmolLM2, prompts laid out as chat mode lays them."""

import pytest

from greenroom.models.llm import Generation, LlamaCppLLM, Sampling

SYSTEM = "You are Wren Ashby, stage manager of the Alder Street Theatre: dry, kind, practical."
SCENES_1 = (
    "Classic scenes for the role are as follows:\n" + "Tom:「Where's the light?」\nWren:「Centre stage.」\n###\n" * 6
)
SCENES_2 = "Classic scenes for the role are as follows:\n" + "Ann:「Is the tea cold?」\nWren:「Always.」\n###\n" * 6
GREEDY = Sampling(max_tokens=24, temperature=0.0)


def empty(llm: LlamaCppLLM) -> None:
    """A context with nothing cached and no conversation kept."""
    llm.llama.reset()
    llm.cache.saved.clear()
    llm.cache.current = ""


@pytest.fixture(autouse=True)
def fresh(llm):
    empty(llm)
    yield
    empty(llm)


def turn(llm: LlamaCppLLM, messages: list[dict[str, str]], conversation: str) -> tuple[str, Generation]:
    gen = Generation(conversation=conversation)
    return "".join(llm.stream(messages, GREEDY, gen)), gen


def first_and_follow_up(llm: LlamaCppLLM, conversation: str) -> list[dict[str, str]]:
    """Turn one with its scenes; turn two as chat mode builds it (turn one's scenes gone, new ones)."""
    question = "Why do you leave that light on at night?"
    system = {"role": "system", "content": SYSTEM}
    reply, _ = turn(llm, [system, {"role": "user", "content": SCENES_1 + question}], conversation)
    follow_up = [
        system,
        {"role": "user", "content": question},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": SCENES_2 + "And the tea?"},
    ]
    return follow_up


def tokens_through_last_reply(llm: LlamaCppLLM, follow_up: list[dict[str, str]]) -> int:
    """Prompt tokens up to the end of the previous reply: what a follow-up should not pay for again
    (less a few: the reply's last token was sampled, never evaluated)."""
    return len(llm.prompt_tokens(follow_up[:3])[0]) - 3


def test_follow_up_evaluates_only_the_new_scenes_and_message(llm):
    follow_up = first_and_follow_up(llm, "kv:a")
    _, gen = turn(llm, follow_up, "kv:a")
    # the previous scenes sat between the history and the previous reply; the reply's cache is moved back
    assert gen.cached_tokens >= tokens_through_last_reply(llm, follow_up)
    assert gen.cached_tokens < gen.prompt_tokens


def test_each_conversation_keeps_its_cache_while_another_talks(llm):
    follow_up = first_and_follow_up(llm, "kv:b")
    turn(llm, [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Ahoy?"}], "kv:other")
    reply, gen = turn(llm, follow_up, "kv:b")
    assert gen.cached_tokens >= tokens_through_last_reply(llm, follow_up)
    empty(llm)
    first_and_follow_up(llm, "kv:b")
    undisturbed, same = turn(llm, follow_up, "kv:b")
    assert (reply, gen.cached_tokens) == (undisturbed, same.cached_tokens)  # as if the pirate never spoke


def test_without_room_for_other_conversations_only_the_shared_prefix_is_reused(llm):
    cap, llm.cache.cap = llm.cache.cap, 0
    try:
        follow_up = first_and_follow_up(llm, "kv:c")
        turn(llm, [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Ahoy?"}], "kv:d")
        _, gen = turn(llm, follow_up, "kv:c")
        assert gen.cached_tokens < tokens_through_last_reply(llm, follow_up) // 2
    finally:
        llm.cache.cap = cap


def test_least_recently_used_conversations_leave_first(llm):
    system = {"role": "system", "content": SYSTEM}
    for name in ("kv:1", "kv:2", "kv:3"):
        turn(llm, [system, {"role": "user", "content": f"Hello from {name}"}], name)
    one_state = max(len(s.state) for s in llm.cache.saved.values())
    cap, llm.cache.cap = llm.cache.cap, int(one_state * 1.5)
    try:
        turn(llm, [system, {"role": "user", "content": "Hello from kv:4"}], "kv:4")
        assert list(llm.cache.saved) == ["kv:3"]  # kv:1 and kv:2 left; kv:4 is the one in the context
        assert llm.cache.saved_bytes <= llm.cache.cap
    finally:
        llm.cache.cap = cap
