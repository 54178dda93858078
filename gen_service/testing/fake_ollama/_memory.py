"""What the fake generated, remembered so that its judge can recognise it.

Every item of a chat answer's top-level ``samples`` array is kept, as compact JSON text, in a
bounded LRU (``FakeConfig.remembered_items``); each of its string leaves of at least
``MIN_INDEXED_CHARS`` characters points to it. A judge request quotes the sample it judges, so
the JSON string literals of the request find the item again. Memory stays flat over long runs:
the oldest items, and their index entries, go first.
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MIN_INDEXED_CHARS = 24
"""Shorter strings (names, enum values, keys) are too common to identify an item."""

# A JSON string literal: no raw control character inside, so a stray quote in prose cannot pair
# with a quote on a later line of pretty-printed JSON.
_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')


def string_leaves(value: object) -> Iterator[str]:
    """Every string in ``value`` (not keys), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from string_leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from string_leaves(item)


def string_literals(text: str) -> Iterator[str]:
    """The decoded JSON string literals in ``text``, in order."""
    for match in _JSON_STRING.finditer(text):
        try:
            decoded = json.loads(match.group())
        except ValueError:  # a lone surrogate escape, say
            continue
        yield decoded


def _keys(item: object) -> set[int]:
    # Index by hash, not by the string: an item's text is already held once, as its JSON.
    return {hash(s) for s in string_leaves(item) if len(s) >= MIN_INDEXED_CHARS}


class SampleMemory:
    """A bounded LRU of generated sample items, indexed by their long strings.

    Not thread-safe: the GPU calls it under its lock.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[int, str] = OrderedDict()  # id -> compact JSON, oldest first
        self._index: dict[int, int] = {}  # hash of a long string leaf -> id
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, items: Sequence[Any]) -> None:
        """Keep each object item that has at least one long string leaf."""
        for item in items:
            keys = _keys(item) if isinstance(item, Mapping) else set()
            if not keys or self._capacity == 0:
                continue
            item_id = self._next_id
            self._next_id += 1
            self._items[item_id] = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            for key in keys:
                self._index[key] = item_id
            while len(self._items) > self._capacity:
                self._forget_oldest()

    def recall(self, literals: Iterable[str]) -> dict[str, Any] | None:
        """The remembered item that most of ``literals`` come from (the newest on a tie)."""
        hits: Counter[int] = Counter()
        for key in {hash(s) for s in literals if len(s) >= MIN_INDEXED_CHARS}:
            item_id = self._index.get(key)
            if item_id is not None:
                hits[item_id] += 1
        if not hits:
            return None
        item_id = max(hits, key=lambda i: (hits[i], i))
        self._items.move_to_end(item_id)
        item: dict[str, Any] = json.loads(self._items[item_id])
        return item

    def _forget_oldest(self) -> None:
        item_id, text = self._items.popitem(last=False)
        for key in _keys(json.loads(text)):
            if self._index.get(key) == item_id:
                del self._index[key]
