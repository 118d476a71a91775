"""Live reload under load: clients on threads keep asking (and writing) while the model
is reloaded several times, through POST /admin/reload and SIGHUP's path; not one request
fails, every acknowledged write survives each reload, and a request in flight during a
reload finishes on the model it started with."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from serve_helpers import AUTH, KEY, fit_small, thread_server  # first: skips the module without the [serve] extra
import httpx  # noqa: E402

from llmrec.serve import create_app  # noqa: E402

from recommender_helpers import WordEncoder  # noqa: E402

pytestmark = pytest.mark.serve

CLIENTS = 4
REQUESTS_PER_CLIENT = 150
RELOADS = 5
TIME_LIMIT_S = 90.0


@pytest.fixture(scope="module")
def fitted():
    return fit_small()


@pytest.fixture
def app(fitted, tmp_path):
    rec, _ = fitted
    rec.save(tmp_path / "model")
    return create_app(tmp_path / "model", api_key=KEY, encoder=WordEncoder(), threads=8)


def test_no_request_fails_while_the_model_is_reloaded(app, fitted, rng):
    _, (interactions, items, _) = fitted
    users = sorted(set(interactions["user_id"].tolist()))
    item_ids = items["item_id"].tolist()
    failures: list[str] = []
    acknowledged: list[tuple[int, list[int]]] = []
    done = threading.Event()
    deadline = time.monotonic() + TIME_LIMIT_S
    seeds = rng.integers(0, 2**31, CLIENTS + 1)

    def reader(url: str, seed: int) -> None:
        import numpy as np

        local = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=30.0) as http:
            for i in range(REQUESTS_PER_CLIENT):
                if time.monotonic() > deadline:
                    failures.append("time limit")
                    return
                path, body = (("/recommend", {"user_id": int(local.choice(users)), "k": 10}) if i % 3 else
                              ("/search", {"query": "a chef in the kitchen", "k": 5}))
                try:
                    got = http.post(path, json=body)
                    if got.status_code != 200 or not got.json()["items"]:
                        failures.append(f"{path} {got.status_code} {got.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(f"{path} {type(error).__name__}: {error}")

    def writer(url: str, seed: int) -> None:
        import numpy as np

        local = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=30.0) as http:
            for n in range(1000):
                if done.is_set() or time.monotonic() > deadline:
                    return
                user, picked = 5_000_000 + n, local.choice(item_ids, 2, replace=False).tolist()
                got = http.post("/events", json={"user_id": user, "items": picked}, headers=AUTH)
                if got.status_code != 200:
                    failures.append(f"/events {got.status_code} {got.text[:200]}")
                    return
                acknowledged.append((user, picked))

    with thread_server(app) as url:
        threads = [threading.Thread(target=reader, args=(url, int(s))) for s in seeds[:CLIENTS]]
        threads.append(threading.Thread(target=writer, args=(url, int(seeds[-1]))))
        for t in threads:
            t.start()
        versions = []
        with httpx.Client(base_url=url, timeout=60.0) as admin:
            for _ in range(RELOADS):
                time.sleep(0.2)
                got = admin.post("/admin/reload", headers=AUTH)
                assert got.status_code == 200, got.text
                versions.append(got.json()["version"])
        for t in threads[:CLIENTS]:
            t.join(max(deadline - time.monotonic(), 0.1))
        done.set()
        threads[-1].join(max(deadline - time.monotonic(), 0.1))
        assert not any(t.is_alive() for t in threads), "a client did not finish in time"
        assert failures == []
        assert versions == list(range(2, RELOADS + 2))
        holder = app.state.holder
        model = holder.model
        assert acknowledged, "the writer made no write during the reloads"
        for user, picked in acknowledged:  # every acknowledged write is in the served model
            row = int(model._user_map.rows([user], "user")[0])
            assert model._item_map.to_ids(model._histories.get(row)).tolist() == picked
        assert holder.journal.records == len(acknowledged)
        metrics = httpx.get(f"{url}/metrics").text
        assert f"llmrec_model_version {float(RELOADS + 1)}" in metrics


def test_a_request_in_flight_finishes_on_the_old_model(app, fitted, monkeypatch):
    _, (interactions, _, _) = fitted
    user = int(interactions["user_id"].iloc[0])
    holder = app.state.holder
    old = holder.model
    started, release = threading.Event(), threading.Event()
    real = old.recommend

    def slow(*args, **kwargs):
        started.set()
        assert release.wait(TIME_LIMIT_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(old, "recommend", slow)
    results = {}
    with thread_server(app) as url:
        def ask() -> None:
            results["slow"] = httpx.post(f"{url}/recommend", json={"user_id": user}, timeout=TIME_LIMIT_S)

        t = threading.Thread(target=ask)
        t.start()
        assert started.wait(TIME_LIMIT_S)
        assert httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=TIME_LIMIT_S).status_code == 200
        assert holder.model is not old
        fresh = httpx.post(f"{url}/recommend", json={"user_id": user}, timeout=TIME_LIMIT_S)
        assert fresh.status_code == 200  # served by the new model while the old one is busy
        release.set()
        t.join(TIME_LIMIT_S)
        assert not t.is_alive()
    assert results["slow"].status_code == 200
    assert results["slow"].json()["items"] == fresh.json()["items"]  # the same saved model


def test_a_failed_reload_keeps_the_model(app, tmp_path):
    holder = app.state.holder
    (holder.directory / "recommender.llmrec").write_bytes(b"damaged")
    with thread_server(app) as url:
        got = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=60)
        assert got.status_code == 500 and "still serving version 1" in got.json()["error"]
        assert "Traceback" not in got.text
        assert httpx.get(f"{url}/health").json()["version"] == 1
        assert 'llmrec_reloads_total{outcome="failed"} 1.0' in httpx.get(f"{url}/metrics").text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_reload_loads_on_a_background_thread_of_lower_priority():
    """The load and replay run on a fresh thread whose nice value is raised (Linux), so
    requests come first; its result and its exceptions reach the caller, whose own
    priority is unchanged."""
    import os

    from llmrec.serve.holder import BACKGROUND_NICENESS, in_background

    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = priority()
    name, theirs = in_background(lambda: (threading.current_thread().name, priority()))
    assert name != threading.current_thread().name
    assert theirs == min(19, mine + BACKGROUND_NICENESS)
    assert priority() == mine
    with pytest.raises(KeyError, match="missing"):
        in_background(lambda: {}["missing"])


def test_every_load_warms_the_model_up_and_a_model_that_cannot_is_still_served(fitted, tmp_path, caplog):
    """The text encoder a saved model names is built during the (background) load, not
    by the first request that needs it; an encoder that cannot be built leaves the
    model served for what needs no text."""
    pytest.importorskip("transformers")
    from llmrec import Recommender, TextEncoder
    from llmrec.serve.holder import ModelHolder
    from llmrec.text.testing import save_tiny_bert

    _, (interactions, items, _) = fitted
    bert = save_tiny_bert(tmp_path / "bert")
    Recommender(encoder=TextEncoder(str(bert)), random_state=0, validation=0.0, regularization=10.0,
                factors=8, iterations=2, num_threads=1).fit(interactions, items=items).save(tmp_path / "m")
    cold = Recommender.load(tmp_path / "m")  # the saved encoder spec: built on first use
    assert cold._encoder_obj is None
    assert cold.warm_up() is cold and cold._encoder_obj is not None
    holder = ModelHolder(tmp_path / "m")
    holder.reload()
    assert holder.model._encoder_obj is not None  # warmed before it was served
    import shutil
    shutil.rmtree(bert)  # the encoder can no longer be built
    with caplog.at_level("WARNING", logger="llmrec.serve"):
        holder.reload()
    assert "could not be warmed up" in caplog.text and holder.version == 2
    user = interactions["user_id"].iloc[0]
    assert len(holder.model.recommend(user, 5).ids) == 5
    with pytest.raises(OSError):
        holder.model.search("anything", 5)
    holder.close()
