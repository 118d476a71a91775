"""SequenceTowers: learning from text, requests, persistence, determinism, the forward
against a float64 numpy reference, and bad inputs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmrec.exceptions import NotFittedError  # noqa: E402
from llmrec._fileformat import FormatError  # noqa: E402
from llmrec.towers import SequenceTowers  # noqa: E402

N_ITEMS, N_TOPICS, TEXT_DIM, N_USERS = 120, 5, 16, 300
EPS32 = float(np.finfo(np.float32).eps)
SMALL = dict(dim=16, layers=2, heads=2, max_history=10, num_threads=1, random_state=0)


class World:
    """Items in topics whose text vector names the topic; each user draws from one topic.
    A fifth of the items (cold) never appears in a training history."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.topic = np.arange(N_ITEMS) % N_TOPICS
        rng.shuffle(self.topic)
        noise = 0.1 * rng.standard_normal((N_ITEMS, TEXT_DIM))
        self.text = (np.eye(N_TOPICS, TEXT_DIM)[self.topic] + noise).astype(np.float32)
        self.cold = np.zeros(N_ITEMS, dtype=bool)
        self.cold[rng.choice(N_ITEMS, N_ITEMS // 5, replace=False)] = True
        self.user_topic = rng.integers(N_TOPICS, size=N_USERS)
        self.histories = []
        for t in self.user_topic:
            pool = np.flatnonzero((self.topic == t) & ~self.cold)
            self.histories.append(rng.choice(pool, size=rng.integers(3, 15)))
        self.timestamps = [np.cumsum(rng.integers(1, 10_000, size=len(h))) for h in self.histories]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def text_towers(world: World) -> SequenceTowers:
    return SequenceTowers(**SMALL, request_rate=0.3).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=25)


@pytest.fixture(scope="module")
def ids_towers(world: World) -> SequenceTowers:
    return SequenceTowers(**SMALL, text=None).fit(world.histories, n_items=N_ITEMS, epochs=25)


def _cold_precision(model: SequenceTowers, world: World, k: int = 3) -> float:
    cold_ids = np.flatnonzero(world.cold)
    S = model.user_vectors(world.histories) @ model.item_vectors(cold_ids).T
    top = cold_ids[np.argsort(-S, axis=1, kind="stable")[:, :k]]
    return float((world.topic[top] == world.user_topic[:, None]).mean())


# ------------------------------------------------------------------ what it learns

def test_text_tower_ranks_unseen_items_the_ids_tower_cannot(world, text_towers, ids_towers):
    cold_ids = np.flatnonzero(world.cold)
    assert not text_towers.has_id_[cold_ids].any() and text_towers.has_id_[~world.cold].all()
    # Random ranking puts a user's topic in 1/5 of the slots.
    assert _cold_precision(text_towers, world) >= 0.8
    # Without text a never-seen item has nothing: all cold items tie for every user.
    V = ids_towers.item_vectors(cold_ids)
    assert np.all(V == 0)
    S = ids_towers.user_vectors(world.histories) @ V.T
    assert np.all(S.max(axis=1) == S.min(axis=1))
    assert _cold_precision(ids_towers, world) <= 0.5


def test_warm_ranking_beats_random(world, text_towers, ids_towers):
    for model in (text_towers, ids_towers):
        warm_ids = np.flatnonzero(~world.cold)
        S = model.user_vectors(world.histories) @ model.item_vectors(warm_ids).T
        top = warm_ids[np.argsort(-S, axis=1)[:, :5]]
        assert (world.topic[top] == world.user_topic[:, None]).mean() >= 0.8


def test_items_from_text_match_the_fitted_text_part(world, text_towers):
    cold_ids = np.flatnonzero(world.cold)
    expected = text_towers.item_vectors(cold_ids)
    np.testing.assert_allclose(text_towers.item_vectors(text_vectors=world.text[cold_ids]),
                               expected, rtol=0, atol=_tolerance(text_towers, np.abs(expected).max()))


def test_request_moves_the_ranking_toward_the_asked_topic(world, text_towers):
    users = np.flatnonzero(world.user_topic == 0)[:20]
    H = [world.histories[u] for u in users]
    asked = 3
    request = np.tile(np.eye(N_TOPICS, TEXT_DIM, dtype=np.float32)[asked], (len(users), 1))
    V = text_towers.item_vectors()

    def share(U):
        top = np.argsort(-(U @ V.T), axis=1)[:, :10]
        return float((world.topic[top] == asked).mean())

    before = share(text_towers.user_vectors(H))
    after = share(text_towers.user_vectors(H, request_vectors=request))
    assert before <= 0.1 and after >= 0.4, (before, after)  # random: 0.2


def test_empty_history_gets_a_vector_and_a_request_alone_works(world, text_towers):
    U = text_towers.user_vectors([np.array([], dtype=np.int64)] * 2,
                                 request_vectors=np.eye(N_TOPICS, TEXT_DIM, dtype=np.float32)[[1, 2]])
    assert np.isfinite(U).all()
    top = np.argsort(-(U @ text_towers.item_vectors().T), axis=1)[:, :10]
    assert (world.topic[top[0]] == 1).mean() >= 0.6 and (world.topic[top[1]] == 2).mean() >= 0.6
    empty = text_towers.user_vectors([[]])
    assert empty.shape == (1, 16) and np.isfinite(empty).all()


def test_added_items_are_ranked_at_once_and_can_be_in_histories(world):
    model = SequenceTowers(**SMALL).fit(world.histories, item_text_vectors=world.text,
                                        encoder=None, epochs=3)
    before = model.user_vectors(world.histories[:5])
    new = model.add_items(text_vectors=world.text[:2] + 0.01)
    np.testing.assert_array_equal(new, [N_ITEMS, N_ITEMS + 1])
    assert model.n_items_ == N_ITEMS + 2 and not model.has_id_[new].any()
    expected = model.item_vectors(text_vectors=world.text[:2] + 0.01)
    np.testing.assert_allclose(model.item_vectors(new), expected, rtol=0,
                               atol=_tolerance(model, np.abs(expected).max()))
    np.testing.assert_array_equal(model.user_vectors(world.histories[:5]), before)
    assert np.isfinite(model.user_vectors([np.append(world.histories[0], new)])).all()


# ------------------------------------------------------------- the forward, exactly

def _layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _reference_item_vectors(model: SequenceTowers) -> np.ndarray:
    p = {k: v.double().numpy() for k, v in model.module_.state_dict().items()}
    X = model.item_text_vectors_.astype(np.float64)
    h = _gelu(X @ p["item.text_mlp.0.weight"].T + p["item.text_mlp.0.bias"])
    G = h @ p["item.text_mlp.2.weight"].T + p["item.text_mlp.2.bias"]
    n_ids = p["item.id_embedding.weight"].shape[0]
    G[:n_ids] += p["item.id_embedding.weight"] * model.has_id_[:n_ids, None]
    return G


def _reference_user_vector(model: SequenceTowers, history: np.ndarray,
                           profile: np.ndarray | None = None) -> np.ndarray:
    """The user tower for one history (and profile vector) in float64 numpy, from the weights."""
    p = {k: v.double().numpy() for k, v in model.module_.state_dict().items()}
    G = _reference_item_vectors(model)
    W, heads = model.max_history, model.heads
    h = history[-W:]
    bos = p["user.bos"] if profile is None else p["user.bos"] + p["user.profile.weight"] @ profile
    x = np.vstack([bos, G[h]])
    x = x + p["user.positions.weight"][np.arange(len(h), -1, -1)]
    s, d = x.shape
    for b in range(model.layers):
        q_, k_, v_ = np.split(_layer_norm(x, p[f"user.blocks.{b}.norm1.weight"],
                                          p[f"user.blocks.{b}.norm1.bias"])
                              @ p[f"user.blocks.{b}.qkv.weight"].T + p[f"user.blocks.{b}.qkv.bias"], 3, axis=1)
        out = np.zeros_like(x)
        dh = d // heads
        for j in range(heads):
            sl = slice(j * dh, (j + 1) * dh)
            logits = q_[:, sl] @ k_[:, sl].T / np.sqrt(dh)
            logits[np.triu_indices(s, 1)] = -np.inf
            w = np.exp(logits - logits.max(1, keepdims=True))
            out[:, sl] = (w / w.sum(1, keepdims=True)) @ v_[:, sl]
        x = x + out @ p[f"user.blocks.{b}.out.weight"].T + p[f"user.blocks.{b}.out.bias"]
        f = _layer_norm(x, p[f"user.blocks.{b}.norm2.weight"], p[f"user.blocks.{b}.norm2.bias"])
        f = _gelu(f @ p[f"user.blocks.{b}.ffn.0.weight"].T + p[f"user.blocks.{b}.ffn.0.bias"])
        x = x + f @ p[f"user.blocks.{b}.ffn.2.weight"].T + p[f"user.blocks.{b}.ffn.2.bias"]
    return _layer_norm(x, p["user.norm.weight"], p["user.norm.bias"])[-1]


def _tolerance(model: SequenceTowers, scale: float) -> float:
    # float32 dot products of length <= max(dim, text_dim, 2·dim, positions) per op, a
    # handful of ops per block and LayerNorm's rescaling (about 1/std of its input,
    # O(1) here): a generous multiple of eps · length · layers.
    length = max(2 * model.dim, model.text_dim_, model.max_history + 1)
    return 16 * EPS32 * length * (model.layers + 1) * scale


def test_forward_matches_a_float64_reference(world, text_towers, rng):
    G = _reference_item_vectors(text_towers)
    np.testing.assert_allclose(text_towers.item_vectors(), G,
                               atol=_tolerance(text_towers, np.abs(G).max()), rtol=0)
    histories = [rng.choice(N_ITEMS, size=n) for n in (0, 1, 4, 10, 17)]
    ref = np.array([_reference_user_vector(text_towers, h) for h in histories])
    tol = _tolerance(text_towers, np.abs(ref).max())
    # Several histories run through torch, one alone through the numpy forward.
    np.testing.assert_allclose(text_towers.user_vectors(histories), ref, atol=tol, rtol=0)
    single = np.vstack([text_towers.user_vectors([h]) for h in histories])
    np.testing.assert_allclose(single, ref, atol=tol, rtol=0)


def test_user_vectors_batch_matches_single_calls(world, text_towers, rng):
    histories = [rng.choice(N_ITEMS, size=n) for n in rng.integers(0, 25, size=30)]
    requests = np.eye(N_TOPICS, TEXT_DIM, dtype=np.float32)[rng.integers(N_TOPICS, size=30)]
    for kwargs in ({}, {"request_vectors": requests}):
        U = text_towers.user_vectors(histories, **kwargs)
        single = np.vstack([text_towers.user_vectors(
            [h], **({"request_vectors": requests[i:i + 1]} if kwargs else {}))
            for i, h in enumerate(histories)])
        np.testing.assert_allclose(U, single, atol=_tolerance(text_towers, np.abs(U).max()), rtol=0)
        np.testing.assert_allclose(U, text_towers.user_vectors(histories, batch_size=7, **kwargs),
                                   atol=_tolerance(text_towers, np.abs(U).max()), rtol=0)


# ------------------------------------------------------------------ training

def _weights(model):
    return {k: v.numpy().copy() for k, v in model.module_.state_dict().items()}


def test_seeded_training_is_reproducible_and_leaves_torch_alone(world):
    torch.set_num_threads(1)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    fit = lambda seed: SequenceTowers(**dict(SMALL, random_state=seed)).fit(  # noqa: E731
        world.histories, item_text_vectors=world.text, encoder=None, epochs=3)
    a, b, c = fit(7), fit(7), fit(8)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is untouched
    for name, value in _weights(a).items():
        np.testing.assert_array_equal(value, _weights(b)[name])
    assert any(not np.array_equal(v, _weights(c)[k]) for k, v in _weights(a).items())
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]


