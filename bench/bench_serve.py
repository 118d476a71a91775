"""``llmrec serve`` under load: throughput, p50/p99 latency, errors and resident memory of
POST /recommend on a 100,000-item model, alone and with a concurrent stream of updates
plus one live reload, against the in-process ``Recommender.recommend`` throughput of the
same model on the same cores with the same threads; and the floor: what the server's
request path (uvicorn, its middlewares, the hop to a reader thread) costs for an endpoint
that does nothing.

Everything runs on 127.0.0.1 (run it inside ``unshare -n sh -c 'ip link set lo up && …'``).
The server is a subprocess pinned to the server cores (half the machine's, at least one),
serving reads on ``--threads`` threads (default two per server core, the server's own
default); the in-process baseline runs as many threads calling ``recommend`` in a
subprocess pinned to the same cores. The load generator is ``wrk`` (C; Debian package
``wrk``) on the other cores with ``--clients`` connections, each phase bounded by
``--duration`` and ``--max-requests``; the updates (one user's new clicks, back to back)
and the reload come from this process. The model is fitted on synthetic data with a
384-dim stand-in text encoder (hashing: no meaning, the serving path is the same) and
``num_threads=1`` (concurrency comes from requests, each on its own thread).

Targets (issue 18): served ≥ 0.7× in-process throughput, p99 ≤ 5× p50, zero errors,
resident memory flat (the server's RSS sampled through each phase: start, peak, end).
Besides throughput, each row gives the CPU time per request of the server process (all
its threads) or of the in-process run, and of the load generator: unlike throughput,
these hold on a machine busy with other work ("CPU ratio": in-process over served CPU
per request, what the throughput ratio is when both get the same share of the cores).
The in-process baseline runs before and after the served phases; the ratios are taken
against the faster of the two runs and the lower of their CPU times per request. A third
in-process run adds the served phases' update stream (same users, clicks and pace,
through ``Recommender.update``): the update phases are also compared with it, like with like.
Under load the server answers waiting /recommend requests together, one call of the model
for up to ``MAX_BATCH`` users (:mod:`llmrec.serve.batching`): a fourth in-process run
calls ``recommend`` with that many users per call, so the server is also compared with
what batching gives in process, and each phase reports its mean batch.

    python bench/bench_serve.py                                   # full: 100k items, 60 s per phase
    python bench/bench_serve.py --items 20000 --users 5000 --duration 10   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

KEY = "bench-key-0123456789abcdef"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recommender import StandInEncoder  # noqa: E402  (384-d hashed text: sizes and paths only)
from llmrec.serve.batching import MAX_BATCH  # noqa: E402

# wrk's script: random known users, bounded in count, one JSON summary line at the end.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local users, limit, done_count = %(users)d, %(limit)d, 0
math.randomseed(%(seed)d)
request = function()
  return wrk.format(nil, "%(path)s", nil, '{"user_id":' .. math.random(0, users - 1) .. ',"k":10}')
end
response = function(status, headers, body)
  done_count = done_count + 1
  if done_count >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%%d,"seconds":%%f,"p50":%%f,"p99":%%f,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _cores() -> tuple[list[int], list[int]]:
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    server, client = cores[:half], cores[half:] or cores[:1]
    return server, client


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    values = np.array(latencies) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------ subprocess roles
def serve_role(model_dir: str, port: int, key_file: str, threads: int) -> int:
    from llmrec.serve import run

    return run(model_dir, port=port, api_key_file=key_file, encoder=StandInEncoder(),
               log_level="warning", workers=threads)


def floor_role(port: int, threads: int) -> int:
    """An endpoint that does nothing (its body parsed, a fixed ten-item answer made on a
    reader thread) on the server's own request path: uvicorn, the metrics, key and
    body-size middlewares and the fast path in front of FastAPI (``llmrec.serve.fast``).
    The HTTP path's own cost."""
    import uvicorn
    from fastapi.responses import Response

    from llmrec.serve import limits
    from llmrec.serve.auth import KeyGuard
    from llmrec.serve.body_limit import BodyLimit
    from llmrec.serve.fast import FastRoutes, FrontedFastAPI
    from llmrec.serve.metrics import Metrics, MetricsMiddleware
    from llmrec.serve.reads import WorkPool, parse
    from llmrec.serve.schemas import RecommendRequest

    answer = json.dumps({"items": list(range(10)), "scores": [1.0] * 10, "labels": None}).encode()
    pool, app = WorkPool(threads), FrontedFastAPI()

    async def nothing(content_type: str | None, body: bytes) -> Response:
        parse(content_type, body, RecommendRequest)
        return Response(await pool.run(lambda: answer), media_type="application/json")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    app.put_in_front(lambda inner: MetricsMiddleware(
        KeyGuard(BodyLimit(FastRoutes(inner, routes={("POST", "/recommend"): nothing}),
                           max_bytes=limits.MAX_BODY_BYTES),
                 key=None, protected=lambda method, path: False),
        metrics=Metrics(lambda: (1, 0, 0)), paths=("/recommend", "/health")))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                server_header=False, proxy_headers=False)
    return 0


