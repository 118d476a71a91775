"""A Recommender shared by many threads: every request sees the model as of one moment
(one catalogue, whole updates, no half-written item row), and an 8-thread mix of
requests, updates, new items and saves ends in the state a serial replay of the same
writes gives."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender, UnknownIdError

from recommender_helpers import WordEncoder, small_data

TIME_LIMIT_S = 60.0  # every thread loop below is bounded in count and by this


@pytest.fixture(scope="module")
def data():
    return small_data(200, 150)


def _fit(data, **kwargs) -> Recommender:
    interactions, items, _ = data
    return Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                       factors=16, iterations=4, num_threads=1, **kwargs).fit(interactions, items=items)


@contextmanager
def _frequent_switches():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: interleavings a real load would find
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIME_LIMIT_S
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.1))
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"


def _new_item(item_id: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [item_id], "text": [f"a chef story about kitchen {item_id}"]})


# ----------------------------------------------------------------- one catalogue
def test_readers_see_one_catalogue_while_items_are_added(data):
    """The reported failure: recommend for > 16 users, similar_items and
    recommend_for_history raised "exclude must have shape (n, n_items)" when add_items
    grew the catalogue between two reads of it."""
    rec = _fit(data)
    users = list(rec._user_map.ids[:20])
    items = rec._item_map.ids[:5]
    errors: list[BaseException] = []
    done = threading.Event()
    calls = [0]

    def read(kind: int) -> None:
        try:
            for _ in range(100_000):
                if done.is_set():
                    return
                if kind == 0:
                    r = rec.recommend(users, 5)
                    assert r.ids.shape == (20, 5)
                elif kind == 1:
                    assert rec.similar_items(list(items), 5).ids.shape == (5, 5)
                elif kind == 2:
                    assert rec.recommend_for_history(list(items), 5).ids.shape == (5,)
                else:
                    assert rec.recommend(users[:3], 5, allow=list(items)).ids.shape == (3, 5)
                calls[0] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def write() -> None:
        try:
            for j in range(40):
                rec.add_items(_new_item(80_000 + j))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            done.set()

    with _frequent_switches():
        _run([threading.Thread(target=read, args=(i % 4,)) for i in range(7)] + [threading.Thread(target=write)])
    assert not errors, f"{len(errors)} failures, first: {errors[0]!r}"
    assert calls[0] > 40 and len(rec._item_map) == 190


def test_a_pinned_snapshot_is_never_changed_by_writers(data):
    """A request holds one snapshot: items added and item rows re-solved after it was
    taken are invisible to it (the rows are written into copies while it runs), and the
    next requests see them."""
    rec = _fit(data)
    rec.add_items(_new_item(90_000))  # a late item: re-solved by every update that clicks it
    row = int(rec._item_map.rows([90_000], "i")[0])
    names = ("V", "inv_norm", "P", "Q", "warm")
    with rec._publisher.pin() as (snap, _):
        before = {name: getattr(snap.items, name).copy() for name in names}
        n, als_items, n_users = snap.n_items, snap.als.n_items_, snap.n_users
        index_rows = len(snap.items.index.behaviour)
        rec.add_items(_new_item(90_001))
        rec.update(0, [90_000, rec._item_map.ids[4]])
        rec.update(77_777, [90_000])  # a new user
        for name in names:
            np.testing.assert_array_equal(getattr(snap.items, name), before[name], err_msg=name)
        assert snap.n_items == n and snap.als.n_items_ == als_items
        assert len(snap.items.index.behaviour) == index_rows and snap.n_users == n_users
        with pytest.raises(UnknownIdError, match="90001"):
            rec._item_rows(snap, [90_001], "item_ids")
        with pytest.raises(UnknownIdError, match="77777"):
            rec._users_of(snap, rec._user_map.rows([77_777], "u"), "user_ids", False)
    now = rec._items
    assert now.V is not before["V"] and now.warm[row] == 1
    assert not np.array_equal(now.V[row], before["V"][row])  # re-solved from its clicks
    assert len(rec._item_map) == n + 1 and rec.recommend(77_777, 5).ids.shape == (5,)
    # No request running: the next re-solve writes in place, no copy.
    rec.update(1, [90_000])
    assert rec._items.V is now.V


def test_item_rows_never_change_under_a_running_request(data):
    """The torn-row case: a request reading item rows while update re-solves them."""
    rec = _fit(data)
    late = [95_000 + j for j in range(4)]
    for item in late:
        rec.add_items(_new_item(item))
    rows = rec._item_map.rows(late, "late")
    errors: list[str] = []
    done = threading.Event()
    checks = [0]

    def read() -> None:
        while not done.is_set() and checks[0] < 200_000:
            with rec._publisher.pin() as (snap, _):
                first = [getattr(snap.items, n)[rows].copy() for n in ("V", "inv_norm", "P", "Q")]
                time.sleep(0)
                second = [getattr(snap.items, n)[rows] for n in ("V", "inv_norm", "P", "Q")]
                if not all(np.array_equal(a, b) for a, b in zip(first, second)):
                    errors.append("a pinned item row changed")
            checks[0] += 1

    def write() -> None:
        try:
            for j in range(60):
                rec.update(j % 30, [late[j % 4], rec._item_map.ids[j % 100]])
        finally:
            done.set()

    with _frequent_switches():
        _run([threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=write)])
    assert not errors and checks[0] > 60
    assert rec._items.warm[rows].all()


# ----------------------------------------------------------------- 8 threads vs serial replay
def test_eight_threads_against_a_serial_replay(data, tmp_path, rng):
    """Two writers (update, add_items), a saver and five kinds of readers on one model.
    Writes are logged in the order they take effect; replayed serially on a fresh fit
    they give the same final model, each save is the model after a prefix of the log,
    and every read is well formed and consistent with the writes before it began."""
    rec = _fit(data)
    fitted_seen = {u: set(rec._item_map.to_ids(rec._histories.get(row)).tolist())
                   for row, u in enumerate(rec._user_map.ids.tolist())}
    log: list[tuple[str, tuple]] = []
    log_lock = threading.Lock()  # writes and their log entries in one order
    saves: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    problems: list[str] = []
    writers_left = [2]
    stop = threading.Event()
    n_updates, n_adds, n_saves = 60, 15, 3
    choices = {"user": rng.integers(0, 260, n_updates), "item": rng.integers(0, 10**6, (n_updates, 2))}

    def logged(op: str, *args) -> None:
        with log_lock:
            getattr(rec, op)(*args)
            log.append((op, args))

    def guarded(work):
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
                stop.set()
        return run

    def finished() -> None:
        with log_lock:
            writers_left[0] -= 1

    def updates() -> None:
        try:
            for j in range(n_updates):
                if stop.is_set():
                    return
                known = rec._item_map.ids  # includes items being added: update may see them
                picked = [known[int(i) % len(known)] for i in choices["item"][j]]
                user = int(choices["user"][j])  # >= 200: new users
                try:
                    logged("update", user, picked)
                except UnknownIdError:
                    pass  # an item id published a moment later: a valid refusal, not logged
        finally:
            finished()

    def additions() -> None:
        try:
            for j in range(n_adds):
                if stop.is_set():
                    return
                logged("add_items", _new_item(60_000 + j))
        finally:
            finished()

    def saver() -> None:
        try:
            for j in range(n_saves):  # spread over the writes: after 0, ~1/3, ~2/3 of them
                while len(log) < j * (n_updates + n_adds) // 3 and writers_left[0] and not stop.is_set():
                    time.sleep(0.002)
                path = str(tmp_path / f"save{j % 2}")
                with log_lock:
                    rec.save(path)
                    prefix = len(log)
                loaded = Recommender.load(path, encoder=rec.encoder)
                saves.append((prefix, _state(loaded)))
            deadline = time.monotonic() + TIME_LIMIT_S
            while writers_left[0] and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            stop.set()

    def reader(kind: int) -> None:
        users = list(range(20))
        for _ in range(100_000):
            if stop.is_set():
                return
            start = len(log)  # the writes that finished before this read began
            if kind == 0:
                r = rec.recommend(users, 8)
                _check_ids(rec, r.ids, (20, 8), problems)
                for u, ids in zip(users, r.ids):
                    clicked = fitted_seen[u] | _clicked(log[:start], u)
                    if clicked & set(ids.tolist()):
                        problems.append(f"user {u} was shown an item clicked before the request")
            elif kind == 1:
                u = int(rng.integers(0, 200))
                r = rec.recommend(u, 5, diversity=0.3)
                _check_ids(rec, r.ids, (5,), problems)
            elif kind == 2:
                item = rec._item_map.ids[int(rng.integers(0, 150))]
                r = rec.similar_items([item], 6)
                _check_ids(rec, r.ids, (1, 6), problems)
                if item in r.ids:
                    problems.append("similar_items returned the item itself")
            elif kind == 3:
                r = rec.recommend_for_history(list(rec._item_map.ids[:3]), 6, query="chef kitchen")
                _check_ids(rec, r.ids, (6,), problems)
            else:
                r = rec.search("chef kitchen recipes", 6, user_id=int(rng.integers(0, 200)))
                _check_ids(rec, r.ids, (6,), problems)
                rec.explain(0, rec._item_map.ids[1])

    threads = [threading.Thread(target=guarded(f)) for f in (updates, additions, saver)]
    threads += [threading.Thread(target=guarded(lambda k=k: reader(k))) for k in range(5)]
    assert len(threads) == 8
    with _frequent_switches():
        _run(threads)
    assert not errors, f"{len(errors)} failures, first: {errors[0]!r}"
    assert not problems, problems[:5]
    assert len(saves) == n_saves and sum(op == "update" for op, _ in log) > n_updates // 2

    # Serial replay on a fresh fit, checking each save at its prefix on the way.
    replay = _fit(data)
    by_prefix = {}
    for prefix, state in saves:
        by_prefix.setdefault(prefix, []).append(state)
    for step in range(len(log) + 1):
        for state in by_prefix.get(step, []):
            _assert_same_state(state, _state(replay))
        if step < len(log):
            op, args = log[step]
            getattr(replay, op)(*args)
    _assert_same_state(_state(rec), _state(replay))


def _clicked(writes: list, user: int) -> set:
    return {i for op, args in writes if op == "update" and args[0] == user for i in args[1]}


def _check_ids(rec: Recommender, ids: np.ndarray, shape: tuple, problems: list[str]) -> None:
    if ids.shape != shape:
        problems.append(f"shape {ids.shape}, expected {shape}")
    valid = ids[ids != -1]
    if not rec._item_map.contains(valid).all():
        problems.append("an unknown item id in the results")
    for row in np.atleast_2d(ids):
        kept = row[row != -1]
        if len(set(kept.tolist())) != len(kept):
            problems.append("an item twice in one result")


def _state(rec: Recommender) -> dict:
    """Everything that defines what the model answers (histories, ids, item and user
    rows) plus its answers for every user."""
    n = len(rec._user_map)
    indptr, hist = rec._histories.arrays()
    items = rec._items
    state = {"user_ids": rec._user_map.ids.copy(), "item_ids": rec._item_map.ids.copy(),
             "indptr": indptr.copy(), "hist": hist.copy()}
    state.update({name: getattr(items, name).copy() for name in ("V", "inv_norm", "P", "Q", "E", "warm")})
    state.update({f"user_{k}": v[:n].copy() for k, v in rec._users.items() if v is not None})
    r = rec.recommend(list(rec._user_map.ids), 10)
    state.update(ids=r.ids, scores=r.scores)
    return state


def _assert_same_state(got: dict, expected: dict) -> None:
    # The same float32 operations in the same order on the same data: bit-identical.
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# ----------------------------------------------------------------- in-place updates
def test_drain_holds_new_requests_back_until_the_running_ones_finish():
    from llmrec.recommender.snapshot import Publisher

    publisher, order = Publisher("snapshot"), []
    pinned, release = threading.Event(), threading.Event()

    def running() -> None:
        with publisher.pin():
            pinned.set()
            release.wait(TIME_LIMIT_S)
            order.append("running request ends")

    def late() -> None:
        deadline = time.monotonic() + TIME_LIMIT_S
        while not publisher._held_back and time.monotonic() < deadline:  # the writer waits
            time.sleep(0.001)
        with publisher.pin() as (snapshot, _):
            order.append(f"late request sees {snapshot}")

    first, second = threading.Thread(target=running), threading.Thread(target=late)
    first.start()
    assert pinned.wait(TIME_LIMIT_S)
    second.start()
    threading.Timer(0.2, release.set).start()
    with publisher.lock:
        start = time.monotonic()
        assert publisher.drain(TIME_LIMIT_S)
        waited = time.monotonic() - start
        publisher.current = "rewritten"
        order.append("written")
    for t in (first, second):
        t.join(TIME_LIMIT_S)
    assert waited >= 0.15
    assert order == ["running request ends", "written", "late request sees rewritten"]
    assert publisher.readers == 0


def test_drain_gives_up_after_its_timeout_and_holds_nothing_back():
    from llmrec.recommender.snapshot import Publisher

    publisher = Publisher("snapshot")
    with publisher.pin():
        with publisher.lock:
            start = time.monotonic()
            assert not publisher.drain(0.05)
            assert 0.04 <= time.monotonic() - start < TIME_LIMIT_S
        with publisher.pin():  # not held back: the writer copies instead
            assert publisher.readers == 2
    assert publisher.readers == 0


def _count_copies(monkeypatch) -> list[int]:
    import llmrec.recommender.updates as model

    copies, copy = [], model.with_rows
    monkeypatch.setattr(model, "with_rows", lambda *a: copies.append(1) or copy(*a))
    return copies


def test_an_update_during_a_long_request_copies_and_that_request_keeps_its_rows(data, monkeypatch):
    rec = _fit(data)
    rec.add_items(_new_item(90_000))  # no clicks yet: an update clicking it re-solves its rows
    copies = _count_copies(monkeypatch)
    with rec._publisher.pin() as (snap, _):  # a request running past the wait
        before = {name: np.array(getattr(snap.items, name)) for name in ("V", "Vn", "P", "Q")}
        rec.update(0, [90_000])
        for name, rows in before.items():
            assert np.array_equal(getattr(snap.items, name), rows), name
    assert copies == [1]
    after = rec._publisher.current.items
    row = rec._item_map.rows([90_000], "item")[0]
    assert not np.array_equal(after.V[row], before["V"][row])  # the update is published


def test_updates_under_steady_requests_write_in_place(data, monkeypatch):
    """Requests a few ms long, back to back on three threads: the updates wait for them
    rather than copy the item matrices each time."""
    rec = _fit(data)
    rec.add_items(pd.concat([_new_item(91_000 + j) for j in range(20)], ignore_index=True))
    copies = _count_copies(monkeypatch)
    stop, errors = threading.Event(), []
    deadline = time.monotonic() + TIME_LIMIT_S

    def read() -> None:
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                assert rec.recommend([1, 2], 5).ids.shape == (2, 5)
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for j in range(20):
            rec.update(j % 7, [91_000 + j])
    finally:
        stop.set()
        for t in readers:
            t.join(TIME_LIMIT_S)
    assert not errors
    assert len(copies) <= 5, f"{len(copies)} of 20 updates copied the item matrices"