def test_num_threads_is_honoured_and_restored(world):
    torch.set_num_threads(1)
    seen = []
    SequenceTowers(**dict(SMALL, num_threads=2)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=1,
        callback=lambda epoch, record: seen.append(torch.get_num_threads()))
    assert seen == [2] and torch.get_num_threads() == 1


def test_early_stopping_keeps_the_best_epoch_and_callback_can_stop(world):
    records = []
    model = SequenceTowers(**dict(SMALL, patience=2, average_epochs=0)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=50,
        callback=lambda e, r: records.append(r) or e == 9)
    assert len(model.history_) == len(records) <= 10
    ndcg = [r["validation_ndcg"] for r in records]
    assert model.validation_ndcg_ == max(ndcg) and ndcg[model.best_epoch_] == max(ndcg)
    assert {"epoch", "loss", "validation_ndcg", "elapsed"} <= set(records[0])


def test_several_held_out_items_per_validation_user(world):
    """``validation_items=3``: the latest three items of each validation user leave their
    training sequence and each is one validation row, ranked against the items not in the
    user's remaining history with the user's other held-out items excluded; the reported
    validation ndcg matches a float64 recomputation from the kept weights."""
    from llmrec.towers.estimator import _split_validation

    H = [np.asarray(h, dtype=np.int64) for h in world.histories]
    data = _split_validation(H, None, N_ITEMS, 0.3, np.random.default_rng(0), 3)
    val_users = [u for u in range(len(H)) if len(data.sequences[u]) != len(H[u])]
    assert len(val_users) == round(0.3 * sum(len(h) > 3 for h in H))
    assert len(data.val_targets) == 3 * len(val_users)
    for r, u in enumerate(np.repeat(val_users, 3)):
        h, t = H[u], data.val_targets[r]
        assert np.array_equal(data.sequences[u], h[:-3]) and np.array_equal(data.val_prefixes[r], h[:-3])
        assert t == h[-3 + r % 3]
        assert set(data.val_seen[r].tolist()) == set(h.tolist()) - {t}

    model = SequenceTowers(**SMALL, average=0).fit(
        H, item_text_vectors=world.text, encoder=None, epochs=1, validation=0.3, validation_items=3)
    U = model.user_vectors(data.val_prefixes).astype(np.float64)
    G = model.item_vectors().astype(np.float64)
    gains = []
    for r, t in enumerate(data.val_targets):
        s = U[r] @ G.T
        s[data.val_seen[r]] = -np.inf
        rank = int(np.sum(s > s[t]))
        gains.append(1.0 / np.log2(rank + 2.0) if rank < 10 else 0.0)
    assert model.validation_ndcg_ == pytest.approx(np.mean(gains), abs=1e-12)
    with pytest.raises(ValueError, match="validation_items"):
        model.fit(H, item_text_vectors=world.text, encoder=None, epochs=1, validation_items=0)