def inprocess_role(model_dir: str, threads: int, duration: float, max_requests: int, n_users: int,
                   n_items: int, with_updates: bool, batch: int = 1) -> int:
    """``threads`` threads calling recommend on the loaded model, ``batch`` users per call
    (and, ``with_updates``, one more thread making the served phases' stream of updates:
    the same users, clicks and pace, through ``Recommender.update``); prints JSON."""
    import llmrec

    rec = llmrec.Recommender.load(model_dir, encoder=StandInEncoder())
    users = np.random.default_rng(3).integers(0, n_users, max_requests)
    for u in users[:50]:  # warm up
        rec.recommend(int(u), 10)
    latencies: list[float] = []
    counter = iter(range(max_requests))
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def work() -> None:
        local = []
        while time.perf_counter() < deadline:
            with lock:
                picked = [i for i in (next(counter, None) for _ in range(batch)) if i is not None]
            if not picked:
                break
            start = time.perf_counter()
            rec.recommend(int(users[picked[0]]), 10) if batch == 1 else rec.recommend(users[picked].tolist(), 10)
            local.extend([time.perf_counter() - start] * len(picked))
        with lock:
            latencies.extend(local)

    updates = [0]

    def update() -> None:  # the pace of _updates' writer: back to back, 10 ms apart
        rng = np.random.default_rng(4)
        while time.perf_counter() < deadline and updates[0] < max_requests:
            rec.update(int(rng.integers(0, n_users)), rng.integers(0, n_items, 2).tolist())
            updates[0] += 1
            time.sleep(0.01)

    start, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    if with_updates:
        workers.append(threading.Thread(target=update))
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    p50, p99 = _percentiles(latencies)
    print(json.dumps({"requests": len(latencies), "seconds": elapsed, "p50": p50, "p99": p99, "cpu": cpu,
                      "updates": updates[0]}))
    return 0


# ------------------------------------------------------------------ the load
def _wrk(url: str, script: Path, clients: int, duration: float, client_cores: list[int]) -> dict:
    """One bounded wrk run; its summary, and its own CPU time (client_cpu)."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
               "-s", str(script), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: os.sched_setaffinity(0, client_cores))
    timer = threading.Timer(duration + 120, process.kill)  # wrk stops itself; this is the backstop
    timer.start()
    try:
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    lines = [line[4:] for line in out.splitlines() if line.startswith("WRK ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{out[-2000:]}")
    result = json.loads(lines[-1])
    result["errors"] = {name: n for name, n in result["errors"].items() if n}
    result["client_cpu"] = usage.ru_utime + usage.ru_stime
    return result


class _Sampler(threading.Thread):
    """The server's RSS every ``period`` seconds until stopped: (start, peak, end)."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.values = pid, period, [_rss_mb(pid)]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            self.values.append(_rss_mb(self.pid))

    def finish(self) -> tuple[float, float, float]:
        self._stop_event.set()
        self.join()
        self.values.append(_rss_mb(self.pid))
        return self.values[0], max(self.values), self.values[-1]


