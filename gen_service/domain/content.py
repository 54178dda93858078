"""Content checks on every free-text field of a sample (pure).

The schema says a field is a string; these checks say it is writing. Each data type names the
rule of each of its text fields (:class:`TextRule`: a name, a line of dialogue, prose with a
minimum word count); any string field it does not name is prose of at least
:data:`DEFAULT_MIN_WORDS` words. Every problem is ``"code: detail"``, and the codes are:

- ``too_short``: fewer words than the field's minimum;
- ``not_prose``: the text is mostly numbers, ids, dates or dotted tokens ("4.2", "E-1191 ,",
  "derek.johnson.1.12.21"), or one run-on token;
- ``not_a_name``: a name field that is not one to five words of letters;
- ``repetition_loop``: the text repeats itself (repeated word trigrams, a syllable loop like
  "huhdlehdlehdeh", or text that compresses to almost nothing);
- ``stock_phrase``: one of the stock phrases the system prompt tells the model to avoid.

Leakage (a hidden fact showing up where it must not) is a per-type rule built from
:func:`salient_words` and :func:`leaked_share`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_MIN_WORDS = 3

# The stock phrases system.j2 tells the model to avoid; the system template lists them from here
# (the ``stock_phrases`` variable), so the prompt and the check never drift apart.
STOCK_PHRASES: tuple[str, ...] = (
    "a wave of emotion",
    "a whirlwind of emotions",
    "a mix of emotions",
    "i'm here for you",
    "it's going to be okay",
    "everything happens for a reason",
    "time heals all wounds",
    "little did they know",
    "a testament to",
    "sent shivers down",
    "let out a breath they didn't know",
    "at the end of the day",
    "on a journey of",
    "navigate the complexities",
    "delve into",
)


TextKind = Literal["prose", "name", "line"]


@dataclass(frozen=True, slots=True)
class TextRule:
    """How one free-text field is checked: ``kind`` and the fewest words it may have."""

    kind: TextKind = "prose"
    min_words: int = DEFAULT_MIN_WORDS


NAME = TextRule("name", 1)

# A word: letters (any script), inner apostrophes or hyphens, surrounding punctuation allowed.
_WORD_TOKEN_BODY = r"[\"'“‘(\[]*[^\W\d_]+(?:['’\-][^\W\d_]+)*[.,;:!?…\"'”’)\]-]*"
_WORD_TOKEN = re.compile(f"^{_WORD_TOKEN_BODY}$")
_WORD_TOKENS = re.compile(f"(?<!\\S){_WORD_TOKEN_BODY}(?!\\S)")
_NAME_TOKEN = re.compile(r"^[^\W\d_]+(?:['’\-.][^\W\d_]*)*\.?$")
_WORDS = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_INDEX = re.compile(r"\[\d+\]")  # a list index in a field path
_SYLLABLE_LOOP = re.compile(r"([^\W\d_]{2,5})\1{2,}", re.IGNORECASE)
# Inside one long run of letters, a 3-5 letter chunk said twice in a row ("hdlehdle"): no
# English word of 12 letters or more does that, a decoding loop does.
_LONG_RUN_LETTERS = 12
_APOSTROPHE = re.compile("['’]")
_CHUNK_TWICE = re.compile(r"([^\W\d_]{3,5})\1", re.IGNORECASE)
_LONGEST_WORD = 24  # letters; longer tokens are run-ons or noise, not English words
_PROSE_SHARE = 0.7  # at least this share of tokens must be words
_TRIGRAM_REPEAT = 0.3  # above this share of repeated word trigrams, the text loops
_MIN_COMPRESSION = 0.3  # zlib ratio below this on text of 60+ chars: it repeats itself

# ASCII twins of the patterns above, used on ASCII text (nearly all of it), where they find
# exactly what the Unicode ones find, faster: a letter is then [A-Za-z], and the ASCII
# characters the Unicode \s matches are [ \t\n\r\f\v] and \x1c-\x1f.
_SPACE_ASCII = r"\s\x1c-\x1f"
_WORD_TOKENS_ASCII = re.compile(
    f"(?<![^{_SPACE_ASCII}]){_WORD_TOKEN_BODY}(?![^{_SPACE_ASCII}])", re.ASCII
)
_WORDS_ASCII = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.ASCII)
# On lowercased ASCII letters a case-sensitive search finds where the case-blind one does.
_SYLLABLE_LOOP_LOWER = re.compile(r"([a-z]{2,5})\1{2,}")
_CHUNK_TWICE_LOWER = re.compile(r"([a-z]{3,5})\1")

_STOPWORD_TEXT = """
a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each even ever every few for from further get gets got had
hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him
himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its itself
just know let let's like made make many may me might more most much must mustn't my myself
never no nor not now of off on once one only or other ought our ours ourselves out over own
really said same say says she she'd she'll she's should shouldn't so some still such than
that that's the their theirs them themselves then there there's these they they'd they'll
they're they've this those though through to too under until up upon us very was wasn't way
we we'd we'll we're we've well were weren't what what's when when's where where's whether
which while who who's whom why why's will with without won't would wouldn't yet you you'd
you'll you're you've your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def words_of(text: str) -> list[str]:
    """The words of ``text``, lowercased, curly apostrophes straightened."""
    return _folded(_WORDS.findall(text))