def test_weight_average_matches_a_float64_reference(world):
    """average=d keeps the moving average of the per-step weights, with decay
    min(d, (1 + t) / (10 + t)) at step t; one step per epoch here (a batch holds every
    user), so the raw weights after each step are those of raw fits of 1, 2, 3 epochs,
    and the initial weights those of the seeded module."""
    from llmrec.towers.model import Towers

    params = dict(SMALL, batch_size=len(world.histories))
    fit = lambda epochs, average=0.0: SequenceTowers(**params, average=average).fit(  # noqa: E731
        world.histories, item_text_vectors=world.text, encoder=None, epochs=epochs, validation=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SMALL["random_state"])
        init = Towers(n_id_rows=N_ITEMS, text_dim=TEXT_DIM, dim=SMALL["dim"], hidden=2 * SMALL["dim"],
                      layers=SMALL["layers"], heads=SMALL["heads"], max_history=SMALL["max_history"],
                      dropout=0.2, use_gaps=False)
    steps = [{k: v.numpy().astype(np.float64) for k, v in init.state_dict().items()}]
    steps += [{k: v.astype(np.float64) for k, v in _weights(fit(e)).items()} for e in (1, 2, 3)]
    decay = 0.5
    expected = dict(steps[0])
    for t, raw in enumerate(steps[1:]):
        d = min(decay, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * raw[k] for k in expected}
    averaged = fit(3, average=decay)
    assert averaged.get_params()["average"] == decay
    for name, value in _weights(averaged).items():
        scale = np.abs(expected[name]).max() + 1.0
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=8 * EPS32 * scale, err_msg=name)
    assert not np.array_equal(_weights(averaged)["item.text_mlp.0.weight"], steps[-1]["item.text_mlp.0.weight"])