def _updates(url: str, duration: float, max_requests: int, n_users: int, n_items: int,
             reload_at: float | None, out: dict) -> list[threading.Thread]:
    """Threads of this process: one stream of updates (a user's new clicks, back to back)
    and one reload ``reload_at`` seconds in, both bounded by ``duration``."""
    import httpx

    auth = {"Authorization": f"Bearer {KEY}"}
    deadline = time.perf_counter() + duration
    out.update(writes={"ok": 0, "failed": 0}, reload={})

    def writer() -> None:
        rng = np.random.default_rng(4)
        with httpx.Client(base_url=url, timeout=60.0) as http:
            n = 0
            while time.perf_counter() < deadline and n < max_requests:
                body = {"user_id": int(rng.integers(0, n_users)), "items": rng.integers(0, n_items, 2).tolist()}
                try:
                    ok = http.post("/events", json=body, headers=auth).status_code == 200
                except httpx.HTTPError:
                    ok = False
                out["writes"]["ok" if ok else "failed"] += 1
                n += 1
                time.sleep(0.01)

    def reloader() -> None:
        time.sleep(reload_at)
        t0 = time.perf_counter()
        try:
            got = httpx.post(f"{url}/admin/reload", headers=auth, timeout=600)
            out["reload"].update(got.json() if got.status_code == 200 else {"error": got.text[:300]})
            out["reload"]["status"] = got.status_code
        except httpx.HTTPError as error:
            out["reload"].update(error=repr(error), status=None)
        out["reload"]["request_seconds"] = round(time.perf_counter() - t0, 3)

    threads = [threading.Thread(target=writer, daemon=True)]
    if reload_at is not None:
        threads.append(threading.Thread(target=reloader, daemon=True))
    for t in threads:
        t.start()
    return threads


def _fit(args: argparse.Namespace, model_dir: Path) -> None:
    import llmrec
    from llmrec.datasets import synthetic

    start = time.perf_counter()
    interactions, items, _ = synthetic(args.users, args.items, density=20 / args.items, random_state=0)
    rec = llmrec.Recommender(encoder=StandInEncoder(), random_state=0, num_threads=1, validation=0.0,
                             regularization=20.0, iterations=args.iterations)
    rec.fit(interactions, items=items)
    rec.save(model_dir)
    print(f"model: {args.users:,} users x {args.items:,} items, {len(interactions):,} interactions, "
          f"stand-in 384-dim text; fitted and saved in {time.perf_counter() - start:.1f} s", flush=True)


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 600.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _line(name: str, r: dict, baseline: dict | None) -> str:
    throughput = r["requests"] / r["seconds"]
    per = lambda seconds: seconds / max(r["requests"], 1) * 1e3  # noqa: E731  ms per request
    if baseline is None:
        ratio = cpu_ratio = "–"
    else:
        ratio = f"{throughput / (baseline['requests'] / baseline['seconds']):.2f}×"
        cpu_ratio = f"{baseline['cpu'] / baseline['requests'] / (r['cpu'] / max(r['requests'], 1)):.2f}×"
    errors = ", ".join(f"{n} {kind}" for kind, n in r.get("errors", {}).items()) or "0"
    rss = f"{r['rss'][0]:.0f} / {r['rss'][1]:.0f} / {r['rss'][2]:.0f}" if "rss" in r else "–"
    client = f"{per(r['client_cpu']):.3f}" if "client_cpu" in r else "–"
    return (f"| {name} | {throughput:,.0f} | {ratio} | {cpu_ratio} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['p99'] / r['p50']:.1f} | {per(r['cpu']):.3f} | {client} | {errors} | {rss} |")


class _Server:
    """A server role as a subprocess pinned to ``cores``; stopped on exit."""

    def __init__(self, command: list[str], cores: list[int]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*command, "--port", str(self.port)],
                                        preexec_fn=lambda: os.sched_setaffinity(0, cores))

    def __enter__(self) -> _Server:
        try:
            _wait_healthy(self.url, self.process)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def _phase(server: _Server, script: Path, args: argparse.Namespace, client_cores: list[int],
           updates: bool = False, reload_at: float | None = None) -> dict:
    """One bounded wrk run against ``server``, with its CPU time and RSS, and optionally
    a stream of updates and one reload from this process."""
    pid = server.process.pid
    batches = _batches(server.url)
    sampler, cpu, extra = _Sampler(pid), _cpu_seconds(pid), {}
    sampler.start()
    writers = (_updates(server.url, args.duration, args.max_requests, args.users, args.items, reload_at, extra)
               if updates else [])
    result = _wrk(f"{server.url}/recommend", script, args.clients, args.duration, client_cores)
    for t in writers:
        t.join(args.duration + 600)
    result.update(extra, cpu=_cpu_seconds(pid) - cpu, rss=sampler.finish())
    calls, requests = (after - before for after, before in zip(_batches(server.url), batches))
    result["batch"] = requests / max(calls, 1)
    return result


