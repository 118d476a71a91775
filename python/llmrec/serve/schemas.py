"""Request and response bodies (pydantic): types, caps (:mod:`.limits`) and the OpenAPI docs.

Ids are the model's own: JSON integers (int64) or strings, whichever the model was
fitted with. Unknown fields are refused (a typo names the field instead of being
ignored). Results leave out the padding the library returns when fewer than ``k``
items qualify (JSON has no -inf), so ``items`` may be shorter than ``k``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from llmrec.serve.limits import (INT64_MAX, INT64_MIN, MAX_ID_CHARS, MAX_IDS, MAX_K, MAX_NEW_ITEMS,
                                 MAX_QUERY_CHARS, MAX_SCENARIO_CHARS, MAX_TEXT_CHARS,
                                 MAX_TITLE_CHARS)

IntId = Annotated[int, Strict(), Field(ge=INT64_MIN, le=INT64_MAX)]
StrId = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_ID_CHARS)]
Id = IntId | StrId
IdList = Annotated[list[Id], Field(max_length=MAX_IDS)]
K = Annotated[int, Strict(), Field(ge=1, le=MAX_K, description=f"results wanted, 1 to {MAX_K}")]
Query = Annotated[str, Strict(), Field(max_length=MAX_QUERY_CHARS,
                                       description=f"a request in words, at most {MAX_QUERY_CHARS} characters")]
Diversity = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False,
                                   description="MMR trade-off in [0, 1]; null: the model's default")]
Scenario = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_SCENARIO_CHARS)]
Profile = Annotated[str, Strict(), Field(max_length=MAX_TEXT_CHARS, description=(
    f"the user's profile text (age, occupation, tastes…), at most {MAX_TEXT_CHARS} characters"))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    """Top-k for a known user (``Recommender.recommend``)."""

    user_id: Id
    k: K = 10
    query: Query | None = None
    diversity: Diversity | None = None
    allow: IdList | None = Field(None, description=f"only these item ids (at most {MAX_IDS})")
    exclude_seen: bool = True
    scenario: Scenario | None = None


class HistoryRequest(_Body):
    """Top-k for a visitor from the items they clicked, oldest first
    (``Recommender.recommend_for_history``); nothing is stored."""

    items: IdList
    k: K = 10
    query: Query | None = None
    profile: Profile | None = None
    diversity: Diversity | None = None
    exclude_seen: bool = True
    scenario: Scenario | None = None


class SearchRequest(_Body):
    """Items matching a request in words, optionally blended with a user's taste."""

    query: Query
    k: K = 10
    user_id: Id | None = None


class SimilarRequest(_Body):
    """Items most like one item (the item itself left out)."""

    item_id: Id
    k: K = 10


class ExplainRequest(_Body):
    """Why an item scores as it does for a user."""

    user_id: Id
    item_id: Id


class EventsRequest(_Body):
    """New interactions of one user, oldest first (``Recommender.update``); an unknown
    user becomes a new one. ``profile`` sets the user's profile text (a blank one
    removes it)."""

    user_id: Id
    items: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]
    profile: Profile | None = None


class NewItem(_Body):
    """An item to add: its id, its text (what the encoder reads) and an optional title."""

    item_id: Id
    text: Annotated[str, Strict(), Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    title: Annotated[str, Strict(), Field(max_length=MAX_TITLE_CHARS)] | None = None


class AddItemsRequest(_Body):
    """New items, recommendable at once (``Recommender.add_items``)."""

    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_NEW_ITEMS)]


class RemoveItemsRequest(_Body):
    """Items never recommended again (``Recommender.remove_items``)."""

    items: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]


class Recommendations(BaseModel):
    """Best first. ``labels``: each item's title (or text) when the model has them."""

    items: list[int | str]
    scores: list[float]
    labels: list[str] | None = None


class Explanation(BaseModel):
    """Why an item scores as it does for a user: the sentence, the score, each signal's
    share and the history items cited."""

    text: str
    score: float
    signals: dict[str, float]
    history: list[dict[str, int | str | float]]


class WriteResult(BaseModel):
    """An acknowledged write: what was applied, to how many ids, and the log's length."""

    ok: bool = True
    applied: str
    count: int
    log_records: int = Field(description="records in the write-ahead log after this write")


class ModelState(BaseModel):
    """The served model: status, version (one per load or reload), sizes and id kinds."""

    status: str
    version: int
    items: int
    users: int
    user_id_kind: str
    item_id_kind: str
    writes: str
    log_records: int


__all__ = ["AddItemsRequest", "EventsRequest", "ExplainRequest", "Explanation", "HistoryRequest",
           "ModelState", "NewItem", "RecommendRequest", "Recommendations", "RemoveItemsRequest",
           "SearchRequest", "SimilarRequest", "WriteResult"]