def test_averaged_training_learns_and_validates_the_average(world):
    records = []
    model = SequenceTowers(**dict(SMALL, average=0.9, average_epochs=0)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=15,
        callback=lambda e, r: records.append(r))
    assert _cold_precision(model, world) >= 0.6
    ndcg = [r["validation_ndcg"] for r in records]
    assert model.validation_ndcg_ == max(ndcg) and ndcg[model.best_epoch_] == max(ndcg)


def test_epoch_window_means_the_epochs_centred_on_the_best():
    """EpochWindow keeps up to r epochs each side of the best; its mean matches float64
    numpy; a window cut short (training began or stopped near the best) means what ran."""
    from llmrec.towers.training import EpochWindow

    rng = np.random.default_rng(5)
    states = [{"w": torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)),
               "n": torch.tensor(e)} for e in range(9)]
    improved = [True, False, True, True, False, False, False, False, False]  # best: epoch 3
    for radius, epochs in ((2, range(1, 6)), (3, range(0, 7)), (1, range(2, 5))):
        window = EpochWindow(radius)
        assert window.mean() is None
        for state, better in zip(states, improved):
            copy = window.add(state, better)
            assert torch.equal(copy["w"], state["w"]) and copy["w"] is not state["w"]
        mean, count = window.mean()
        expected = np.mean([states[e]["w"].numpy().astype(np.float64) for e in epochs], axis=0)
        np.testing.assert_allclose(mean["w"].numpy(), expected, rtol=0, atol=4 * EPS32 * 4)
        assert count == len(epochs) and mean["w"].dtype == torch.float32
        assert int(mean["n"]) == 3  # not floating: the best epoch's
    short = EpochWindow(3)  # best at epoch 1, one epoch after it
    for state, better in zip(states[:3], [True, True, False]):
        short.add(state, better)
    assert short.mean()[1] == 3


def test_averaged_epochs_are_kept_and_reported(world, monkeypatch, tmp_path):
    """average_epochs=2: with the validation curve scripted so that the best epoch is 3,
    the fitted weights are the mean of epochs 1-5's (moving-averaged) weights and the
    reported validation ndcg is the mean's; reproducible with a seed; save/load keeps it."""
    import llmrec.towers.training as training

    # 10 epochs (the 5-epoch mean peaks at epoch 5 and stays below it for 4), then the mean
    curve = iter([0.1, 0.2, 0.3, 0.5, 0.4, 0.3, 0.15, 0.1, 0.05, 0.02, 0.45])
    monkeypatch.setattr(training, "validation_ndcg", lambda net, data: next(curve))
    snapshots = []
    add = training.EpochWindow.add

    def spy(self, state, improved):
        copy = add(self, state, improved)
        snapshots.append({k: v.numpy().astype(np.float64) for k, v in copy.items()})
        return copy

    monkeypatch.setattr(training.EpochWindow, "add", spy)
    params = dict(SMALL, patience=4, average=0.9, average_epochs=2)
    model = SequenceTowers(**params).fit(world.histories, item_text_vectors=world.text,
                                         encoder=None, epochs=20)
    assert len(model.history_) == 10 and model.best_epoch_ == 3
    assert model.averaged_epochs_ == 5 and model.validation_ndcg_ == 0.45
    for name, value in _weights(model).items():
        expected = np.mean([snapshots[e][name] for e in range(1, 6)], axis=0)
        np.testing.assert_allclose(value, expected, rtol=0, atol=4 * EPS32 * (np.abs(expected).max() + 1),
                                   err_msg=name)
    monkeypatch.undo()
    a = SequenceTowers(**params).fit(world.histories, item_text_vectors=world.text, encoder=None, epochs=12)
    b = SequenceTowers(**params).fit(world.histories, item_text_vectors=world.text, encoder=None, epochs=12)
    assert a.averaged_epochs_ == b.averaged_epochs_ > 1 and a.validation_ndcg_ == b.validation_ndcg_
    for name, value in _weights(a).items():
        np.testing.assert_array_equal(value, _weights(b)[name])
    path = tmp_path / "averaged.llmrec"
    model.save(path)
    loaded = SequenceTowers.load(path)
    assert loaded.averaged_epochs_ == 5 and loaded.get_params()["average_epochs"] == 2
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    np.testing.assert_array_equal(loaded.user_vectors(world.histories), model.user_vectors(world.histories))