def _batches(url: str) -> tuple[float, float]:
    """(calls of the model, requests they answered) for /recommend so far, from /metrics
    (the floor server has no batches: zeros)."""
    import httpx

    found = {"count": 0.0, "sum": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        for part in found:
            if line.startswith(f'llmrec_read_batch_size_{part}{{endpoint="/recommend"}}'):
                found[part] = float(line.rsplit(" ", 1)[1])
    return found["count"], found["sum"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--users", type=int, default=20_000, help="users in the synthetic data")
    parser.add_argument("--iterations", type=int, default=15, help="ALS iterations of the fit")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP connections (wrk)")
    parser.add_argument("--threads", type=int, default=None,
                        help="reader threads of the server, and threads of the in-process baseline "
                             "(default: 2 per server core, the server's default)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per phase at most")
    parser.add_argument("--model-dir", default=None, help="reuse (or keep) the fitted model here")
    parser.add_argument("--role", choices=("serve", "inprocess", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--with-updates", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "serve":
        return serve_role(args.model_dir, args.port, args.key_file, args.threads)
    if args.role == "floor":
        return floor_role(args.port, args.threads)
    if args.role == "inprocess":
        return inprocess_role(args.model_dir, args.threads, args.duration, args.max_requests, args.users,
                              args.items, args.with_updates, args.batch)
    if shutil.which("wrk") is None:
        raise SystemExit("the load generator is wrk: install it (Debian: apt-get install wrk)")

    server_cores, client_cores = _cores()
    threads = args.threads or 2 * len(server_cores)
    print(f"machine: {_machine()}; {_load()} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-serve-") as tmp:
        model_dir = Path(args.model_dir or Path(tmp) / "model")
        if not (model_dir / "recommender.llmrec").exists():
            _fit(args, model_dir)
        (model_dir / "writes.jsonl").unlink(missing_ok=True)  # each run starts from the saved model
        key_file = Path(tmp) / "key"
        key_file.write_text(KEY)
        key_file.chmod(0o600)
        script = Path(tmp) / "recommend.lua"
        script.write_text(WRK_SCRIPT % {"users": args.users, "limit": args.max_requests, "seed": 4,
                                        "path": "/recommend"})
        role = [sys.executable, str(Path(__file__).resolve()), "--model-dir", str(model_dir),
                "--users", str(args.users), "--items", str(args.items), "--threads", str(threads)]
        print(f"cores: server and in-process baseline {server_cores}, load generator (wrk) "
              f"{client_cores}; {threads} reader threads; {args.clients} connections, "
              f"{args.duration:g} s or {args.max_requests:,} requests per phase", flush=True)

        def in_process(with_updates: bool = False, batch: int = 1) -> dict:
            out = subprocess.run([*role, "--role", "inprocess", "--duration", str(args.duration),
                                  "--max-requests", str(args.max_requests), "--batch", str(batch),
                                  *(["--with-updates"] if with_updates else [])], capture_output=True,
                                 text=True, preexec_fn=lambda: os.sched_setaffinity(0, server_cores),
                                 timeout=args.duration + 900)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            return json.loads(out.stdout.strip().splitlines()[-1])

        before = in_process()
        os.sched_setaffinity(0, client_cores)
        results = {}
        with _Server([*role, "--role", "floor"], server_cores) as floor:
            _wrk(f"{floor.url}/recommend", script, args.clients, 2, client_cores)  # warm up
            results["floor: an endpoint doing nothing"] = _phase(floor, script, args, client_cores)
        # The server works on a copy: its writes and checkpoints stay out of the saved model
        # that the in-process runs (and later runs of this bench) load.
        served_dir = Path(tmp) / "served"
        shutil.copytree(model_dir, served_dir)
        with _Server([*role, "--model-dir", str(served_dir), "--role", "serve", "--key-file", str(key_file)],
                     server_cores) as server:
            _wrk(f"{server.url}/recommend", script, args.clients, min(5.0, args.duration), client_cores)
            results["served"] = _phase(server, script, args, client_cores)
            results["served + updates"] = _phase(server, script, args, client_cores, updates=True)
            results["served + updates + 1 reload"] = _phase(server, script, args, client_cores,
                                                            updates=True, reload_at=args.duration / 2)
        after = in_process()
        with_updates = in_process(with_updates=True)  # the served update phases' baseline
        batched = in_process(batch=MAX_BATCH)  # what the server's batching does, in process
    # The baseline: the faster of the runs before and after the served ones (on a busy
    # machine the load drifts), and its CPU per request the lower of the two.
    inproc = max(before, after, key=lambda r: r["requests"] / r["seconds"])
    inproc = {**inproc, "cpu": min(r["cpu"] / r["requests"] for r in (before, after)) * inproc["requests"]}

    print(f"\n{_load()} at the end")
    print("\n| run | requests/s | vs in-process | CPU ratio | p50 ms | p99 ms | p99/p50 | "
          "server CPU ms/req | wrk CPU ms/req | errors | server RSS MB start / peak / end |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print(_line(f"in-process recommend, {threads} threads, before", before, None))
    print(_line(f"in-process recommend, {threads} threads, after", after, None))
    print(_line(f"in-process recommend, {threads} threads + the update stream", with_updates, None))
    print(_line(f"in-process recommend, {threads} threads, {MAX_BATCH} users per call", batched, None))
    for name, r in results.items():
        print(_line(f"{name}, {args.clients} connections", r, inproc))
    for name in ("served + updates", "served + updates + 1 reload"):
        r = results[name]
        print(f"{name}: {r['writes']['ok']} updates acknowledged, {r['writes']['failed']} failed"
              + (f"; reload: {r['reload']}" if r["reload"] else ""))
    print(f"in-process + the update stream: {with_updates['updates']} updates")
    matched = with_updates["requests"] / with_updates["seconds"]
    for name in ("served + updates", "served + updates + 1 reload"):
        r = results[name]
        print(f"{name}: throughput {r['requests'] / r['seconds'] / matched:.2f}× in-process with the same "
              f"update stream ({'met' if r['requests'] / r['seconds'] >= 0.7 * matched else 'MISSED'}, ≥ 0.7×)")

    served = {name: r for name, r in results.items() if name.startswith("served")}
    base = inproc["requests"] / inproc["seconds"]
    print(f"\nthe server answered /recommend in batches (:mod:`llmrec.serve.batching`); against "
          f"in-process calls of {MAX_BATCH} users each ({batched['requests'] / batched['seconds']:,.0f} req/s):")
    for name, r in served.items():
        print(f"  {name}: {r['batch']:.1f} requests per call of the model on average; throughput "
              f"{r['requests'] / r['seconds'] / (batched['requests'] / batched['seconds']):.2f}× in-process batched")
    print("\nratios against the faster in-process run and the lower in-process CPU per request")
    print("targets (issue 18):")
    for name, r in served.items():
        ratio, tail = r["requests"] / r["seconds"] / base, r["p99"] / r["p50"]
        grew = r["rss"][2] - r["rss"][0]
        print(f"  {name}: throughput {ratio:.2f}× in-process ({'met' if ratio >= 0.7 else 'MISSED'}, ≥ 0.7×); "
              f"p99/p50 {tail:.1f} ({'met' if tail <= 5 else 'MISSED'}, ≤ 5); RSS {grew:+.0f} MB over the "
              f"phase ({'flat' if grew <= 0.05 * r['rss'][0] else 'NOT flat'}: within 5 %)")
    failed = [name for name, r in served.items() if r["errors"]] + [
        f"{name} writes" for name, r in served.items() if r.get("writes", {}).get("failed")] + [
        f"{name} reload" for name, r in served.items() if r.get("reload") and r["reload"].get("status") != 200]
    print("  errors in: " + ", ".join(failed) if failed else "  zero errors (reads, updates, reload): met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
