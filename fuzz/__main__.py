"""The fuzz driver: ``python -m fuzz [--seconds S] [--targets PATTERN ...]``.

Runs every target (``core.*``, ``api.*``, ``files.*``; see ``--list``) for about
``--seconds`` in total, in child processes (fuzz.worker) so that a crash is recorded with
the input that caused it and the run goes on in a fresh child. Writes one reproducer per
distinct finding under ``--out`` and exits 1 when there is any finding, 2 when a
``_core`` function has no fuzz target.

``python -m fuzz --repro TARGET SEED`` re-runs one case in this process (a crash then
crashes it, under a debugger or sanitizer if you like) and prints its inputs and outcome.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sanitizer_summary(stderr: str) -> str:
    """'file:line: runtime error: …' or 'AddressSanitizer: kind in function' of a report, if any."""
    m = re.search(r"([\w./-]+\.[ch]pp:\d+):\d+: runtime error: ([^\n]*)", stderr)
    if m:
        return f"{os.path.basename(m.group(1))}: {re.sub(r'0x[0-9a-f]+', 'ADDR', m.group(2))[:120]}"
    m = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", stderr)
    if m:
        frame = re.search(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S*cpp/\S+)", stderr)
        return f"AddressSanitizer {m.group(1)}" + (f" in {frame.group(1)} {os.path.basename(frame.group(2))}"
                                                   if frame else "")
    return ""


def _signal_name(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


# Relative time per target: the public API and files reach more code per input than a
# single native function; functions without arguments need next to none.
TRIVIAL = {"core.active_simd_level", "core.compiled_simd_levels", "core.hardware_threads", "core.pq4_kernel",
           "core.sq8_kernel", "core.supported_simd_levels", "core.vnni_supported", "core.sq8_block_bytes",
           "core.pq4_block_bytes", "core.set_vnni_enabled", "core.set_simd_level"}


def weight(target: str) -> float:
    if target in TRIVIAL:
        return 0.2
    if target == "files.fifo":
        return 0.5
    return 1.0 if target.startswith("core.") else 3.0


class Run:
    def __init__(self, args: argparse.Namespace, targets: list[str]) -> None:
        self.args = args
        self.targets = targets
        self.stats = {t: {"tried": 0, "ok": 0, "rejected": 0, "findings": 0} for t in targets}
        self.findings: dict[tuple, dict] = {}
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        base = args.seed if args.seed is not None else random.SystemRandom().randrange(2**40)
        self.base_seed = base
        self.next_seed = {t: base for t in targets}
        self.spent = {t: 0.0 for t in targets}
        self.tmp = tempfile.mkdtemp(prefix="llmrec-fuzz-")
        self.seeds_file = os.path.join(self.tmp, "core-seeds.pickle")
        from fuzz.targets_core import save_seeds
        save_seeds(self.seeds_file)
        self.children = 0

    # ------------------------------------------------------------ findings
    def record(self, target: str, seed: int, info: dict) -> None:
        detail = info.get("where") or info.get("signal")
        if info["outcome"] == "garbage":  # one kind of garbage per message stem
            detail = str(info.get("message", "")).split(":")[0][:60]
        key = (target, info["outcome"], info.get("type"), detail)
        self.stats[target]["findings"] += 1
        if key in self.findings:
            self.findings[key]["count"] += 1
            return
        info = dict(info, target=target, seed=seed, count=1)
        if info["outcome"] in ("crash", "crash-after") and self.args.verify:
            info["alone"] = self.replay([f"{target}:{seed}"])
        self.findings[key] = info
        name = f"{target}__{info['outcome']}__{len(self.findings):03d}.txt"
        lines = [f"target:   {target}", f"seed:     {seed}", f"outcome:  {info['outcome']}",
                 f"type:     {info.get('type') or info.get('signal')}",
                 f"where:    {info.get('where', '')}",
                 f"repro:    python -m fuzz --repro {target} {seed}", "", "message:",
                 str(info.get("message", "")), "", "inputs (generator log):"]
        lines += ["  " + s for s in info.get("log", [])]
        if "alone" in info:
            lines += ["", f"replayed alone in a fresh process: {info['alone']}"]
            if "crash" not in info["alone"] and info.get("history"):
                lines += ["(an earlier case of the same child probably corrupted memory: replay the",
                          " sequence below with --replay, or run under tests/sanitize.sh to catch it)"]
        if info.get("history"):
            lines += ["", "cases run by this child, oldest first:",
                      "  python -m fuzz --replay " + " ".join(info["history"])]
        if info.get("traceback"):
            lines += ["", "traceback:", info["traceback"]]
        if info.get("stderr"):
            lines += ["", "stderr tail:", info["stderr"]]
        (self.out / name).write_text("\n".join(lines) + "\n")
        info["file"] = str(self.out / name)
        print(f"  FINDING {target} seed={seed}: {info['outcome']} {info.get('type') or info.get('signal')} "
              f"{info.get('where', '')} {str(info.get('message', ''))[:160]}", flush=True)

    def replay(self, cases: list[str]) -> str:
        """Run cases in one fresh process: 'crash SIG…', 'no crash', or 'hang'."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        try:
            proc = subprocess.run([sys.executable, "-m", "fuzz", "--replay", *cases], cwd=self.tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except subprocess.TimeoutExpired:
            return "hang (60 s)"
        return f"crash {_signal_name(proc.returncode)}" if proc.returncode < 0 else "no crash"

    # ------------------------------------------------------------ one child
    def child(self, targets: list[str], deadline: float) -> None:
        read_fd, write_fd = os.pipe()
        # Least-served targets first (by time spent over weight), so that a target that
        # crashes often cannot starve the ones after it.
        order = sorted(targets, key=lambda t: self.spent[t] / weight(t))
        plan = {"targets": {t: self.next_seed[t] for t in order}, "deadline": deadline,
                "slices": {t: self.args.slice * weight(t) for t in order}, "fd": write_fd, "tmp": self.tmp, "mem_gib": self.args.mem_gib,
                "seeds": self.seeds_file}
        self.children += 1
        stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        proc = subprocess.Popen([sys.executable, "-m", "fuzz.worker", json.dumps(plan)], pass_fds=(write_fd,),
                                stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.tmp, env=env,
                                start_new_session=True)
        os.close(write_fd)
        buf = b""
        current: tuple[str, int] | None = None
        done: tuple[str, int] | None = None
        history: list[str] = []  # cases this child ran, for crashes caused by an earlier case
        log: list[str] = []
        last = time.time()
        startup = True
        hung = False
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                limit = self.args.startup_timeout if startup else self.args.case_timeout
                ready, _, _ = select.select([pipe], [], [], 1.0)
                if not ready:
                    if time.time() - last > limit:
                        hung = True
                        os.killpg(proc.pid, signal.SIGKILL)
                        break
                    continue
                chunk = pipe.read(65536)
                if not chunk:
                    break
                last = time.time()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    tag = line[:1]
                    if tag == "R":
                        startup = False
                    elif tag == "B":
                        _, t, s = line.split(" ", 2)
                        current, log = (t, int(s)), []
                        began = time.time()
                        history.append(f"{t}:{s}")
                        self.stats[t]["tried"] += 1
                    elif tag == "N":
                        log.append(line[2:])
                    elif tag == "E":
                        _, t, s, payload = line.split(" ", 3)
                        out = json.loads(payload)
                        self.next_seed[t] = int(s) + 1
                        current, done = None, (t, int(s))
                        self.spent[t] += time.time() - began
                        if out["outcome"] in ("ok", "rejected"):
                            self.stats[t][out["outcome"]] += 1
                        else:
                            out["log"] = log
                            self.record(t, int(s), out)
        rc = proc.wait()
        stderr.seek(0)
        noise = ("[0/", "[1/", "ninja:", "-- ", "Running cmake")  # an editable install rebuilding on import
        err = "\n".join(line for line in stderr.read().decode("utf-8", "replace").splitlines()
                        if not line.startswith(noise))
        # Keep a sanitizer report from its first line; otherwise the tail.
        summary = _sanitizer_summary(err)
        marks = [err.find(m) for m in ("runtime error:", "ERROR: AddressSanitizer", "==ERROR") if m in err]
        if marks:
            start = err.rfind("\n", 0, min(marks)) + 1
            err = err[start:start + 8000]
        else:
            err = err[-6000:]
        if current is not None:
            t, s = current
            self.spent[t] += time.time() - began
            self.next_seed[t] = s + 1
            info = {"outcome": "hang" if hung else "crash", "where": summary, "signal": "timeout" if hung else _signal_name(rc),
                    "type": "hang" if hung else _signal_name(rc), "log": log, "stderr": err,
                    "message": f"no answer within {self.args.case_timeout} s" if hung else
                    f"child died with {_signal_name(rc)}", "history": history[-40:]}
            self.record(t, s, info)
        elif startup and (rc != 0 or hung):
            print(f"  worker failed at start-up ({_signal_name(rc)}):\n{err[-3000:]}", flush=True)
            if self.children == 1:
                raise SystemExit(3)
        elif (rc != 0 or hung) and done is not None:
            # Died between cases: heap corruption found late (glibc abort at a later free).
            # The last finished case is the prime suspect; earlier ones of this child too.
            t, s = done
            self.record(t, s, {"outcome": "crash-after", "where": summary, "signal": _signal_name(rc), "type": _signal_name(rc),
                               "log": [], "stderr": err, "message":
                               f"child died with {_signal_name(rc)} after this case returned "
                               f"(memory corruption detected late); rerun with --repro or under ASan",
                               "history": history[-40:]})

    # ------------------------------------------------------------ the whole run
    def go(self) -> int:
        start = time.time()
        end = start + self.args.seconds
        while time.time() < end - 0.5:
            self.child(self.targets, end)
        self.report(time.time() - start)
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)  # children's scratch files and the seed pickle
        return 1 if self.findings else 0

    def report(self, elapsed: float) -> None:
        print(f"\nfuzz: {elapsed:.0f} s, base seed {self.base_seed}, "
              f"{sum(s['tried'] for s in self.stats.values())} inputs over {len(self.targets)} targets")
        print(f"{'target':34s} {'tried':>7s} {'ok':>7s} {'rejected':>8s} {'findings':>8s}")
        for t in self.targets:
            s = self.stats[t]
            print(f"{t:34s} {s['tried']:7d} {s['ok']:7d} {s['rejected']:8d} {s['findings']:8d}")
        summary = {"seconds": round(elapsed, 1), "base_seed": self.base_seed, "targets": self.stats,
                   "findings": [{k: v for k, v in f.items() if k not in ("log", "traceback", "stderr")}
                                for f in self.findings.values()]}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        if self.findings:
            print(f"\n{len(self.findings)} distinct findings (reproducers in {self.out}):")
            for f in self.findings.values():
                what = f.get("where") or ""
                if f["outcome"] == "garbage":
                    what = str(f.get("message", ""))[:110]
                print(f"  {f['target']} seed={f['seed']} x{f['count']}: {f['outcome']} {f.get('type')} {what}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120, help="total time budget (default 120)")
    p.add_argument("--targets", nargs="*", default=["*"], help="glob patterns of target names")
    p.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    p.add_argument("--out", default=str(ROOT / "build" / "fuzz-findings"), help="reproducer folder")
    p.add_argument("--slice", type=float, default=0.3, help="seconds per target per round")
    p.add_argument("--case-timeout", type=float, default=10, help="seconds before a case is a hang")
    p.add_argument("--startup-timeout", type=float, default=120)
    p.add_argument("--mem-gib", type=float, default=4, help="address-space limit of a child (0: none)")
    p.add_argument("--avoid", nargs="*", default=[], metavar="LAYOUT",
                   help="array layouts never generated (e.g. nonaligned, once that finding is known)")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not replay each new crash alone in a fresh process")
    p.add_argument("--replay", nargs="+", metavar="TARGET:SEED", help="run these cases in order in this process")
    p.add_argument("--repro", nargs=2, metavar=("TARGET", "SEED"), help="run one case in this process")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    if args.avoid:
        os.environ["LLMREC_FUZZ_AVOID"] = ",".join(args.avoid)  # read by fuzz.gen in the children
    from fuzz.registry import all_targets
    from fuzz.targets_core import check_coverage

    if args.replay:
        args.repro = None
        from fuzz.worker import run_one
        import warnings
        warnings.simplefilter("ignore")
        from fuzz.targets_core import collect_seeds
        if any(c.startswith("core.") for c in args.replay):
            collect_seeds()
        worst = 0
        for case in args.replay:
            target, seed = case.rsplit(":", 1)
            out = run_one(target, int(seed))
            print(case, out["outcome"], out.get("type", ""), flush=True)
            worst = worst or int(out["outcome"] not in ("ok", "rejected"))
        return worst

    if args.repro:
        from fuzz.worker import run_one
        import warnings
        warnings.simplefilter("ignore")
        target, seed = args.repro[0], int(args.repro[1])
        if target.startswith("core."):
            from fuzz.targets_core import collect_seeds
            collect_seeds()
        out = run_one(target, seed, emit=lambda line: print(line[2:], flush=True))
        print(json.dumps({k: v for k, v in out.items() if k != "log"}, indent=1))
        return 0 if out["outcome"] in ("ok", "rejected") else 1

    missing = check_coverage()
    if missing:
        print(f"fuzz: _core functions without a fuzz target (add a seed call in fuzz/targets_core.py): "
              f"{', '.join(missing)}")
        return 2
    targets = [t for t in all_targets() if any(fnmatch.fnmatch(t, pat) for pat in args.targets)]
    if args.list:
        print("\n".join(targets))
        return 0
    if not targets:
        print("fuzz: no target matches", args.targets)
        return 2
    return Run(args, targets).go()


if __name__ == "__main__":
    sys.exit(main())
