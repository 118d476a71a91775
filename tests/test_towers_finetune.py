"""SequenceTowers(text="finetune"): the encoder's top layers trained with the towers, on
a tiny random BERT (llmrec.text.testing): the head against the encoder, what it learns,
new items from text, save/load, determinism and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmrec._fileformat import FormatError, load_arrays, save_arrays  # noqa: E402
from llmrec.text import TextEncoder  # noqa: E402
from llmrec.text.testing import save_tiny_bert  # noqa: E402
from llmrec.towers import SequenceTowers  # noqa: E402
from llmrec.towers.finetune import TextHead, head_vectors, lower_states  # noqa: E402

N_ITEMS, N_TOPICS, N_USERS = 120, 5, 300
TOPICS = ["love", "war", "space", "crime", "comedy"]
FILLER = "the a of and in film movie story night old new city life".split()
SMALL = dict(dim=16, layers=2, heads=2, max_history=10, num_threads=1, random_state=0,
             text="finetune", encoder_lr=1e-3)
EPOCHS = 40  # validation=0: the top layers train in the second half


class World:
    """Items in topics whose text starts with the topic's word (then random filler); each
    user draws from one topic; a fifth of the items never appears in a history."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.topic = np.arange(N_ITEMS) % N_TOPICS
        rng.shuffle(self.topic)
        self.texts = [" ".join([TOPICS[t], *rng.choice(FILLER, 4)]) for t in self.topic]
        self.cold = np.zeros(N_ITEMS, dtype=bool)
        self.cold[rng.choice(N_ITEMS, N_ITEMS // 5, replace=False)] = True
        self.user_topic = rng.integers(N_TOPICS, size=N_USERS)
        self.histories = [rng.choice(np.flatnonzero((self.topic == t) & ~self.cold),
                                     size=rng.integers(3, 15)) for t in self.user_topic]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    return TextEncoder(save_tiny_bert(tmp_path_factory.mktemp("bert") / "m"))


@pytest.fixture(scope="module")
def tuned(world, encoder) -> SequenceTowers:
    return SequenceTowers(**SMALL).fit(world.histories, item_texts=world.texts, encoder=encoder,
                                       epochs=EPOCHS, validation=0.0)


def _cold_precision(model: SequenceTowers, world: World, k: int = 3) -> float:
    cold_ids = np.flatnonzero(world.cold)
    S = model.user_vectors(world.histories) @ model.item_vectors(cold_ids).T
    top = cold_ids[np.argsort(-S, axis=1, kind="stable")[:, :k]]
    return float((world.topic[top] == world.user_topic[:, None]).mean())


@pytest.mark.parametrize("layers", [1, 2])
def test_head_starts_as_the_encoder(world, encoder, layers):
    head = TextHead.from_encoder(encoder, layers)
    tokens = lower_states(encoder, world.texts, "document", 2 - layers)
    with torch.no_grad():
        X = head_vectors(head, tokens).numpy()
    reference = encoder.encode(world.texts)
    # float32 sums over 32-dim rows of unit vectors: a few ulps
    np.testing.assert_allclose(X, reference, rtol=0, atol=1e-5)
    with torch.no_grad():
        head.blocks[-1].norm2.bias.add_(torch.linspace(-1.0, 1.0, 32))
        moved = head_vectors(head, tokens).numpy()
    assert np.abs(moved - reference).max() > 1e-2
    subset = np.array([5, 0, 77])
    with torch.no_grad():
        np.testing.assert_array_equal(head_vectors(head, tokens, subset).numpy(), moved[subset])


def test_finetuned_tower_ranks_unseen_items_from_their_text(world, encoder, tuned):
    phases = [r["tuning"] for r in tuned.history_]
    assert phases == [0.0] * (EPOCHS // 2) + [1.0] * (EPOCHS // 2)
    assert tuned.has_id_[~world.cold].all() and not tuned.has_id_[world.cold].any()
    # Random ranking puts a user's topic in 1/5 of the 900 slots (σ ≈ 0.013 if
    # independent); measured 0.37 after 20 frozen and 20 tuned epochs.
    assert _cold_precision(tuned, world) >= 0.3
    # The top layer moved away from the encoder's; the encoder itself is untouched.
    head = tuned.module_.text_head
    start = TextHead.from_encoder(encoder, 1)
    assert not torch.equal(head.blocks[0].inner.weight, start.blocks[0].inner.weight)
    assert np.abs(tuned.item_text_vectors_ - encoder.encode(world.texts)).max() > 1e-3
    np.testing.assert_allclose(encoder.encode(world.texts[:3]), encoder.encode(world.texts)[:3],
                               atol=1e-6, rtol=0)


def _copy(model: SequenceTowers, encoder: TextEncoder, path) -> SequenceTowers:
    model.save(path)
    return SequenceTowers.load(path, encoder=encoder)


def test_new_items_from_text_run_the_finetuned_layers(world, encoder, tuned, tmp_path):
    cold_ids = np.flatnonzero(world.cold)
    texts = [world.texts[i] for i in cold_ids]
    np.testing.assert_allclose(tuned.item_vectors(texts=texts), tuned.item_vectors(cold_ids),
                               rtol=0, atol=1e-5)
    frozen = tuned.module_.item.text_part(torch.from_numpy(encoder.encode(texts))).detach().numpy()
    assert np.abs(frozen - tuned.item_vectors(texts=texts)).max() > 1e-3
    grown = _copy(tuned, encoder, tmp_path / "m.llmrec")
    ids = grown.add_items(texts=["war war film", "love story"])
    assert list(ids) == [N_ITEMS, N_ITEMS + 1]
    np.testing.assert_allclose(grown.item_vectors(ids),
                               tuned.item_vectors(texts=["war war film", "love story"]),
                               rtol=0, atol=1e-5)
    U = tuned.user_vectors(world.histories[:2], requests=["space", None])
    assert U.shape == (2, 16) and np.isfinite(U).all()


def test_save_load_round_trip_gives_identical_vectors(world, encoder, tuned, tmp_path):
    path = tmp_path / "m.llmrec"
    tuned.save(path)
    assert load_arrays(path, "SequenceTowers", max_kind_version=2)[2] == 2
    loaded = SequenceTowers.load(path, encoder=encoder)
    assert loaded.get_params() == tuned.get_params()
    np.testing.assert_array_equal(loaded.item_vectors(), tuned.item_vectors())
    np.testing.assert_array_equal(loaded.user_vectors(world.histories),
                                  tuned.user_vectors(world.histories))
    new = ["crime night", "comedy of the city"]
    np.testing.assert_array_equal(loaded.item_vectors(texts=new), tuned.item_vectors(texts=new))
    other = TextEncoder(save_tiny_bert(tmp_path / "other", seed=1))
    with pytest.raises(ValueError, match="differs from the one"):
        SequenceTowers.load(path, encoder=other).item_vectors(texts=new)


def test_damaged_text_head_metadata_raises_format_error(tuned, tmp_path):
    path = tmp_path / "m.llmrec"
    tuned.save(path)
    meta, arrays, version = load_arrays(path, "SequenceTowers", max_kind_version=2)
    for change in ({"layers": 0}, {"hidden": 8}, {"heads": 3}, {"intermediate": 10**9},
                   {"pooling": "max"}, {"eps": "x"}, {"normalize": 1}):
        bad = {**meta, "text_head": {**meta["text_head"], **change}}
        save_arrays(tmp_path / "bad.llmrec", "SequenceTowers", version, bad, arrays)
        with pytest.raises(FormatError):
            SequenceTowers.load(tmp_path / "bad.llmrec")
    save_arrays(tmp_path / "bad.llmrec", "SequenceTowers", version, {**meta, "text_head": None}, arrays)
    with pytest.raises(FormatError, match="without its 'text_head'"):
        SequenceTowers.load(tmp_path / "bad.llmrec")
    weights = {k: v for k, v in arrays.items() if not k.startswith("param/text_head.blocks.0.qkv")}
    save_arrays(tmp_path / "bad.llmrec", "SequenceTowers", version, meta, weights)
    with pytest.raises(FormatError, match="weights do not match"):
        SequenceTowers.load(tmp_path / "bad.llmrec")


def test_seeded_training_is_reproducible(world, encoder):
    fit = lambda seed: SequenceTowers(**{**SMALL, "random_state": seed}).fit(  # noqa: E731
        world.histories, item_texts=world.texts, encoder=encoder, epochs=4, validation=0.0)
    a, b, c = fit(3), fit(3), fit(4)
    np.testing.assert_array_equal(a.item_vectors(), b.item_vectors())
    np.testing.assert_array_equal(a.user_vectors(world.histories), b.user_vectors(world.histories))
    assert not np.array_equal(a.item_vectors(), c.item_vectors())


def test_bad_inputs(world, encoder, tuned, tmp_path):
    fit = lambda **kw: SequenceTowers(**{**SMALL, **kw.pop("params", {})}).fit(  # noqa: E731
        world.histories, **{"item_texts": world.texts, "encoder": encoder, "epochs": 1, **kw})
    vectors = encoder.encode(world.texts)
    with pytest.raises(ValueError, match="give item_texts"):
        fit(item_texts=None, item_text_vectors=vectors)
    with pytest.raises(ValueError, match="need an encoder"):
        fit(encoder=None)
    with pytest.raises(ValueError, match="not a str"):
        fit(item_texts=world.texts[:-1] + [None])
    with pytest.raises(ValueError, match="exceeds the encoder's 2 layers"):
        fit(params={"finetune_layers": 3})
    with pytest.raises(ValueError, match="finetune_layers must be"):
        fit(params={"finetune_layers": 0})
    with pytest.raises(ValueError, match="encoder_lr must be"):
        fit(params={"encoder_lr": 0.0})

    class Stub:
        dim = 32

        def encode(self, texts, kind="document", show_progress=False):
            return np.zeros((len(texts), 32), dtype=np.float32)

    with pytest.raises(ValueError, match="BERT-family"):
        fit(encoder=Stub())
    with pytest.raises(ValueError, match="text_vectors cannot be given"):
        tuned.item_vectors(text_vectors=vectors[:2])
    with pytest.raises(ValueError, match="text_vectors cannot be given"):
        _copy(tuned, encoder, tmp_path / "m.llmrec").add_items(text_vectors=vectors[:2])
    with pytest.raises(ValueError, match="request_vectors cannot be given"):
        tuned.user_vectors(world.histories[:1], request_vectors=vectors[:1])
    with pytest.raises(ValueError, match="not a str"):
        tuned.item_vectors(texts=["war", 3])
    assert tuned.item_vectors(texts=[]).shape == (0, 16)