def test_without_averaged_epochs_the_best_epoch_is_kept(world):
    assert SequenceTowers().average_epochs == 2  # the default
    model = SequenceTowers(**dict(SMALL, patience=3, average_epochs=0)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=8)
    ndcg = [r["validation_ndcg"] for r in model.history_]
    assert model.averaged_epochs_ == 1 and model.validation_ndcg_ == max(ndcg)
    unvalidated = SequenceTowers(**dict(SMALL, average_epochs=3)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=2, validation=0)
    assert unvalidated.averaged_epochs_ == 1  # nothing to centre a window on


def test_sampled_softmax_trains_too(world):
    model = SequenceTowers(**dict(SMALL, full_softmax_max_items=50, n_negatives=40)).fit(
        world.histories, item_text_vectors=world.text, encoder=None, epochs=15)
    assert _cold_precision(model, world) >= 0.6


def test_timestamps_add_a_gap_embedding(world, tmp_path):
    model = SequenceTowers(**SMALL).fit(world.histories, item_text_vectors=world.text,
                                        encoder=None, timestamps=world.timestamps, epochs=3)
    assert model.uses_timestamps_
    with_t = model.user_vectors(world.histories[:4], timestamps=world.timestamps[:4])
    without = model.user_vectors(world.histories[:4])
    assert np.isfinite(with_t).all() and not np.array_equal(with_t, without)
    model.save(tmp_path / "t.llmrec")
    again = SequenceTowers.load(tmp_path / "t.llmrec")
    np.testing.assert_array_equal(
        again.user_vectors(world.histories[:4], timestamps=world.timestamps[:4]), with_t)


# ------------------------------------------------------------------ persistence

def test_save_load_round_trip_gives_identical_vectors(world, text_towers, ids_towers, tmp_path):
    for i, model in enumerate((text_towers, ids_towers)):
        path = tmp_path / f"m{i}.llmrec"
        model.save(path)
        loaded = SequenceTowers.load(path)
        assert loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
        np.testing.assert_array_equal(loaded.user_vectors(world.histories),
                                      model.user_vectors(world.histories))
        np.testing.assert_array_equal(loaded.has_id_, model.has_id_)
        assert loaded.best_epoch_ == model.best_epoch_
        copy = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(copy.user_vectors(world.histories[:3]),
                                      model.user_vectors(world.histories[:3]))


def test_damaged_or_foreign_files_raise_format_error(text_towers, tmp_path):
    path = tmp_path / "m.llmrec"
    text_towers.save(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "bad.llmrec").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        SequenceTowers.load(tmp_path / "bad.llmrec")
    (tmp_path / "short.llmrec").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(FormatError):
        SequenceTowers.load(tmp_path / "short.llmrec")
    from llmrec._fileformat import save_arrays
    save_arrays(tmp_path / "other.llmrec", "ALS", 1, {}, {})
    with pytest.raises(FormatError, match="not a SequenceTowers"):
        SequenceTowers.load(tmp_path / "other.llmrec")


def test_real_encoder_path_with_a_tiny_bert(world, tmp_path):
    pytest.importorskip("transformers")
    from llmrec.text import TextEncoder
    from llmrec.text.testing import save_tiny_bert

    encoder = TextEncoder(save_tiny_bert(tmp_path / "bert"))
    texts = [f"{['love', 'war', 'space', 'crime', 'comedy'][t]} story {i}"
             for i, t in enumerate(world.topic)]
    model = SequenceTowers(**SMALL).fit(world.histories, item_texts=texts, encoder=encoder, epochs=2)
    assert model.text_dim_ == encoder.dim and model.encoder_ is encoder
    np.testing.assert_allclose(model.item_text_vectors_, encoder.encode(texts), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.item_vectors(texts=["war story"]),
                               model.item_vectors(text_vectors=encoder.encode(["war story"])),
                               atol=1e-5, rtol=0)
    U = model.user_vectors(world.histories[:3], requests=["a war film", None, "space"])
    R = encoder.encode(["a war film", "space"], kind="query")
    tol = _tolerance(model, np.abs(U).max())
    np.testing.assert_allclose(U[[0, 2]], model.user_vectors(
        [world.histories[0], world.histories[2]], request_vectors=R), atol=tol, rtol=0)
    np.testing.assert_allclose(U[1], model.user_vectors(world.histories[1:2])[0], atol=tol, rtol=0)
    model.save(tmp_path / "m.llmrec")
    loaded = SequenceTowers.load(tmp_path / "m.llmrec", encoder=encoder)
    np.testing.assert_array_equal(loaded.item_vectors(texts=["war story"]),
                                  model.item_vectors(texts=["war story"]))
    with pytest.raises(ValueError, match="missing|not a str"):
        SequenceTowers(**SMALL).fit(world.histories, item_texts=texts[:-1] + [None],
                                    encoder=encoder, epochs=1)


