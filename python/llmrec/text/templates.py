"""Turning catalogue rows and user histories into the strings a text encoder reads.

:func:`item_text` fills a template from one item (a mapping) or many (a sequence of
mappings, or a pandas DataFrame); :func:`history_text` writes a user's recent items as
one string, most recent first, cut to a character budget at item boundaries.
"""

from __future__ import annotations

import math
import numbers
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from llmrec._checks import check_int

DEFAULT_ITEM_TEMPLATE = "{title} ({year}). Genres: {genres}"

_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?)\]])")
_REPEATED_PUNCT = re.compile(r"([.,;])(?:\s+[.,;])+")
_DANGLING_LABEL = re.compile(r"(?<=[.;!?])\s*[A-Za-z][\w -]{0,40}:\s*$")
_SPACES = re.compile(r"\s+")


def _template_fields(template: str) -> list[str]:
    if not isinstance(template, str):
        raise TypeError(f"template must be a str, got {type(template).__name__}")
    fields = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            raise ValueError(
                f"template fields must be named, like {{title}}; got {{{field}}} in {template!r}")
        fields.append(field)
    return fields


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_missing(v) for v in value)
    return False


def _render_value(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return str(int(as_float)) if as_float.is_integer() else str(as_float)
    if isinstance(value, (list, tuple, set, frozenset)) or _is_array_like(value):
        return ", ".join(_render_value(v) for v in value if not _is_missing(v))
    return str(value).strip()


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "tolist") and hasattr(value, "ndim") and getattr(value, "ndim", 0) == 1


def _tidy(text: str) -> str:
    """Remove what missing values leave behind: empty brackets, stray spaces, labels."""
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _DANGLING_LABEL.sub("", text)
    return text.strip(" ,;:").strip()


def _render_row(row: Mapping[str, Any], fields: list[str], template: str, index: int | None) -> str:
    if not isinstance(row, Mapping):
        where = "items" if index is None else f"items[{index}]"
        raise TypeError(f"{where} must be a mapping of field name to value, got {type(row).__name__}")
    values = {}
    for field in fields:
        if field not in row:
            where = "the item" if index is None else f"items[{index}]"
            raise KeyError(f"template field {field!r} is missing from {where}; it has {sorted(row)}")
        values[field] = _render_value(row[field])
    return _tidy(template.format(**values))


@overload
def item_text(items: Mapping[str, Any], template: str = ...) -> str: ...
@overload
def item_text(items: Sequence[Mapping[str, Any]], template: str = ...) -> list[str]: ...
@overload
def item_text(items: Any, template: str = ...) -> list[str]: ...


def item_text(items: Any, template: str = DEFAULT_ITEM_TEMPLATE) -> str | list[str]:
    """Fill ``template`` from item fields.

    Parameters
    ----------
    items
        One item as a mapping (``{"title": "Toy Story", "year": 1995, ...}``), which
        gives one string; or a sequence of mappings or a pandas DataFrame (one row per
        item), which gives a list of strings in the same order.
    template
        A ``str.format`` template with named fields. List values (genres) are joined
        with ``", "``; integral floats print without ``.0``. A value that is None, NaN
        or empty leaves no debris: empty brackets, doubled punctuation and a trailing
        label such as ``"Genres:"`` are removed.

    Raises
    ------
    KeyError
        A template field is not a key of an item (or a column of the DataFrame).
    TypeError
        ``items`` or one of its elements is not a mapping.
    """
    fields = _template_fields(template)
    if isinstance(items, Mapping):
        return _render_row(items, fields, template, None)
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # a pandas DataFrame
        missing = [field for field in fields if field not in items.columns]
        if missing:
            raise KeyError(f"template fields {missing} are not columns of the DataFrame; "
                           f"it has {list(items.columns)}")
        items = items.to_dict("records")
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError("items must be a mapping, a sequence of mappings or a DataFrame, "
                        f"got {type(items).__name__}")
    return [_render_row(row, fields, template, i) for i, row in enumerate(items)]


def history_text(item_texts: Sequence[str], *, max_items: int = 20, max_chars: int = 1000,
                 prefix: str = "", separator: str = "; ", most_recent_last: bool = True) -> str:
    """Write a user's history as one string, most recent item first.

    Parameters
    ----------
    item_texts
        The user's items as strings (titles or :func:`item_text` output), in the order
        they happened: oldest first when ``most_recent_last`` (the default, as
        interaction logs are kept), newest first otherwise.
    max_items
        Keep at most this many of the most recent items.
    max_chars
        Character budget for the whole string, prefix included. Whole items are
        dropped from the old end to fit; only when the most recent item alone is too
        long is it cut, at a word boundary, and marked with an ellipsis.
    prefix
        Written before the items, e.g. ``"watched: "``.
    separator
        Written between items.

    Returns
    -------
    str
        For example ``"watched: Fargo; Heat; Toy Story"``; just ``prefix`` stripped for
        an empty history.
    """
    if isinstance(item_texts, (str, bytes)) or not isinstance(item_texts, Iterable):
        raise TypeError(f"item_texts must be a sequence of str, got {type(item_texts).__name__}")
    check_int(max_items, "max_items", minimum=1)
    check_int(max_chars, "max_chars", minimum=1)
    if not isinstance(prefix, str) or not isinstance(separator, str):
        raise TypeError("prefix and separator must be str")
    texts = list(item_texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"item_texts[{i}] must be a str, got {type(text).__name__}")
    if most_recent_last:
        texts.reverse()
    texts = [_SPACES.sub(" ", t).strip() for t in texts]
    texts = [t for t in texts if t][:max_items]
    if not texts:
        return prefix.strip()

    budget = max_chars - len(prefix)
    first = texts[0]
    if len(first) > budget:
        return prefix + _cut_at_word(first, budget)
    kept = [first]
    used = len(first)
    for text in texts[1:]:
        if used + len(separator) + len(text) > budget:
            break
        kept.append(text)
        used += len(separator) + len(text)
    return prefix + separator.join(kept)


def _cut_at_word(text: str, limit: int) -> str:
    if limit <= 1:
        return text[:max(limit, 0)]
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"
