"""``llmrec demo``: the main job, offline, on a synthetic catalogue whose text carries signal.

It generates interactions and item descriptions with :func:`llmrec.datasets.synthetic`,
holds out each user's latest interactions (``temporal_split``) and one item entirely,
fits a :class:`llmrec.Recommender` with the default MiniLM encoder (behaviour only
when the ``text`` extra is missing), prints its metrics beside popularity and
behaviour-only ALS, and then shows it at work: a known user, a visitor with three
clicks, a free-text request, and the held-out item added after training.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

# Free-text requests for the synthetic topics (the first topic found is used).
REQUESTS = {
    "Ocean": "an adventure with pirates on a stormy sea",
    "Horror": "something scary with ghosts and haunted houses",
    "Romance": "a love story about a wedding",
    "Western": "cowboys and outlaws in the desert",
    "Fantasy": "dragons, wizards and a quest",
    "Crime": "a detective hunting a murderer",
    "Sports": "a team chasing the championship",
    "Music": "a band on tour, guitars and concerts",
}


def default_encoder() -> Any:
    """The default MiniLM encoder, or None (with a note) when the text extra is missing."""
    try:
        from .text import TextEncoder

        return TextEncoder("default")
    except (ImportError, OSError, ValueError) as error:
        print(f"note: no text encoder ({error}).\n"
              "      Running behaviour-only; `pip install \"llmrec[text]\"` adds language.")
        return None


def _titles(items: pd.DataFrame, ids: Any) -> list[str]:
    frame = items.set_index("item_id")
    return [f"{frame.at[i, 'title']} [{frame.at[i, 'genres'][0]}]" for i in ids if i in frame.index]


def _show(label: str, items: pd.DataFrame, ids: Any, scores: Any = None) -> None:
    print(f"\n{label}")
    for rank, title in enumerate(_titles(items, ids), 1):
        score = "" if scores is None else f"  ({float(np.ravel(scores)[rank - 1]):.3f})"
        print(f"  {rank}. {title}{score}")


def run(*, n_users: int = 4000, n_items: int = 3000, density: float = 0.01, k: int = 10,
        encoder: Any = "default", seed: int = 0, show_progress: bool = True) -> int:
    """Run the demo; returns a process exit code (0 when the Recommender beats popularity)."""
    from . import Recommender
    from .comparison import compare, format_table
    from .datasets import synthetic
    from .evaluation import temporal_split

    start = time.perf_counter()
    interactions, items, _ = synthetic(n_users, n_items, density=density, random_state=seed)
    rng = np.random.default_rng(seed)
    new_item = int(rng.choice(items["item_id"]))
    catalogue = items[items["item_id"] != new_item].reset_index(drop=True)
    interactions = interactions[interactions["item_id"] != new_item]
    train, test = temporal_split(interactions, 0.2)
    print(f"synthetic catalogue: {len(catalogue):,} items, {interactions['user_id'].nunique():,} "
          f"users, {len(interactions):,} interactions; item text e.g.\n  {catalogue['text'].iloc[0]!r}")

    if isinstance(encoder, str):
        encoder = default_encoder()
    recommender = Recommender(encoder=encoder, random_state=seed)
    table = compare(train, test, catalogue, recommender=recommender, k=k, random_state=seed,
                    show_progress=show_progress)
    print(f"\nheld-out latest 20% of each user's interactions, full ranking, @{k}:")
    print(format_table(table, k))

    user = train["user_id"].iloc[0]
    history = train[train["user_id"] == user].sort_values("timestamp")["item_id"]
    _show(f"user {user}: last three interactions", catalogue, history.to_numpy()[-3:][::-1])
    result = recommender.recommend(user, 5)
    _show(f"recommended for user {user}", catalogue, result.ids, result.scores)

    topic_items = catalogue[catalogue["genres"].str[0] == catalogue["genres"].iloc[1][0]]
    clicks = topic_items["item_id"].to_numpy()[:3]
    _show("a visitor clicked", catalogue, clicks)
    result = recommender.recommend_for_history(clicks, 5)
    _show("recommended for that visitor", catalogue, result.ids, result.scores)

    if encoder is not None:
        genres = set(catalogue["genres"].str[0])
        request = next((text for genre, text in REQUESTS.items() if genre in genres), None)
        if request is not None:
            result = recommender.search(request, 5)
            _show(f"search: {request!r}", catalogue, result.ids, result.scores)

    added = items[items["item_id"] == new_item]
    recommender.add_items(added)
    print(f"\nadded after training: {added['text'].iloc[0]!r}")
    result = recommender.similar_items(new_item, 5)
    _show("its most similar items", items, result.ids, result.scores)

    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
    ndcg = table["ndcg"]
    return 0 if ndcg["Recommender"] > ndcg["popularity"] else 1