# ------------------------------------------------------------------ estimator and errors

def test_estimator_conventions(world):
    model = SequenceTowers(dim=32, text=None)
    assert model.get_params()["dim"] == 32 and "dim=32" in repr(model)
    assert model.set_params(layers=3) is model and model.layers == 3
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(bogus=1)
    with pytest.raises(NotFittedError):
        model.user_vectors(world.histories)
    with pytest.raises(NotFittedError):
        model.item_vectors()
    with pytest.raises(NotFittedError):
        model.module_
    with pytest.raises(TypeError):
        SequenceTowers(32)  # keyword-only


@pytest.mark.parametrize("params, error, match", [
    ({"dim": 0}, ValueError, "dim must be >= 2"),
    ({"dim": 5000}, ValueError, "dim must be at most 4096"),
    ({"dim": 15, "heads": 2}, ValueError, "multiple of heads"),
    ({"layers": 0}, ValueError, "layers must be >= 1"),
    ({"layers": 2.0}, TypeError, "layers must be an integer"),
    ({"max_history": 0}, ValueError, "max_history must be >= 1"),
    ({"max_history": 10**6}, ValueError, "max_history must be at most 4096"),
    ({"text": "bogus"}, ValueError, "text must be one of"),
    ({"id_dropout": 1.0}, ValueError, "id_dropout must be in"),
    ({"lr": 0.0}, ValueError, "lr must be in"),
    ({"average": 1.0}, ValueError, "average must be in"),
    ({"average": -0.1}, ValueError, "average must be in"),
    ({"average_epochs": -1}, ValueError, "average_epochs must be >= 0"),
    ({"average_epochs": 21}, ValueError, "average_epochs must be at most 20"),
    ({"average_epochs": 1.5}, TypeError, "average_epochs must be an integer"),
    ({"num_threads": -1}, ValueError, "num_threads must be >= 0"),
    ({"random_state": "x"}, TypeError, "random_state"),
])
def test_bad_parameters(world, params, error, match):
    with pytest.raises(error, match=match):
        SequenceTowers(**{**SMALL, **params}).fit(world.histories, item_text_vectors=world.text,
                                                  encoder=None, epochs=1)


