"""``llmrec serve`` under load: throughput, p50/p99 latency and errors of POST /recommend
on a 100,000-item model, alone and with a concurrent stream of updates plus one live
reload, against the in-process ``Recommender.recommend`` throughput of the same model
on the same cores.

Everything runs on 127.0.0.1 (run it inside ``unshare -n sh -c 'ip link set lo up && …'``).
The server is a subprocess pinned to the server cores (half the machine's, at least
one); the load generator (httpx async, ``--clients`` concurrent requests) runs in this
process on the other cores, every loop bounded by ``--duration`` and ``--max-requests``.
The in-process baseline runs ``--threads`` threads calling ``recommend`` in a
subprocess pinned to the same server cores. The model is fitted on synthetic data with a
384-dim stand-in text encoder (hashing: no meaning, the serving path is the same) and
``num_threads=1`` (concurrency comes from requests, each on its own thread).

Targets (issue 18): served ≥ 0.7× in-process throughput, p99 ≤ 5× p50, zero errors,
resident memory flat (the server's RSS at the start and the end of each phase). Besides
throughput, each row gives the CPU time per request of the server process (all its
threads; for the baseline, of the in-process run) and of the load generator: unlike
throughput, these hold on a machine busy with other work, and they show whether the
load generator, not the server, was the limit.

    python bench/bench_serve.py                                   # full: 100k items, 60 s per phase
    python bench/bench_serve.py --items 20000 --users 5000 --duration 10   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


# ------------------------------------------------------------------ subprocess roles
def serve_role(model_dir: str, port: int, key_file: str) -> int:
    from llmrec.serve import run

    return run(model_dir, port=port, api_key_file=key_file, encoder=StandInEncoder(), log_level="warning")


def inprocess_role(model_dir: str, threads: int, duration: float, max_requests: int, n_users: int) -> int:
    """``threads`` threads calling recommend on the loaded model; prints JSON."""
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
                i = next(counter, None)
            if i is None:
                break
            start = time.perf_counter()
            rec.recommend(int(users[i]), 10)
            local.append(time.perf_counter() - start)
        with lock:
            latencies.extend(local)

    start, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    p50, p99 = _percentiles(latencies)
    print(json.dumps({"requests": len(latencies), "seconds": elapsed, "p50": p50, "p99": p99, "cpu": cpu}))
    return 0


# ------------------------------------------------------------------ the load generator
async def _load(url: str, clients: int, duration: float, max_requests: int, n_users: int,
                updates: bool, reload_at: float | None, n_items: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    writes = {"ok": 0, "failed": 0}
    reload_report: dict = {}
    rng = np.random.default_rng(4)
    users = rng.integers(0, n_users, max_requests)
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + duration
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http:
        async def reader() -> None:
            nonlocal issued
            while time.perf_counter() < deadline and issued < max_requests:
                user = int(users[issued])
                issued += 1
                t0 = time.perf_counter()
                try:
                    got = await http.post("/recommend", json={"user_id": user, "k": 10})
                    if got.status_code != 200:
                        errors[str(got.status_code)] = errors.get(str(got.status_code), 0) + 1
                        continue
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)

        async def writer() -> None:  # one update stream: a user's new clicks, back to back
            n = 0
            while time.perf_counter() < deadline and n < max_requests:
                body = {"user_id": int(rng.integers(0, n_users)),
                        "items": rng.integers(0, n_items, 2).tolist()}
                got = await http.post("/events", json=body, headers={"Authorization": f"Bearer {KEY}"})
                writes["ok" if got.status_code == 200 else "failed"] += 1
                n += 1
                await asyncio.sleep(0.01)

        async def reloader() -> None:
            await asyncio.sleep(reload_at)
            t0 = time.perf_counter()
            got = await http.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
            reload_report.update(got.json() if got.status_code == 200 else {"error": got.text[:300]})
            reload_report.update(status=got.status_code, request_seconds=round(time.perf_counter() - t0, 3))

        tasks = [reader() for _ in range(clients)]
        if updates:
            tasks.append(writer())
        if reload_at is not None:
            tasks.append(reloader())
        await asyncio.gather(*tasks)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    p50, p99 = _percentiles(latencies)
    return {"requests": len(latencies), "seconds": elapsed, "p50": p50, "p99": p99,
            "errors": errors, "writes": writes, "reload": reload_report, "client_cpu": cpu}


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


def _line(name: str, r: dict, baseline: float | None) -> str:
    throughput = r["requests"] / r["seconds"]
    ratio = f"{throughput / baseline:.2f}x" if baseline else "1.00x"
    errors = sum(r.get("errors", {}).values())
    rss = f"{r['rss_start']:.0f} → {r['rss_end']:.0f} MB" if "rss_start" in r else "-"
    per = lambda seconds: f"{seconds / max(r['requests'], 1) * 1e3:.2f}"  # noqa: E731
    client = per(r["client_cpu"]) if "client_cpu" in r else "-"
    return (f"| {name} | {throughput:,.0f} | {ratio} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['p99'] / r['p50']:.1f} | {per(r['cpu'])} | {client} | {errors} | {rss} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--users", type=int, default=20_000, help="users in the synthetic data")
    parser.add_argument("--iterations", type=int, default=15, help="ALS iterations of the fit")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP requests")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the in-process baseline (default: 2 per server core)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per phase at most")
    parser.add_argument("--model-dir", default=None, help="reuse (or keep) the fitted model here")
    parser.add_argument("--role", choices=("serve", "inprocess"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "serve":
        return serve_role(args.model_dir, args.port, args.key_file)
    if args.role == "inprocess":
        return inprocess_role(args.model_dir, args.threads, args.duration, args.max_requests, args.users)

    server_cores, client_cores = _cores()
    threads = args.threads or 2 * len(server_cores)
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-serve-") as tmp:
        model_dir = Path(args.model_dir or Path(tmp) / "model")
        if not (model_dir / "recommender.llmrec").exists():
            _fit(args, model_dir)
        (model_dir / "writes.jsonl").unlink(missing_ok=True)  # each run starts from the saved model
        key_file = Path(tmp) / "key"
        key_file.write_text(KEY)
        key_file.chmod(0o600)
        script = [sys.executable, str(Path(__file__).resolve()), "--model-dir", str(model_dir),
                  "--users", str(args.users), "--items", str(args.items)]
        pin = lambda: os.sched_setaffinity(0, server_cores)  # noqa: E731
        print(f"cores: server and in-process baseline {server_cores}, load generator {client_cores}; "
              f"{args.clients} clients, {args.duration:g} s or {args.max_requests:,} requests per phase",
              flush=True)

        out = subprocess.run([*script, "--role", "inprocess", "--threads", str(threads), "--duration",
                              str(args.duration), "--max-requests", str(args.max_requests)],
                             capture_output=True, text=True, preexec_fn=pin, timeout=args.duration + 900)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        inproc = json.loads(out.stdout.strip().splitlines()[-1])
        baseline = inproc["requests"] / inproc["seconds"]

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([*script, "--role", "serve", "--port", str(port), "--key-file",
                                   str(key_file)], preexec_fn=pin)
        os.sched_setaffinity(0, client_cores)
        results = {}
        try:
            _wait_healthy(url, server)
            asyncio.run(_load(url, args.clients, min(5.0, args.duration), 2000, args.users, False, None,
                              args.items))  # warm up
            for name, updates, reload_at in (("served", False, None),
                                             ("served + updates + 1 reload", True, args.duration / 2)):
                rss_start, cpu = _rss_mb(server.pid), _cpu_seconds(server.pid)
                r = asyncio.run(_load(url, args.clients, args.duration, args.max_requests, args.users,
                                      updates, reload_at, args.items))
                r.update(rss_start=rss_start, rss_end=_rss_mb(server.pid), cpu=_cpu_seconds(server.pid) - cpu)
                results[name] = r
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(30)

    print("\n| run | requests/s | vs in-process | p50 ms | p99 ms | p99/p50 | server CPU ms/req | "
          "load generator CPU ms/req | errors | server RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(_line(f"in-process recommend, {threads} threads", inproc, None))
    for name, r in results.items():
        print(_line(f"{name}, {args.clients} clients", r, baseline))
    mixed = results["served + updates + 1 reload"]
    print(f"\nupdates during the mixed run: {mixed['writes']['ok']} acknowledged, "
          f"{mixed['writes']['failed']} failed; reload: {mixed['reload']}")
    failed = [name for name, r in results.items() if r["errors"]] + (
        ["writes"] if mixed["writes"]["failed"] else []) + (
        ["reload"] if mixed["reload"].get("status") != 200 else [])
    print("errors in: " + ", ".join(failed) if failed else "no errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
