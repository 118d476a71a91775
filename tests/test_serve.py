"""The HTTP endpoints against the library on the same model: results, writes, the key,
caps, bad input (4xx naming the field, never a traceback), metrics, docs and the page."""

from __future__ import annotations

import json
import subprocess
import time
import sys

import numpy as np
import pytest

from serve_helpers import AUTH, KEY, fit_small, thread_server  # first: skips the module without the [serve] extra

import httpx  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from llmrec import Recommender  # noqa: E402
from llmrec.serve import create_app, limits, reads  # noqa: E402

from recommender_helpers import WordEncoder  # noqa: E402

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def fitted():
    return fit_small()


@pytest.fixture
def model_dir(fitted, tmp_path):
    rec, _ = fitted
    directory = tmp_path / "model"
    rec.save(directory)
    return directory


@pytest.fixture
def client(model_dir):
    with TestClient(create_app(model_dir, api_key=KEY, encoder=WordEncoder())) as c:
        yield c


def _users_items(fitted):
    _, (interactions, items, _) = fitted
    return sorted(set(interactions["user_id"].tolist())), items["item_id"].tolist()


def _unpadded(result):
    ids, scores = np.asarray(result.ids), np.asarray(result.scores)
    return ids[np.isfinite(scores)].tolist(), scores[np.isfinite(scores)]


# ------------------------------------------------------------------ reads
def test_reads_equal_the_library_on_the_saved_model(fitted, client, rng):
    rec, _ = fitted
    users, items = _users_items(fitted)
    for user in rng.choice(users, 5, replace=False).tolist():
        for body, expected in (
                ({"user_id": user, "k": 7}, rec.recommend(user, k=7)),
                ({"user_id": user, "k": 5, "query": "a chef in a kitchen", "diversity": 0.3},
                 rec.recommend(user, k=5, query="a chef in a kitchen", diversity=0.3)),
                ({"user_id": user, "k": 4, "allow": items[:30], "exclude_seen": False},
                 rec.recommend(user, k=4, allow=items[:30], exclude_seen=False))):
            got = client.post("/recommend", json=body)
            assert got.status_code == 200, got.text
            ids, scores = _unpadded(expected)
            assert got.json()["items"] == ids
            np.testing.assert_array_equal(np.float32(got.json()["scores"]), scores)
    history = rng.choice(items, 3, replace=False).tolist()
    got = client.post("/recommend/history", json={"items": history, "k": 6}).json()
    assert got["items"] == _unpadded(rec.recommend_for_history(history, k=6))[0]
    got = client.post("/recommend/history", json={"items": [], "k": 6}).json()  # the most popular
    assert got["items"] == _unpadded(rec.recommend_for_history([], k=6))[0]
    got = client.post("/search", json={"query": "space galaxy orbit", "k": 6}).json()
    assert got["items"] == _unpadded(rec.search("space galaxy orbit", k=6))[0]
    got = client.post("/similar", json={"item_id": items[3], "k": 6}).json()
    assert got["items"] == _unpadded(rec.similar_items(items[3], k=6))[0]
    assert len(got["labels"]) == len(got["items"]) and all(isinstance(t, str) and t for t in got["labels"])
    explained = rec.explain(users[0], items[5])
    got = client.post("/explain", json={"user_id": users[0], "item_id": items[5]}).json()
    assert got["text"] == explained.text
    assert got["score"] == pytest.approx(explained.score, rel=1e-12)