def _folded(found: list[str]) -> list[str]:
    """:func:`words_of` for the words ``_WORDS`` found."""
    if not found:
        return []
    # Case folding maps each character on its own, so folding the words joined by a NUL (which
    # no word holds and which folds to itself) and splitting again folds each word.
    return "\0".join(found).casefold().replace("’", "'").split("\0")


def salient_words(text: str, *, ignore: frozenset[str] = frozenset()) -> set[str]:
    """Content words of ``text``: four letters or more, not stopwords, not in ``ignore``."""
    return {w for w in words_of(text) if len(w) >= 4 and w not in STOPWORDS and w not in ignore}


def leaked_share(secret: set[str], text: str) -> float:
    """The share of ``secret``'s words that appear in ``text`` (0 when there are none)."""
    if not secret:
        return 0.0
    present = set(words_of(text))
    return len(secret & present) / len(secret)


def text_problems(path: str, text: str, rule: TextRule) -> list[str]:
    """The content problems of one free-text field (empty: it reads as writing)."""
    stripped = text.strip()
    if not stripped:
        return []  # empty strings are the placeholder check's finding
    if rule.kind == "name":
        tokens = stripped.split()
        if not 1 <= len(tokens) <= 5 or not all(_NAME_TOKEN.match(t) for t in tokens):
            return [f"not_a_name: {path} is not a name ({stripped[:40]!r})"]
        return []
    problems = _word_problems(path, stripped, rule)
    loop = _loop(stripped)
    if loop:
        problems.append(f"repetition_loop: {path} {loop}")
    problems.extend(_stock_problems(path, stripped))
    return problems


def _word_problems(path: str, stripped: str, rule: TextRule) -> list[str]:
    """``not_prose`` or ``too_short`` of a stripped prose field."""
    tokens = stripped.split()
    # The tokens that are words, found in one pass: a whitespace-delimited stretch that the
    # word pattern matches whole (it matches no whitespace), as _WORD_TOKEN does per token.
    word_tokens = (_WORD_TOKENS_ASCII if stripped.isascii() else _WORD_TOKENS).findall(stripped)
    if (
        not word_tokens
        or len(word_tokens) / len(tokens) < _PROSE_SHARE
        or max(map(len, word_tokens)) > _LONGEST_WORD
    ):
        return [f"not_prose: {path} is not words ({stripped[:40]!r})"]
    if len(word_tokens) < rule.min_words:
        return [
            f"too_short: {path} has {len(word_tokens)} word"
            f"{'s' if len(word_tokens) != 1 else ''}, fewer than {rule.min_words}"
        ]
    return []


def _stock_problems(path: str, stripped: str) -> list[str]:
    """The first stock phrase (in list order) a stripped prose field uses, if any."""
    lowered = stripped.casefold().replace("’", "'")
    for phrase in STOCK_PHRASES:
        if phrase in lowered:
            return [f"stock_phrase: {path} uses the stock phrase {phrase!r}"]
    return []


