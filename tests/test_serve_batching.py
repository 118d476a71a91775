"""Reads answered together (llmrec.serve.batching): the Batcher's dispatch on its own, and
/recommend under concurrent load against the library's single-user answers, with bad
requests mixed in (each gets its own error, the others their answers)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serve_helpers import fit_small, thread_server  # first: skips the module without the [serve] extra

import httpx  # noqa: E402

from llmrec.serve import create_app  # noqa: E402
from llmrec.serve.batching import Batcher, answer_or_error  # noqa: E402
from llmrec.serve.reads import WorkPool  # noqa: E402

from recommender_helpers import WordEncoder  # noqa: E402

pytestmark = pytest.mark.serve


class Recorder:
    """answer_all that records its batches, can hold the first one until released, and
    answers item x with 10·x (an exception for negative x)."""

    def __init__(self, hold: bool = True) -> None:
        self.batches: list[tuple[object, list[int]]] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, key, items):
        self.batches.append((key, list(items)))
        assert self.release.wait(30)
        return [answer_or_error(lambda x: 10 * x if x >= 0 else (_ for _ in ()).throw(ValueError(f"bad {x}")), x)
                for x in items]


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_requests_waiting_for_a_slot_share_one_call_by_key():
    pool, recorder = WorkPool(1), Recorder()
    batcher = Batcher(pool, recorder, slots=1, max_batch=4)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit("a", 0))  # alone: a slot is free
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit("a" if i % 3 else "b", i)) for i in range(1, 11)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = _run(scenario())
    pool.close()
    assert first == 0 and rest == [10 * i for i in range(1, 11)]
    assert recorder.batches[0] == ("a", [0])
    a = [i for i in range(1, 11) if i % 3]
    b = [i for i in range(1, 11) if not i % 3]
    # then the keys in turn, at most max_batch per call, every request once
    assert recorder.batches[1:] == [("a", a[:4]), ("b", b), ("a", a[4:])]


def test_each_request_gets_its_own_answer_or_error():
    pool, recorder = WorkPool(2), Recorder(hold=False)
    batcher = Batcher(pool, recorder, slots=2, max_batch=8)

    async def scenario():
        return await asyncio.gather(*[batcher.submit("k", x) for x in (3, -1, 4, -2, 5)],
                                    return_exceptions=True)

    answers = _run(scenario())
    pool.close()
    assert answers[0::2] == [30, 40, 50]
    assert [str(a) for a in answers[1::2]] == ["bad -1", "bad -2"]


@pytest.mark.parametrize("broken", ["raises", "short"])
def test_a_failed_batch_fails_its_requests_and_the_batcher_goes_on(broken):
    pool = WorkPool(1)
    calls = []

    def answer_all(key, items):
        calls.append(list(items))
        if len(calls) == 1:
            if broken == "raises":
                raise RuntimeError("boom")
            return items[:-1]
        return list(items)

    batcher = Batcher(pool, answer_all, slots=1)

    async def scenario():
        failed = await asyncio.gather(batcher.submit("k", 1), return_exceptions=True)
        return failed, await batcher.submit("k", 2)

    failed, after = _run(scenario())
    pool.close()
    assert isinstance(failed[0], RuntimeError) and after == 2


def test_bad_settings_are_refused():
    pool = WorkPool(1)
    for bad in (0, -1, True, 1.5, None):
        with pytest.raises(ValueError, match="slots"):
            Batcher(pool, lambda k, items: items, slots=bad)
        with pytest.raises(ValueError, match="max_batch"):
            Batcher(pool, lambda k, items: items, slots=1, max_batch=bad)
    pool.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    rec, data = fit_small()
    directory = tmp_path_factory.mktemp("batching") / "model"
    rec.save(directory)
    app = create_app(directory, encoder=WordEncoder(), threads=1)
    with thread_server(app) as url:
        yield rec, data, url


def test_concurrent_recommend_requests_equal_the_library(served, rng):
    rec, (interactions, _, _), url = served
    users = sorted(set(interactions["user_id"].tolist()))
    picked = [int(u) for u in rng.choice(users, 120)]
    bodies = [{"user_id": u, "k": int(rng.integers(1, 12))} for u in picked]
    bodies += [{"user_id": picked[i], "k": 5, "query": "a story of the city"} for i in range(10)]
    bodies += [{"user_id": picked[i], "k": 5, "exclude_seen": False, "diversity": 0.3} for i in range(10)]
    bodies += [{"user_id": picked[i], "k": 5, "allow": [int(x) for x in rec.item_ids_[:40]]} for i in range(10)]
    bad = [{"user_id": 10**9, "k": 5}, {"user_id": picked[0], "k": 5, "scenario": "nope"}]
    bodies += bad

    async def fire():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*[client.post("/recommend", json=b) for b in bodies])

    answers = _run(fire())
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    for body, answer in zip(bodies[:-2], answers[:-2]):
        assert answer.status_code == 200, answer.text
        want = rec.recommend(body["user_id"], body["k"], query=body.get("query"),
                             exclude_seen=body.get("exclude_seen", True), diversity=body.get("diversity"),
                             allow=body.get("allow"))
        valid = np.isfinite(want.scores)
        got = answer.json()
        assert got["items"] == want.ids[valid].tolist()
        # batch-invariant: a user's answer does not depend on who shared the call
        np.testing.assert_array_equal(np.float32(got["scores"]), want.scores[valid])
        assert got["labels"] == want.labels[valid].tolist()
    assert [a.status_code for a in answers[-2:]] == [404, 422]
    assert [a.json()["field"] for a in answers[-2:]] == ["user_id", "scenario"]
    count = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('llmrec_read_batch_size_count{endpoint="/recommend"}'))
    total = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('llmrec_read_batch_size_sum{endpoint="/recommend"}'))
    assert total == len(bodies) - 10  # the allow requests went alone, outside the batcher
    assert count < total  # one reader thread, 64 connections: requests shared calls