def test_k_beyond_the_catalogue_returns_what_there_is(client, fitted):
    users, items = _users_items(fitted)
    got = client.post("/recommend", json={"user_id": users[0], "k": limits.MAX_K}).json()
    assert 0 < len(got["items"]) <= len(items) and len(got["items"]) == len(set(got["items"]))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("path, body, status, field", [
    ("/recommend", {"user_id": 10**12}, 404, "user_id"),
    ("/recommend", {"user_id": "someone"}, 422, "user_id"),
    ("/recommend", {"user_id": 1.5}, 422, "user_id"),
    ("/recommend", {"user_id": True}, 422, "user_id"),
    ("/recommend", {"user_id": 2**70}, 422, "user_id"),
    ("/recommend", {}, 422, "user_id"),
    ("/recommend", {"user_id": 0, "k": 0}, 422, "k"),
    ("/recommend", {"user_id": 0, "k": limits.MAX_K + 1}, 422, "k"),
    ("/recommend", {"user_id": 0, "k": "10"}, 422, "k"),
    ("/recommend", {"user_id": 0, "diversity": 1.5}, 422, "diversity"),
    ("/recommend", {"user_id": 0, "query": "   "}, 422, "query"),
    ("/recommend", {"user_id": 0, "query": "x" * (limits.MAX_QUERY_CHARS + 1)}, 422, "query"),
    ("/recommend", {"user_id": 0, "allow": [10**12]}, 404, "allow"),
    ("/recommend", {"user_id": 0, "allow": list(range(limits.MAX_IDS + 1))}, 422, "allow"),
    ("/recommend", {"user_id": 0, "scenario": "nope"}, 422, "scenario"),
    ("/recommend", {"user_id": 0, "kk": 3}, 422, "kk"),
    ("/recommend/history", {"items": [10**12]}, 404, "items"),
    ("/search", {"query": ""}, 422, "query"),
    ("/search", {"query": "chef", "user_id": 10**12}, 404, "user_id"),
    ("/similar", {"item_id": 10**12}, 404, "item_id"),
    ("/explain", {"user_id": 0, "item_id": 10**12}, 404, "item_id"),
    ("/explain", {"user_id": 10**12, "item_id": 0}, 404, "user_id"),
])
def test_bad_input_is_a_4xx_naming_the_field(client, fitted, path, body, status, field):
    users, _ = _users_items(fitted)
    if body.get("user_id") == 0:
        body = {**body, "user_id": users[0]}
    got = client.post(path, json=body)
    assert got.status_code == status, got.text
    payload = got.json()
    assert payload["field"] == field, payload
    assert payload["status"] == status and payload["error"]


@pytest.mark.parametrize("content, headers", [
    (b"{not json", {"content-type": "application/json"}),
    (b"[" * 50_000, {"content-type": "application/json"}),
    (b'{"user_id": 1}', {}),
    (b"\xff\xfe", {"content-type": "application/json"}),
    (b"null", {"content-type": "application/json"}),
    (b'{"user_id": 1}', {"content-type": "text/plain"}),
    (b'{"user_id": 1}', {"content-type": "application/x-www-form-urlencoded"}),
])
def test_broken_bodies_are_4xx_json(client, content, headers):
    got = client.post("/recommend", content=content, headers=headers)
    assert 400 <= got.status_code < 500, got.text
    assert "Traceback" not in got.text and got.json()["status"] == got.status_code


