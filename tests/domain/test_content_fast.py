"""The checks' fast paths against the versions they replaced: the same problems for every
text. ``reference_text_problems`` and ``reference_placeholder_problems`` are the earlier
implementations, kept here as the spec."""

from __future__ import annotations

import re
import zlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gen_service.domain import content as C
from gen_service.domain.datatypes._base import (
    _PLACEHOLDER_PATTERNS,
    _PLACEHOLDER_STRINGS,
    placeholder_problems_of,
)

LETTER_RUN = re.compile(r"[^\W\d_]{6,}")
ANY_STOCK_PHRASE = re.compile("|".join(re.escape(p) for p in C.STOCK_PHRASES))


def reference_text_problems(path: str, text: str, rule: C.TextRule) -> list[str]:
    """The content problems of one free-text field (empty: it reads as writing)."""
    stripped = text.strip()
    if not stripped:
        return []  # empty strings are the placeholder check's finding
    tokens = stripped.split()
    if rule.kind == "name":
        if not 1 <= len(tokens) <= 5 or not all(C._NAME_TOKEN.match(t) for t in tokens):
            return [f"not_a_name: {path} is not a name ({stripped[:40]!r})"]
        return []
    # The tokens that are words, found in one pass: a whitespace-delimited stretch that the
    # word pattern matches whole (it matches no whitespace), as _WORD_TOKEN does per token.
    word_tokens = C._WORD_TOKENS.findall(stripped)
    problems: list[str] = []
    if (
        not word_tokens
        or len(word_tokens) / len(tokens) < C._PROSE_SHARE
        or any(len(t) > C._LONGEST_WORD for t in word_tokens)
    ):
        problems.append(f"not_prose: {path} is not words ({stripped[:40]!r})")
    elif len(word_tokens) < rule.min_words:
        problems.append(
            f"too_short: {path} has {len(word_tokens)} word"
            f"{'s' if len(word_tokens) != 1 else ''}, fewer than {rule.min_words}"
        )
    loop = reference_loop(stripped)
    if loop:
        problems.append(f"repetition_loop: {path} {loop}")
    lowered = stripped.casefold().replace("’", "'")
    if ANY_STOCK_PHRASE.search(lowered):  # one pass; then the first phrase in list order
        for phrase in C.STOCK_PHRASES:
            if phrase in lowered:
                problems.append(f"stock_phrase: {path} uses the stock phrase {phrase!r}")
                break
    return problems


def reference_loop(text: str) -> str:
    """Why ``text`` repeats itself, or "" when it does not."""
    # A syllable loop is letters only (a backreference matches a letter's case variants,
    # which are letters), at least 6 of them: it lies inside one run of 6+ letters, and
    # searching the runs in order finds what searching the text finds. Runs of 12+ are the
    # long runs.
    runs = LETTER_RUN.findall(text)
    for run in runs:
        match = C._SYLLABLE_LOOP.search(run)
        if match is not None:
            return f"loops on {match.group(1)!r}"
    for run in runs:
        if len(run) < C._LONG_RUN_LETTERS:
            continue
        chunk = C._CHUNK_TWICE.search(run)
        if chunk is not None:
            return f"loops on {chunk.group(1)!r}"
    seq = C.words_of(text)
    # A trigram that repeats an earlier one starts with a word that repeats an earlier one,
    # so there are no more repeated trigrams than repeated words: few of those, no loop.
    if len(seq) >= 9 and (len(seq) - len(set(seq))) / (len(seq) - 2) > C._TRIGRAM_REPEAT:
        trigrams = list(zip(seq, seq[1:], seq[2:], strict=False))
        repeated = len(trigrams) - len(set(trigrams))
        if repeated / len(trigrams) > C._TRIGRAM_REPEAT:
            return f"repeats {repeated} of its {len(trigrams)} word trigrams"
    if len(text) >= 60:
        raw = text.encode("utf-8")
        if len(zlib.compress(raw, 6)) / len(raw) < C._MIN_COMPRESSION:
            return "repeats itself (it compresses to almost nothing)"
    return ""


# Letters (some accented, some not Latin), both apostrophes, hyphens, digits, dots, underscores,
# spaces and newlines, and chunks that repeat, to reach every branch.
PIECES = st.sampled_from(
    [
        "a",
        "e",
        "the",
        "hdle",
        "huh",
        "dle",
        "ab",
        "ababab",
        "Ab",
        "ÅÉ",
        "ßẞ",
        "ǅ",
        "ﬁ",
        "дом",
        "'",
        "’",
        "''",
        "-",
        ".",
        ",",
        "_",
        "4",
        "1191",
        " ",
        " ",
        "  ",
        "\n",
        "\t",
        "E-",
        "I am fine ",
        "she felt a wave of emotion",
        "delve into",
        "I’m here for you",
        "zzzzzzzzzzzz",
        "Tomás",
        "O'Neill",
        "rock’n’roll",
        "well-known",
        "…",
        "\u00a0",
    ]
)
# ASCII only, where the ASCII twins of the patterns run: the control characters Unicode calls
# whitespace (\x1c-\x1f) and those it does not, mixed case, and loops.
ASCII_PIECES = st.sampled_from(
    [
        "a",
        "the",
        "hdle",
        "HDLE",
        "huh",
        "Ab",
        "ab",
        "abcabc",
        "'",
        "-",
        ".",
        ",",
        "_",
        "4",
        " ",
        "\n",
        "\t",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x1f",
        "\x00",
        "\x7f",
        '"',
        "(",
        "]",
        "I am fine ",
        "she felt A Wave of emotion",
        "Delve into",
        "zzzzzzzzzzzz",
        "O'Neill",
        "well-known",
    ]
)
TEXTS = st.one_of(
    st.lists(PIECES, max_size=60).map("".join),
    st.lists(ASCII_PIECES, max_size=60).map("".join),
)
RULES = st.sampled_from([C.TextRule(), C.TextRule("line", 3), C.TextRule("prose", 8), C.NAME])