def _uses_stock_phrase(lowered: str) -> bool:
    """Whether casefolded text holds any stock phrase (substring searches run in C, faster
    than one regular expression of all of them)."""
    return any(phrase in lowered for phrase in STOCK_PHRASES)


def _runs(found: list[str]) -> list[str]:
    """The maximal runs of 6+ letters in a text, in order, from its words (``_WORDS``): a
    word is maximal letter runs joined by single apostrophes."""
    return [
        run
        for word in found
        if len(word) >= 6
        for run in (_APOSTROPHE.split(word) if "'" in word or "’" in word else (word,))
        if len(run) >= 6
    ]


def _loop(text: str) -> str:
    """Why ``text`` repeats itself, or "" when it does not."""
    found = (_WORDS_ASCII if text.isascii() else _WORDS).findall(text)
    return _loop_of(text, found, _runs(found), syllables=True, chunks=True)


def _loop_of(text: str, found: list[str], runs: list[str], *, syllables: bool, chunks: bool) -> str:
    """:func:`_loop` from the text's words and letter runs; ``syllables``/``chunks`` False:
    a search over this text's runs is known to find nothing."""
    # A syllable loop is letters only (a backreference matches a letter's case variants,
    # which are letters), at least 6 of them: it lies inside one maximal run of 6+ letters,
    # and searching the runs in order finds what searching the text finds. One search over
    # the runs joined by a space, which no match can cross: the first match is the first
    # run's that has one.
    if syllables and runs:
        match = _SYLLABLE_LOOP.search(" ".join(runs))
        if match is not None:
            return f"loops on {match.group(1)!r}"
    if chunks and runs:
        long_runs = " ".join(run for run in runs if len(run) >= _LONG_RUN_LETTERS)
        chunk = _CHUNK_TWICE.search(long_runs) if long_runs else None
        if chunk is not None:
            return f"loops on {chunk.group(1)!r}"
    # A trigram that repeats an earlier one starts with a word that repeats an earlier one,
    # so there are no more repeated trigrams than repeated words: few of those, no loop.
    if len(found) >= 9:
        seq = _folded(found)
        if (len(seq) - len(set(seq))) / (len(seq) - 2) > _TRIGRAM_REPEAT:
            trigrams = list(zip(seq, seq[1:], seq[2:], strict=False))
            repeated = len(trigrams) - len(set(trigrams))
            if repeated / len(trigrams) > _TRIGRAM_REPEAT:
                return f"repeats {repeated} of its {len(trigrams)} word trigrams"
    if len(text) >= 60:
        raw = text.encode("utf-8")
        if len(zlib.compress(raw, 6)) / len(raw) < _MIN_COMPRESSION:
            return "repeats itself (it compresses to almost nothing)"
    return ""


