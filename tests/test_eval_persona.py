"""The persona evaluation's measures (`tests/bench/eval_persona.py`) flag the problems users saw, and
only those: the examples are the issue's own replies and their good counterparts."""

from greenroom.memory.characters import load_chatharuhi_folder
from tests.bench.eval_persona import (
    QUESTIONS,
    ROOT,
    has_repetition,
    has_wrapper,
    is_cut_off,
    is_echo,
    language_share,
    reuses_script,
    script_lines,
    subjects,
)

LAOLI = ROOT / "tests" / "eval" / "characters" / "laoli"


def test_echo_is_a_reply_that_restates_the_message():
    asked = "老李，你这辈子最佩服的人是谁？"
    assert is_echo("老李，你这辈子最佩服的人是马上。", asked)
    assert is_echo("Why is your tea always cold? Why indeed.", "Why is your tea always cold?")
    assert not is_echo("老班长赵铁柱。我这条命都是他的。", asked)
    assert not is_echo("我这辈子最佩服老班长。", asked)  # an answer in the question's words is no copy
    assert not is_echo("Hi!", "Hi!")  # too short to count


def test_wrapper_is_a_script_line_format_in_the_reply():
    assert has_wrapper("Sheldon:「Bazinga.」", ())
    assert has_wrapper("Fine.\n春日：「走吧！」", ())
    assert has_wrapper("Wren: Places, please.", ("Wren",))
    assert not has_wrapper("Places, please. The bible says so: no whistling.", ("Wren",))


def test_cut_off_is_a_reply_without_its_sentence_end():
    assert is_cut_off("…and I have to make", hit_limit=True)
    assert is_cut_off("1. Paint the set.\n2. Hang the lights.\n3.", hit_limit=True)
    assert is_cut_off("The tea is cold, the cue is late, and…", hit_limit=True)  # cleanup's marker
    assert is_cut_off("", hit_limit=False)
    assert not is_cut_off("Places in thirty, love.", hit_limit=True)
    assert not is_cut_off("「我这条命都是他的。」", hit_limit=False)
    assert not is_cut_off("Well…", hit_limit=False)


def test_repetition_is_a_clause_or_a_long_run_said_twice():
    assert has_repetition("我挺高兴的，我挺高兴的，我挺高兴的。")
    assert has_repetition("The show goes on and on and on and on and on and on and on and on and on.")
    assert not has_repetition("No. No. Put the kettle on, love.")
    assert not has_repetition("人活一口气，枪响一条心。哭完了洗把脸，明天接着干。")


def test_language_share_counts_the_script_of_the_letters():
    assert language_share("我们明天去爬山。", "zh") == 1.0
    assert language_share("SOS团这个周末开会！", "zh") == 14 / 17  # a CJK character weighs two letters
    assert language_share("Mind the cables.", "en") == 1.0
    assert language_share("；；；；", "zh") == 0.0  # no letters: not Chinese


def test_script_reuse_finds_a_line_of_the_script_in_the_reply():
    lines = script_lines(load_chatharuhi_folder(LAOLI))
    assert reuses_script("娃，人活一口气，枪响一条心。别怕！", lines)
    assert reuses_script("那天他一把把我按在身底下，救了我。", lines)  # ten characters of a longer line
    assert not reuses_script("我这条命都是他的，我最佩服老班长。", lines)  # eight characters: could be anyone's
    assert not reuses_script("放下！", lines)  # too short to tell a quote from a word


def test_every_character_has_its_questions_in_its_language():
    for subject in subjects(questions=5):
        assert len(subject.questions) == 5, subject.character.id
        assert all(language_share(q, subject.language) >= 0.8 for q in subject.questions), subject.character.id
        assert not any(reuses_script(q, subject.lines) for q in subject.questions)  # held out
    assert QUESTIONS.is_file()