@settings(max_examples=3000, deadline=None)
@given(TEXTS, RULES)
@example("She whispered huhdlehdlehdehdlehdleh and turned back to the sink.", C.TextRule())
@example("O’Neillhdlehdle'abcdefabcdef rock'n'rollrollroll", C.TextRule())
@example("I am fine I am fine I am fine I am fine I am fine", C.TextRule())
@example("x " * 40, C.TextRule())
def test_the_fast_content_check_finds_what_the_earlier_one_found(
    text: str, rule: C.TextRule
) -> None:
    assert C.text_problems("f", text, rule) == reference_text_problems("f", text, rule)


PAYLOAD_RULES = {
    "scene": C.TextRule(),
    "lines[]": C.TextRule("line", 3),
    "inner.why": C.TextRule("prose", 8),
    "inner.name": C.NAME,
}


@settings(max_examples=1500, deadline=None)
@given(TEXTS, st.lists(TEXTS, max_size=4), TEXTS, TEXTS, TEXTS)
@example(
    "She felt a wave of emotion.",
    ["huhdlehdlehdeh and more", "I'm here for you, okay?"],
    "abcabcabcabcabcabc",
    "Ada",
    "delve into",
)
def test_a_sample_s_content_problems_are_each_field_s_in_order(
    scene: str, lines: list[str], why: str, name: str, unruled: str
) -> None:
    """content_problems, which searches all the fields at once first, gives what
    text_problems gives field by field, in field order."""
    payload = {
        "scene": scene,
        "lines": lines,
        "inner": {"why": why, "name": name},
        "label": unruled,  # no rule: not checked
    }
    expected = [
        problem
        for path, key, text in C.string_fields(payload)
        if key in PAYLOAD_RULES
        for problem in reference_text_problems(path, text, PAYLOAD_RULES[key])
    ]
    assert C.content_problems(payload, PAYLOAD_RULES) == expected


def reference_placeholder_problems(payload: object) -> list[str]:
    """The placeholder check as it was: every string searched on its own."""
    problems: list[str] = []
    for path, _, text in C.string_fields(payload):
        stripped = text.strip()
        if not stripped:
            problems.append(f"empty_string: {path} is empty")
            continue
        if not re.search(r"\w", stripped):
            problems.append(f"placeholder: {path} is only punctuation ({stripped[:20]!r})")
            continue
        if stripped.lower().rstrip(".!?:;,").strip() in _PLACEHOLDER_STRINGS:
            problems.append(f"placeholder: {path} is a placeholder ({stripped[:20]!r})")
            continue
        for pattern, what in _PLACEHOLDER_PATTERNS:
            if pattern.search(stripped):
                problems.append(f"placeholder: {path} holds {what}")
                break
    return problems


# Stand-ins, their parts, and the characters case-blind matching treats specially.
PLACEHOLDER_PIECES = st.sampled_from(
    [
        "lorem ipsum",
        "Lorem",
        " ipsum",
        "[insert",
        "[ Name ]",
        "[",
        "]",
        "<",
        ">",
        "<your name>",
        "{{",
        "}}",
        "{{x}}",
        "TODO",
        "TBD",
        "FIXME",
        "todo",
        "n/a",
        "tbd",
        "xxx",
        "K",
        "ſ",
        "ı",
        "İ",
        "a",
        "x",
        "word",
        " ",
        "\n",
        ".",
        "!",
        "_",
        "…",
    ]
)
PLACEHOLDER_TEXTS = st.lists(PLACEHOLDER_PIECES, max_size=12).map("".join)


@settings(max_examples=2000, deadline=None)
@given(st.lists(PLACEHOLDER_TEXTS, max_size=5), PLACEHOLDER_TEXTS, PLACEHOLDER_TEXTS)
@example(["word [", "name] word"], "lorem", "ipsum")  # a stand-in across two strings: none
@example(["fine"], "see [insert name here]", "TODO.")
def test_the_placeholder_check_finds_what_the_per_string_one_found(
    lines: list[str], scene: str, label: str
) -> None:
    """One search over all the strings first, then string by string only when it finds
    something: the same problems, in order, as searching every string."""
    payload = {"scene": scene, "lines": lines, "inner": {"label": label, "n": 3}}
    assert placeholder_problems_of(payload) == reference_placeholder_problems(payload)


KEYS = st.sampled_from(["a", "b", "x[1]", "[2]", "5]", "[", "a.b", "é"])
JSON_VALUES = st.recursive(
    st.one_of(st.text(max_size=3), st.integers(), st.none(), st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None)
@given(JSON_VALUES)
@example({"x[1]": [{"5]": "a"}, "b"], "[": {"[2]": ["c"]}})
def test_the_one_walk_finds_every_string_with_its_path_and_key(value: object) -> None:
    """string_leaves, which builds each rule key beside its path, says what string_fields
    says (the key rewritten from the whole path)."""
    assert C.string_leaves(value) == list(C.string_fields(value))