def test_bad_fit_inputs(world):
    model = SequenceTowers(**SMALL)
    fit = lambda H, **kw: model.fit(H, **{"item_text_vectors": world.text, "encoder": None,  # noqa: E731
                                          "epochs": 1, **kw})
    with pytest.raises(ValueError, match=r"histories\[1\] holds item id 120, outside \[0, 120\)"):
        fit([[1, 2], [3, N_ITEMS]])
    with pytest.raises(ValueError, match="outside"):
        fit([[1, -1]])
    with pytest.raises(TypeError, match="single id"):
        fit([1, 2, 3])
    with pytest.raises(TypeError, match="integer item ids"):
        fit([np.array([1.5, 2.0])])
    with pytest.raises(TypeError, match="sequence of item-id arrays"):
        fit("1 2 3")
    with pytest.raises(ValueError, match="all empty"):
        fit([[], []])
    with pytest.raises(ValueError, match="needs item_texts"):
        model.fit(world.histories, encoder=None, epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        fit(world.histories, item_text_vectors=np.full((N_ITEMS, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="needs validation > 0"):
        fit(world.histories, epochs="auto", validation=0.0)
    with pytest.raises(ValueError, match="epochs must be"):
        fit(world.histories, epochs="many")
    with pytest.raises(ValueError, match="timestamps"):
        fit(world.histories, timestamps=world.timestamps[:-1])
    with pytest.raises(ValueError, match="n_items"):
        fit(world.histories, n_items=N_ITEMS + 1)
    with pytest.raises(TypeError, match="encoder must be"):
        model.fit(world.histories, item_texts=["a"] * N_ITEMS, encoder=42, epochs=1)


def test_bad_serving_inputs(world, text_towers, ids_towers):
    with pytest.raises(ValueError, match="outside"):
        text_towers.user_vectors([[0, N_ITEMS + 5]])
    with pytest.raises(ValueError, match="outside"):
        text_towers.item_vectors([N_ITEMS])
    with pytest.raises(ValueError, match="dimension 16"):
        text_towers.item_vectors(text_vectors=np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="request_vectors must have 2 rows"):
        text_towers.user_vectors(world.histories[:2], request_vectors=np.zeros((3, TEXT_DIM)))
    with pytest.raises(ValueError, match="one entry per history"):
        text_towers.user_vectors(world.histories[:2], requests=["a"])
    with pytest.raises(ValueError, match="no encoder"):
        text_towers.item_vectors(texts=["a new item"])
    with pytest.raises(ValueError, match="text=None"):
        ids_towers.user_vectors(world.histories[:1], request_vectors=np.zeros((1, TEXT_DIM)))
    with pytest.raises(ValueError, match="text=None"):
        ids_towers.item_vectors(text_vectors=np.zeros((1, TEXT_DIM)))
    with pytest.raises(ValueError, match="text=None"):
        ids_towers.add_items(text_vectors=np.zeros((1, TEXT_DIM)))


def test_arrays_round_trip_for_embedding_in_other_files(world, text_towers):
    from llmrec.towers.persistence import towers_from_arrays, towers_to_arrays

    meta, arrays = towers_to_arrays(text_towers)
    again = towers_from_arrays(SequenceTowers, meta, arrays)
    np.testing.assert_array_equal(again.user_vectors(world.histories[:5]),
                                  text_towers.user_vectors(world.histories[:5]))
    bad = dict(arrays)
    bad["param/user.norm.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(FormatError, match="user.norm.weight"):
        towers_from_arrays(SequenceTowers, meta, bad)
    with pytest.raises(FormatError, match="has_id"):
        towers_from_arrays(SequenceTowers, meta, {k: v for k, v in arrays.items() if k != "has_id"})
    with pytest.raises(FormatError, match="invalid parameters"):
        towers_from_arrays(SequenceTowers, {**meta, "params": {**meta["params"], "dim": -1}}, arrays)


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, llmrec.towers; m = llmrec.towers.SequenceTowers(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_vectors_feed_an_exact_index(world, text_towers):
    import llmrec

    U = text_towers.user_vectors(world.histories[:20])
    V = text_towers.item_vectors()
    ids, scores = llmrec.ExactIndex(V).search(U, 5)
    S = (U.astype(np.float64) @ V.astype(np.float64).T)
    np.testing.assert_allclose(scores, np.take_along_axis(S, ids, axis=1),
                               atol=_tolerance(text_towers, np.abs(S).max()), rtol=0)
    assert (np.take_along_axis(S, ids, axis=1)[:, -1:] >= np.sort(S, axis=1)[:, -5:-4]
            - _tolerance(text_towers, np.abs(S).max())).all()


# ------------------------------------------------------------------ profiles

def _profile_world(world: World, seed: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
    """Profiles that name each user's topic (noisy one-hots in the text space, a tenth of
    the users without one: zero rows), and histories whose first item is from a random
    topic: only a profile tells what a user starts with."""
    rng = np.random.default_rng(seed)
    P = (np.eye(N_TOPICS, TEXT_DIM)[world.user_topic]
         + 0.1 * rng.standard_normal((N_USERS, TEXT_DIM))).astype(np.float32)
    P[rng.random(N_USERS) < 0.1] = 0.0
    return P, world.histories


@pytest.fixture(scope="module")
def profile_towers(world: World) -> SequenceTowers:
    P, H = _profile_world(world)
    return SequenceTowers(**SMALL).fit(H, item_text_vectors=world.text, encoder=None,
                                       profile_vectors=P, epochs=25)


def _topic_share(model: SequenceTowers, world: World, topics: np.ndarray, **kwargs) -> float:
    U = model.user_vectors([np.array([], dtype=np.int64)] * len(topics), **kwargs)
    top = np.argsort(-(U @ model.item_vectors().T), axis=1)[:, :10]
    return float((world.topic[top] == topics[:, None]).mean())


def test_a_profile_ranks_a_user_without_history_toward_their_topic(world, text_towers, profile_towers):
    assert profile_towers.uses_profiles_ and not text_towers.uses_profiles_
    topics = np.repeat(np.arange(N_TOPICS), 4)
    rng = np.random.default_rng(7)
    P = (np.eye(N_TOPICS, TEXT_DIM)[topics] + 0.1 * rng.standard_normal((len(topics), TEXT_DIM))
         ).astype(np.float32)
    with_profile = _topic_share(profile_towers, world, topics, profile_vectors=P)
    # Without a profile every empty history gets the same vector: one topic's share at most.
    without = _topic_share(profile_towers, world, topics)
    ignored = _topic_share(text_towers, world, topics, profile_vectors=P)  # not fitted with them
    assert with_profile >= 0.6 and without <= 0.35 and ignored <= 0.35, (with_profile, without, ignored)
    np.testing.assert_array_equal(text_towers.user_vectors(world.histories[:5], profile_vectors=P[:5]),
                                  text_towers.user_vectors(world.histories[:5]))


def test_profile_forward_matches_a_float64_reference_batch_and_single(world, profile_towers, rng):
    histories = [rng.choice(N_ITEMS, size=n) for n in (0, 1, 4, 10, 17)]
    P = rng.standard_normal((len(histories), TEXT_DIM)).astype(np.float32)
    P[2] = 0.0  # no profile: BOS alone
    ref = np.array([_reference_user_vector(profile_towers, h, p.astype(np.float64))
                    for h, p in zip(histories, P)])
    tol = _tolerance(profile_towers, np.abs(ref).max())
    np.testing.assert_allclose(profile_towers.user_vectors(histories, profile_vectors=P), ref,
                               atol=tol, rtol=0)
    single = np.vstack([profile_towers.user_vectors([h], profile_vectors=P[i:i + 1])
                        for i, h in enumerate(histories)])
    np.testing.assert_allclose(single, ref, atol=tol, rtol=0)
    np.testing.assert_array_equal(profile_towers.user_vectors(histories[2:3], profile_vectors=P[2:3]),
                                  profile_towers.user_vectors(histories[2:3]))


class _TopicEncoder:
    """A stand-in encoder: a text "topic k" is the one-hot of k; anything else is ones."""

    dim = TEXT_DIM

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []

    def encode(self, texts, *, kind="document", show_progress=False):
        self.calls.append((list(texts), kind))
        out = np.ones((len(texts), TEXT_DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            if t.startswith("topic "):
                out[i] = np.eye(TEXT_DIM, dtype=np.float32)[int(t.split()[1])]
        return out


def test_profile_texts_are_encoded_and_blank_ones_are_no_profile(world, tmp_path):
    encoder = _TopicEncoder()
    texts = [f"topic {t}" if u % 10 else None for u, t in enumerate(world.user_topic)]
    texts[1] = "   "
    model = SequenceTowers(**SMALL).fit(world.histories, item_text_vectors=world.text,
                                        encoder=encoder, profiles=texts, epochs=2)
    fitted_texts = encoder.calls[-1][0]
    assert len(fitted_texts) == sum(1 for t in texts if t and t.strip())  # blank ones not encoded
    asked = ["topic 2", None, ""]
    vectors = np.zeros((3, TEXT_DIM), dtype=np.float32)
    vectors[0, 2] = 1.0
    H = world.histories[:3]
    np.testing.assert_array_equal(model.user_vectors(H, profiles=asked),
                                  model.user_vectors(H, profile_vectors=vectors))
    path = tmp_path / "p.llmrec"
    model.save(path)
    again = SequenceTowers.load(path, encoder=encoder)
    assert again.uses_profiles_
    np.testing.assert_array_equal(again.user_vectors(H, profiles=asked),
                                  model.user_vectors(H, profiles=asked))


def test_bad_profiles(world, text_towers, profile_towers, ids_towers):
    P, H = _profile_world(world)
    fit = lambda **kw: SequenceTowers(**SMALL).fit(H, **{"item_text_vectors": world.text,  # noqa: E731
                                                         "encoder": None, "epochs": 1, **kw})
    with pytest.raises(ValueError, match="profile_vectors must have 300 rows"):
        fit(profile_vectors=P[:-1])
    with pytest.raises(ValueError, match="dimension 16"):
        fit(profile_vectors=P[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        fit(profile_vectors=np.full_like(P, np.nan))
    with pytest.raises(ValueError, match="not both"):
        fit(profile_vectors=P, profiles=["a"] * N_USERS)
    with pytest.raises(ValueError, match="pass an encoder"):
        fit(profiles=["a"] * N_USERS)
    with pytest.raises(ValueError, match="profiles must hold one entry per history"):
        fit(profiles=["a"] * 3, encoder=_TopicEncoder())
    with pytest.raises(TypeError, match=r"profiles\[1\] must be a str or None"):
        fit(profiles=["a", 3] + ["a"] * (N_USERS - 2), encoder=_TopicEncoder())
    with pytest.raises(ValueError, match="need a model with text"):
        SequenceTowers(**SMALL, text=None).fit(H, n_items=N_ITEMS, profile_vectors=P, epochs=1)
    with pytest.raises(ValueError, match="profile_vectors must have 2 rows"):
        profile_towers.user_vectors(H[:2], profile_vectors=P[:3])
    with pytest.raises(ValueError, match="no encoder"):
        profile_towers.user_vectors(H[:2], profiles=["a", "b"])


def test_profile_flags_in_files_are_checked(world, text_towers, profile_towers):
    from llmrec.towers.persistence import towers_from_arrays, towers_to_arrays

    meta, arrays = towers_to_arrays(profile_towers)
    assert meta["uses_profiles"] is True and "param/user.profile.weight" in arrays
    with pytest.raises(FormatError, match="uses_profiles"):
        towers_from_arrays(SequenceTowers, {**meta, "uses_profiles": "yes"}, arrays)
    # a flag without its weights, or weights without the flag
    bare_meta, bare_arrays = towers_to_arrays(text_towers)
    with pytest.raises(FormatError, match="missing"):
        towers_from_arrays(SequenceTowers, {**bare_meta, "uses_profiles": True}, bare_arrays)
    with pytest.raises(FormatError, match="unexpected"):
        towers_from_arrays(SequenceTowers, {**meta, "uses_profiles": False}, arrays)
    # a file written before profiles (no flag) loads as a model without them
    old = {k: v for k, v in bare_meta.items() if k != "uses_profiles"}
    assert not towers_from_arrays(SequenceTowers, old, bare_arrays).uses_profiles_