def value_at(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a payload (None when any step is missing)."""
    node: Any = payload
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def string_fields(value: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(path, rule key, text) for every string in a dumped sample; the rule key drops list
    indexes (``dialogue[2]`` has the key ``dialogue[]``)."""
    if isinstance(value, str):
        yield path, _INDEX.sub("[]", path), value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from string_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from string_fields(item, f"{path}[{index}]")


def string_leaves(value: Any) -> list[tuple[str, str, str]]:
    """``list(string_fields(value))``, in one walk that builds each rule key beside its path
    (an index adds ``[]``) instead of rewriting every path: what the checks of one sample
    share."""
    leaves: list[tuple[str, str, str]] = []
    _walk(value, "", "", leaves)
    return leaves


def _walk(value: Any, path: str, key: str, leaves: list[tuple[str, str, str]]) -> None:
    if isinstance(value, str):
        leaves.append((path, key, value))
    elif isinstance(value, dict | Mapping):  # dict first: a dump holds dicts, checked fast
        for name, item in value.items():
            name = str(name)
            named = _INDEX.sub("[]", name) if "[" in name else name
            _walk(
                item,
                f"{path}.{name}" if path else name,
                f"{key}.{named}" if path else named,
                leaves,
            )
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", f"{key}[]", leaves)


def content_problems(
    payload: Mapping[str, Any],
    rules: Mapping[str, TextRule],
    leaves: list[tuple[str, str, str]] | None = None,
) -> list[str]:
    """Content problems of the free-text fields of a dumped sample: ``rules`` maps each free-text
    field's rule key (see :func:`string_fields`) to its rule; other strings (enum values,
    derived labels) are not checked. ``leaves`` is :func:`string_leaves` of the payload when
    the caller has it. The same problems, in the same order, as :func:`text_problems` on each
    field in turn; the searches that rarely find anything (syllable loops, stock phrases) run
    once over all the fields, and field by field only when that finds something."""
    if leaves is None:
        leaves = string_leaves(payload)
    fields = [
        (path, text, rule) for path, key, text in leaves if (rule := rules.get(key)) is not None
    ]
    if not fields:
        return []
    found: list[list[str]] = []
    prose: list[tuple[int, str, str, list[str]]] = []  # (field, path, stripped, its problems)
    per_field: list[list[str]] = []
    for path, text, rule in fields:
        problems: list[str] = []
        per_field.append(problems)
        stripped = text.strip()
        if not stripped:
            continue
        if rule.kind == "name":
            problems.extend(text_problems(path, stripped, rule))
            continue
        problems.extend(_word_problems(path, stripped, rule))
        prose.append((len(per_field) - 1, path, stripped, problems))
        found.append((_WORDS_ASCII if stripped.isascii() else _WORDS).findall(stripped))
    runs = [_runs(words) for words in found]
    syllables = _finds(_SYLLABLE_LOOP, _SYLLABLE_LOOP_LOWER, "\n".join(" ".join(r) for r in runs))
    long_runs = "\n".join(" ".join(x for x in r if len(x) >= _LONG_RUN_LETTERS) for r in runs)
    chunks = _finds(_CHUNK_TWICE, _CHUNK_TWICE_LOWER, long_runs)
    for (_, path, stripped, problems), words, field_runs in zip(prose, found, runs, strict=True):
        loop = _loop_of(stripped, words, field_runs, syllables=syllables, chunks=chunks)
        if loop:
            problems.append(f"repetition_loop: {path} {loop}")
    if prose and _uses_stock_phrase(
        "\n".join(stripped for _, _, stripped, _ in prose).casefold().replace("’", "'")
    ):
        for _, path, stripped, problems in prose:
            problems.extend(_stock_problems(path, stripped))
    return [problem for problems in per_field for problem in problems]


def _finds(pattern: re.Pattern[str], lower: re.Pattern[str], letters: str) -> bool:
    """Whether the case-blind letter pattern ``pattern`` finds anything in ``letters`` (letter
    runs and separators), by its lowercase twin when the text is ASCII."""
    if not letters:
        return False
    if letters.isascii():
        return lower.search(letters.lower()) is not None
    return pattern.search(letters) is not None


def free_text_keys(schema: Mapping[str, Any]) -> list[str]:
    """The rule keys of every free-text string in a JSON schema (pydantic's, ``$ref``s
    allowed): strings without ``enum`` or ``const``, in schema order."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    keys: list[str] = []

    def walk(node: Mapping[str, Any], path: str) -> None:
        ref = node.get("$ref")
        if isinstance(ref, str):
            node = {**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        kind = node.get("type")
        if kind == "string" and "enum" not in node and "const" not in node:
            keys.append(path)
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}" if path else name)
        items = node.get("items")
        if isinstance(items, Mapping):
            walk(items, f"{path}[]")

    walk(schema, "")
    return keys


def text_rules(schema: Mapping[str, Any], overrides: Mapping[str, TextRule]) -> dict[str, TextRule]:
    """Every free-text field of ``schema`` with its rule: the override, else prose of
    :data:`DEFAULT_MIN_WORDS` words. Raises KeyError for an override of no such field."""
    keys = free_text_keys(schema)
    unknown = set(overrides) - set(keys)
    if unknown:
        raise KeyError(f"no free-text field {sorted(unknown)}; fields: {', '.join(keys)}")
    return {key: overrides.get(key, TextRule()) for key in keys}