def test_body_over_the_cap_is_refused_before_parsing(client, fitted, monkeypatch):
    users, _ = _users_items(fitted)
    parsed = []
    big = b'{"user_id": %d, "query": "%s"}' % (users[0], b"x" * limits.MAX_BODY_BYTES)

    def chunks():  # no Content-Length: counted while it arrives
        for _ in range(3):
            yield b"x" * (limits.MAX_BODY_BYTES // 2)

    answers = []
    with monkeypatch.context() as patch:  # neither must be reached
        patch.setattr(json, "loads", lambda *a, **k: parsed.append(1))
        patch.setattr(reads, "parse", lambda *a, **k: parsed.append(1))
        for content in (big, chunks()):
            answers.append(client.post("/recommend", content=content,
                                       headers={"content-type": "application/json"}))
    assert not parsed
    for got in answers:
        assert got.status_code == 413 and got.json()["field"] == "body"


def test_unexpected_errors_are_a_json_500_without_internals(model_dir, monkeypatch):
    app = create_app(model_dir, api_key=KEY, encoder=WordEncoder())
    holder = app.state.holder

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal state /etc/passwd")

    monkeypatch.setattr(holder.model, "recommend", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        got = c.post("/recommend", json={"user_id": 1})
        assert got.status_code == 500
        assert got.json() == {"error": "internal server error (see the server log)", "field": None,
                              "status": 500}
        assert "Traceback" not in got.text and "secret" not in got.text
        assert 'status="500"' in c.get("/metrics").text


# ------------------------------------------------------------------ writes and the key
def _history(model, user):
    row = int(model._user_map.rows([user], "user")[0])
    return model._item_map.to_ids(model._histories.get(row)).tolist()


def test_writes_need_the_key_and_change_nothing_without_it(client, fitted):
    users, items = _users_items(fitted)
    holder = client.app.state.holder
    before = _history(holder.model, users[0])
    wrong = [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": f"Basic {KEY}"},
             {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer "}]
    for headers in wrong:
        for method, path, body in (("POST", "/events", {"user_id": users[0], "items": items[:2]}),
                                   ("POST", "/items", {"items": [{"item_id": 10**6, "text": "a chef"}]}),
                                   ("DELETE", "/items", {"items": items[:1]}),
                                   ("POST", "/admin/reload", None), ("POST", "/admin/save", None)):
            got = client.request(method, path, json=body, headers=headers)
            assert got.status_code == 401, (headers, path, got.text)
            assert got.headers["www-authenticate"] == "Bearer"
    assert _history(holder.model, users[0]) == before
    assert client.get("/health").json()["items"] == len(items)
    assert holder.journal.records == 0 and holder.version == 1
    assert holder.journal.path.read_bytes() == b""


def test_writes_are_refused_without_a_key_file(model_dir, fitted):
    users, items = _users_items(fitted)
    with TestClient(create_app(model_dir, encoder=WordEncoder())) as c:
        got = c.post("/events", json={"user_id": users[0], "items": items[:1]}, headers=AUTH)
        assert got.status_code == 403 and "--api-key-file" in got.json()["error"]
        assert "disabled" in c.get("/health").json()["writes"]


def test_writes_apply_at_once_and_are_logged(client, fitted):
    users, items = _users_items(fitted)
    holder = client.app.state.holder
    got = client.post("/events", json={"user_id": users[1], "items": items[:3]}, headers=AUTH)
    assert got.status_code == 200 and got.json()["log_records"] == 1
    assert _history(holder.model, users[1])[-3:] == items[:3]
    got = client.post("/events", json={"user_id": 777_777, "items": [items[4]]}, headers=AUTH)
    assert got.status_code == 200
    assert client.post("/recommend", json={"user_id": 777_777}).status_code == 200
    got = client.post("/items", json={"items": [{"item_id": 900_001, "text": "a chef cooks in a kitchen",
                                                 "title": "Kitchen Days"}]}, headers=AUTH)
    assert got.status_code == 200, got.text
    found = client.post("/search", json={"query": "chef kitchen", "k": 200}).json()
    assert 900_001 in found["items"]
    assert found["labels"][found["items"].index(900_001)] == "Kitchen Days"
    # a failed write is not logged and changes nothing
    got = client.post("/events", json={"user_id": users[1], "items": [10**12]}, headers=AUTH)
    assert got.status_code == 404 and got.json()["field"] == "items"
    got = client.post("/items", json={"items": [{"item_id": items[0], "text": "again"}]}, headers=AUTH)
    assert got.status_code == 422 and got.json()["field"] == "items"
    got = client.post("/items", json={"items": [{"item_id": "text-id", "text": "x"}]}, headers=AUTH)
    assert got.status_code == 422
    lines = holder.journal.path.read_text().splitlines()
    assert [json.loads(line)["op"] for line in lines] == ["events", "events", "add_items"]
    # a reload replays the log onto the saved model: the same state again
    report = client.post("/admin/reload", headers=AUTH).json()
    assert report["version"] == 2 and report["replayed"] == 3 and report["skipped"] == 0
    assert _history(holder.model, users[1])[-3:] == items[:3]
    assert client.get("/health").json()["items"] == len(items) + 1


def test_profiles_reach_the_visitor_read_and_the_logged_events(client, fitted):
    rec, _ = fitted
    users, items = _users_items(fitted)
    holder = client.app.state.holder
    text = "a chef who loves kitchen recipes"
    got = client.post("/recommend/history", json={"items": items[:2], "k": 6, "profile": text}).json()
    assert got["items"] == _unpadded(rec.recommend_for_history(items[:2], k=6, profile=text))[0]
    got = client.post("/events", json={"user_id": 555_555, "items": items[:2], "profile": text}, headers=AUTH)
    assert got.status_code == 200, got.text
    expected = holder.model.recommend(555_555, k=6).ids.tolist()
    assert expected == _unpadded(holder.model.recommend_for_history(items[:2], k=6, profile=text))[0]
    assert json.loads(holder.journal.path.read_text().splitlines()[-1])["profile"] == text
    assert client.post("/admin/reload", headers=AUTH).json()["replayed"] == 1  # the profile too
    assert holder.model.recommend(555_555, k=6).ids.tolist() == expected
    for path, body in (("/recommend/history", {"items": items[:1], "profile": 7}),
                       ("/recommend/history", {"items": items[:1], "profile": "x" * (limits.MAX_TEXT_CHARS + 1)}),
                       ("/events", {"user_id": 1, "items": items[:1], "profile": ["a"]})):
        got = client.post(path, json=body, headers=AUTH)
        assert got.status_code == 422 and got.json()["field"] == "profile", got.text


def test_save_compacts_the_log_and_an_outside_save_needs_a_reload(client, fitted, model_dir):
    rec, _ = fitted
    users, items = _users_items(fitted)
    holder = client.app.state.holder
    assert client.post("/events", json={"user_id": users[2], "items": items[:2]}, headers=AUTH).status_code == 200
    assert client.post("/admin/save", headers=AUTH).status_code == 200
    assert holder.journal.path.read_bytes() == b""  # the saved model holds the write now
    loaded = Recommender.load(model_dir, encoder=WordEncoder())
    assert _history(loaded, users[2])[-2:] == items[:2]
    rec.save(model_dir)  # another program replaces the model (and so the log)
    got = client.post("/events", json={"user_id": users[2], "items": items[:1]}, headers=AUTH)
    assert got.status_code == 409 and "reload" in got.json()["error"]
    assert client.post("/admin/reload", headers=AUTH).status_code == 200
    assert _history(holder.model, users[2]) == _history(rec, users[2])  # the outside model's state
    assert client.post("/events", json={"user_id": users[2], "items": items[:1]}, headers=AUTH).status_code == 200


def test_a_checkpoint_saves_the_writes_and_a_reload_replays_only_the_rest(model_dir, fitted):
    users, items = _users_items(fitted)
    app = create_app(model_dir, api_key=KEY, encoder=WordEncoder(), checkpoint_every=5)
    new_users = [10_000 + n for n in range(8)]
    with TestClient(app) as c:
        holder = app.state.holder
        for n, user in enumerate(new_users):
            assert c.post("/events", json={"user_id": user, "items": items[n:n + 2]},
                          headers=AUTH).status_code == 200
        deadline = time.monotonic() + 60
        while holder._checkpointing.is_set() or holder.journal.records >= 5:
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        tail = holder.journal.records
        assert tail < 5 and len((model_dir / "writes.jsonl").read_bytes().splitlines()) == tail
        saved = Recommender.load(model_dir, encoder=WordEncoder())  # the saved model alone
        assert saved._user_map.contains(new_users[:len(new_users) - tail]).all()
        assert not saved._user_map.contains(new_users[len(new_users) - tail:]).any()
        report = c.post("/admin/reload", headers=AUTH).json()
        assert report["replayed"] == tail and report["skipped"] == 0
        for n, user in enumerate(new_users):
            row = int(holder.model._user_map.rows([user], "user")[0])
            assert holder.model._item_map.to_ids(holder.model._histories.get(row)).tolist() == items[n:n + 2]
    with pytest.raises(ValueError, match="checkpoint_every"):
        create_app(model_dir, encoder=WordEncoder(), checkpoint_every=0)


def test_remove_items(client, fitted):
    if not hasattr(Recommender, "remove_items"):
        pytest.skip("Recommender.remove_items is not in this llmrec yet (issue 16, branch catalogue)")
    users, items = _users_items(fitted)
    got = client.request("DELETE", "/items", json={"items": items[:5]}, headers=AUTH)
    assert got.status_code == 200, got.text
    for user in users[:10]:
        found = client.post("/recommend", json={"user_id": user, "k": 50}).json()["items"]
        assert not set(found) & set(items[:5])
    got = client.request("DELETE", "/items", json={"items": [10**12]}, headers=AUTH)
    assert got.status_code == 404 and got.json()["field"] == "items"
    assert client.post("/admin/reload", headers=AUTH).json()["replayed"] == 1
    found = client.post("/search", json={"query": "chef", "k": 100}).json()["items"]
    assert not set(found) & set(items[:5])


# ------------------------------------------------------------------ health, metrics, docs, page
def test_health_metrics_and_docs(client, fitted):
    users, items = _users_items(fitted)
    health = client.get("/health").json()
    assert health["items"] == len(items) and health["users"] == len(users) and health["version"] == 1
    assert health["user_id_kind"] == "int" and health["writes"] == "enabled"
    for _ in range(3):
        client.post("/recommend", json={"user_id": users[0]})
    client.post("/recommend", json={"user_id": 10**12})
    client.get("/no/such/path")
    client.request("BREW", "/recommend")
    text = client.get("/metrics").text
    assert 'llmrec_requests_total{endpoint="/recommend",method="POST",status="200"} 3.0' in text
    assert 'llmrec_requests_total{endpoint="/recommend",method="POST",status="404"} 1.0' in text
    assert 'endpoint="other"' in text and "/no/such/path" not in text
    assert 'method="other"' in text and "BREW" not in text
    assert 'llmrec_request_seconds_bucket{endpoint="/recommend",le=' in text
    assert f"llmrec_items {float(len(items))}" in text and f"llmrec_users {float(len(users))}" in text
    assert "llmrec_model_version 1.0" in text
    schema = client.get("/openapi.json").json()
    for path in ("/recommend", "/recommend/history", "/search", "/similar", "/explain", "/events",
                 "/items", "/admin/reload", "/health", "/metrics"):
        assert path in schema["paths"], path
    assert "delete" in schema["paths"]["/items"]
    assert schema["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == limits.MAX_K
    for path, body in (("/recommend", "RecommendRequest"), ("/recommend/history", "HistoryRequest"),
                       ("/search", "SearchRequest"), ("/similar", "SimilarRequest")):
        post = schema["paths"][path]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{body}" and body in schema["components"]["schemas"]
        assert post["description"] and "200" in post["responses"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "connect-src 'self'" in page.headers[
        "content-security-policy"]


def test_string_ids(tmp_path):
    rec, (interactions, items, _) = fit_small(n_users=60, n_items=50)
    interactions = interactions.assign(user_id="u" + interactions["user_id"].astype(str),
                                       item_id="i" + interactions["item_id"].astype(str))
    items = items.assign(item_id="i" + items["item_id"].astype(str))
    rec = Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                      factors=8, iterations=3, num_threads=1).fit(interactions, items=items)
    rec.save(tmp_path / "m")
    with TestClient(create_app(tmp_path / "m", api_key=KEY, encoder=WordEncoder())) as c:
        user = interactions["user_id"].iloc[0]
        got = c.post("/recommend", json={"user_id": user, "k": 5}).json()
        assert got["items"] == _unpadded(rec.recommend(user, k=5))[0]
        assert all(isinstance(i, str) for i in got["items"])
        assert c.post("/recommend", json={"user_id": 5}).status_code == 422
        assert c.post("/events", json={"user_id": "new", "items": ["i1"]}, headers=AUTH).status_code == 200
        assert c.get("/health").json()["user_id_kind"] == "str"


def test_cli_help_names_every_option():
    out = subprocess.run([sys.executable, "-m", "llmrec", "serve", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for option in ("--host", "--port", "--workers", "--api-key-file", "MODEL_DIR"):
        assert option in out
    assert out.count("(default") >= 3


def test_a_write_the_log_cannot_take_is_undone(client, fitted, monkeypatch):
    users, items = _users_items(fitted)
    holder = client.app.state.holder
    before = _history(holder.model, users[3])

    def full(record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(holder.journal, "append", full)
    got = client.post("/events", json={"user_id": users[3], "items": items[:2]}, headers=AUTH)
    assert got.status_code == 503 and "No space left" in got.json()["error"]
    deadline = time.monotonic() + 60
    while holder.version < 2:  # the reload that undoes it
        assert time.monotonic() < deadline, "the failed write was not undone"
        time.sleep(0.05)
    assert _history(holder.model, users[3]) == before


def test_cli_refuses_a_missing_model_or_a_bad_key_file(tmp_path, model_dir):
    for args in ([str(tmp_path / "nothing")],
                 [str(model_dir), "--api-key-file", str(tmp_path / "absent")],
                 [str(model_dir), "--api-key-file", str(_short_key(tmp_path))],
                 [str(model_dir), "--workers", "0"]):
        done = subprocess.run([sys.executable, "-m", "llmrec", "serve", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip()


def _short_key(tmp_path):
    path = tmp_path / "short-key"
    path.write_text("abc\n")
    return path


# ------------------------------------------------------------------ threads
def test_reads_run_on_the_read_pool_and_writes_do_not_wait_behind_them(model_dir, fitted, monkeypatch):
    """One reader thread, held by a slow read: the next read waits for it, a write and
    /health do not (they have threads of their own)."""
    import threading

    users, items = _users_items(fitted)
    app = create_app(model_dir, api_key=KEY, encoder=WordEncoder(), threads=1)
    model = app.state.holder.model
    recommend, entered, release, names = model.recommend, threading.Event(), threading.Event(), []

    def slow(*args, **kwargs):
        names.append(threading.current_thread().name)
        entered.set()
        release.wait(30)
        return recommend(*args, **kwargs)

    monkeypatch.setattr(model, "recommend", slow)
    with thread_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        reads_done = []
        readers = [threading.Thread(target=lambda: reads_done.append(
            httpx.post(f"{url}/recommend", json={"user_id": users[0]}, timeout=30).status_code))
            for _ in range(2)]
        readers[0].start()
        assert entered.wait(30)
        readers[1].start()
        time.sleep(0.2)
        try:
            assert c.post("/events", json={"user_id": users[1], "items": items[:1]},
                          headers=AUTH).status_code == 200
            assert c.get("/health").status_code == 200
            assert reads_done == [] and len(names) == 1  # the second read waits for the thread
        finally:
            release.set()
            for t in readers:
                t.join(30)
        assert reads_done == [200, 200]
    assert all(name.startswith("llmrec-read") for name in names) and len(names) == 2


@pytest.mark.parametrize("threads", [0, -1, True, 1.5, "2"])
def test_bad_thread_counts_are_refused(model_dir, threads):
    with pytest.raises(ValueError, match="threads"):
        create_app(model_dir, encoder=WordEncoder(), threads=threads)
