"""TextEncoder on a tiny random BERT built offline: batching, pooling, prefixes, cache."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import llmrec  # noqa: E402
from llmrec.text import TextEncoder  # noqa: E402
from llmrec.text.testing import WORDS, save_tiny_bert  # noqa: E402
from tolerances import assert_within, gamma, network_tolerance  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    return TextEncoder(tiny_dir, device="cpu", batch_size=4)


def _mixed_texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def _reference(encoder, texts, pooling, normalize=True, max_length=None):
    """Each text alone (no padding, no batching) through the model, pooled by hand."""
    model, tokenizer = encoder._model, encoder._tokenizer
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length or encoder.max_length,
                            return_tensors="pt")["input_ids"]
            hidden = model(input_ids=ids).last_hidden_state[0]
            vector = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}[pooling]
            if normalize:
                vector = vector / vector.norm()
            rows.append(vector.numpy())
    return np.stack(rows)


def test_shape_dtype_and_attributes(encoder, tiny_dir):
    vectors = encoder.encode(["the movie", "a love story in the city"])
    assert vectors.shape == (2, encoder.dim) and encoder.dim == 32
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    # a float32 normalisation (γ_{d/2+3} per component, tolerances.cosine_tolerance)
    assert_within(np.linalg.norm(vectors.astype(np.float64), axis=1), 1, gamma(32 // 2 + 4))
    assert encoder.model_name == str(tiny_dir)
    assert encoder.device == "cpu"
    assert encoder.max_length == 128  # lowered from 256 to the model's position limit
    assert "TextEncoder(" in repr(encoder)
    assert llmrec.TextEncoder is TextEncoder


def test_empty_and_single_string(encoder):
    assert encoder.encode([]).shape == (0, 32)
    assert encoder.encode(()).dtype == np.float32
    one = encoder.encode("the movie")
    assert one.shape == (1, 32)
    # exact: the same tokens in a batch of one, through the same model
    np.testing.assert_array_equal(one, encoder.encode(["the movie"]))


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_matches_unbatched_reference(tiny_dir, pooling):
    enc = TextEncoder(tiny_dir, device="cpu", pooling=pooling, batch_size=5)
    texts = _mixed_texts(23, seed=1)
    assert_within(enc.encode(texts), _reference(enc, texts, pooling), network_tolerance(enc._model))


def test_unnormalized_vectors(tiny_dir):
    enc = TextEncoder(tiny_dir, device="cpu", normalize=False)
    texts = _mixed_texts(9, seed=2)
    vectors = enc.encode(texts)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert_within(vectors, _reference(enc, texts, "mean", normalize=False),
                  network_tolerance(enc._model))


def test_order_is_restored_with_mixed_lengths(encoder):
    texts = _mixed_texts(40, seed=3)
    vectors = encoder.encode(texts)
    permutation = np.random.default_rng(4).permutation(len(texts))
    shuffled = encoder.encode([texts[i] for i in permutation])
    # other batches, other padding: within the network's rounding budget
    bound = network_tolerance(encoder._model)
    assert_within(shuffled, vectors[permutation], bound)
    singles = np.concatenate([encoder.encode([t]) for t in texts[:8]])
    assert_within(singles, vectors[:8], bound)


def test_batch_size_and_chunking_do_not_change_vectors(tiny_dir, encoder):
    texts = _mixed_texts(60, seed=5)
    big = TextEncoder(tiny_dir, device="cpu", batch_size=64).encode(texts)
    capped = TextEncoder(tiny_dir, device="cpu", max_batch_tokens=50).encode(texts)
    bound = network_tolerance(encoder._model)
    assert_within(capped, big, bound)
    small = TextEncoder(tiny_dir, device="cpu", batch_size=1).encode(texts)
    assert_within(small, big, bound)


def test_accepts_any_sequence_of_str(encoder):
    texts = ["the movie", "dark comedy"]
    expected = encoder.encode(texts)
    # exact: the same texts in the same batch, whatever sequence type carried them
    np.testing.assert_array_equal(encoder.encode(tuple(texts)), expected)
    np.testing.assert_array_equal(encoder.encode(np.array(texts)), expected)
    np.testing.assert_array_equal(encoder.encode(iter(texts)), expected)


def test_bad_texts_name_the_index(encoder):
    with pytest.raises(TypeError, match="None"):
        encoder.encode(None)
    with pytest.raises(TypeError, match=r"texts\[1\].*None"):
        encoder.encode(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[2\].*int"):
        encoder.encode(["ok", "fine", 3])
    with pytest.raises(TypeError):
        encoder.encode(b"bytes")
    with pytest.raises(TypeError):
        encoder.encode(42)
    with pytest.raises(ValueError, match="kind"):
        encoder.encode(["ok"], kind="passage")


def test_overlong_text_is_truncated_at_max_length(tiny_dir):
    enc = TextEncoder(tiny_dir, device="cpu", max_length=16)
    words = [WORDS[i % len(WORDS)] for i in range(500)]  # each word is one token
    long_vector = enc.encode([" ".join(words)])
    head_vector = enc.encode([" ".join(words[:14])])  # 16 = [CLS] + 14 words + [SEP]
    # exact: truncation leaves the very same 16 tokens
    np.testing.assert_array_equal(long_vector, head_vector)
    # one token fewer is a different text: far outside the network's rounding budget
    assert not np.allclose(long_vector, enc.encode([" ".join(words[:13])]), rtol=0,
                           atol=100 * network_tolerance(enc._model))
    # The default max_length is capped by the model (128 positions): still no error.
    assert TextEncoder(tiny_dir, device="cpu").encode([" ".join(words)]).shape == (1, 32)


def test_query_and_document_prefixes(tiny_dir):
    enc = TextEncoder(tiny_dir, device="cpu", query_prefix="secret night: ",
                      document_prefix="old story: ")
    plain = TextEncoder(tiny_dir, device="cpu")
    texts = ["a light comedy for the weekend", "war drama"]
    query = enc.encode(texts, kind="query")
    document = enc.encode(texts)
    # exact: a prefix is text put in front; the same tokens, batch and weights
    np.testing.assert_array_equal(query, plain.encode(["secret night: " + t for t in texts]))
    np.testing.assert_array_equal(document, plain.encode(["old story: " + t for t in texts]))
    assert not np.allclose(query, document, rtol=0, atol=100 * network_tolerance(enc._model))


def test_bad_settings(tiny_dir):
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(tiny_dir, pooling="max")
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(tiny_dir, batch_size=0)
    with pytest.raises(TypeError, match="max_length"):
        TextEncoder(tiny_dir, max_length=12.5)
    with pytest.raises(ValueError, match="dtype"):
        TextEncoder(tiny_dir, dtype="int8")
    with pytest.raises(ValueError, match="device"):
        TextEncoder(tiny_dir, device="no-such-device")
    with pytest.raises(TypeError, match="query_prefix"):
        TextEncoder(tiny_dir, query_prefix=None)
    with pytest.raises(TypeError, match="normalize"):
        TextEncoder(tiny_dir, normalize="yes")
    with pytest.raises(ValueError, match="max_batch_tokens"):
        TextEncoder(tiny_dir, max_batch_tokens=0)


def test_missing_model_path_is_named(tmp_path):
    missing = tmp_path / "not-here"
    with pytest.raises(FileNotFoundError, match="not-here"):
        TextEncoder(missing)
    with pytest.raises(FileNotFoundError, match="not-here"):
        TextEncoder(str(missing))


def test_unknown_hub_id_is_not_downloaded():
    with pytest.raises(OSError, match="does not download"):
        TextEncoder("llmrec-tests/no-such-model-anywhere")


def test_bfloat16_weights_still_return_float32(tiny_dir, encoder):
    enc = TextEncoder(tiny_dir, device="cpu", dtype="bfloat16")
    assert enc.dtype == "bfloat16"
    texts = _mixed_texts(6, seed=6)
    vectors = enc.encode(texts)
    assert vectors.dtype == np.float32
    cosine = np.sum(vectors * encoder.encode(texts), axis=1)
    assert cosine.min() > 0.95


def test_progress_bar_and_callback(encoder, capsys):
    calls = []
    texts = _mixed_texts(10, seed=7)
    encoder.encode(texts, show_progress=True, callback=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10, 10)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) == 3  # batch_size 4
    assert "encoding" in capsys.readouterr().err


def test_cache_encodes_only_new_texts(tiny_dir, tmp_path):
    texts = _mixed_texts(30, seed=8)
    fresh = TextEncoder(tiny_dir, device="cpu").encode(texts)
    totals = []
    record = lambda done, total: totals.append(total)  # noqa: E731
    enc = TextEncoder(tiny_dir, device="cpu", cache_dir=tmp_path)
    bound = network_tolerance(enc._model)
    assert_within(enc.encode(texts, callback=record), fresh, bound)
    assert totals[-1] == 30

    # A new encoder on the same directory: a changed catalogue only encodes the changes.
    totals.clear()
    changed = texts[:25] + ["brand new item", "another new item"]
    again = TextEncoder(tiny_dir, device="cpu", cache_dir=tmp_path)
    vectors = again.encode(changed, callback=record)
    assert totals == [2]
    np.testing.assert_array_equal(vectors[:25], enc.encode(texts)[:25])
    # cached rows were encoded in other batches
    assert_within(vectors, TextEncoder(tiny_dir, device="cpu").encode(changed), bound)

    # Everything cached: no forward pass at all.
    totals.clear()
    again.encode(changed, callback=record)
    assert totals == []

    # Query prefix and other settings get their own keys.
    prefixed = TextEncoder(tiny_dir, device="cpu", cache_dir=tmp_path, query_prefix="dark: ")
    prefixed.encode(texts[:3], kind="query", callback=record)
    assert totals == [3]
    totals.clear()
    prefixed.encode(texts[:3], callback=record)  # document prefix "" is cached already
    assert totals == []
    TextEncoder(tiny_dir, device="cpu", cache_dir=tmp_path, pooling="cls").encode(
        texts[:4], callback=record)
    assert totals == [4]


def test_corrupted_cache_entry_is_recomputed(tiny_dir, tmp_path):
    import sqlite3

    from llmrec.text.cache import FILE_NAME

    texts = _mixed_texts(5, seed=9)
    enc = TextEncoder(tiny_dir, device="cpu", cache_dir=tmp_path)
    expected = enc.encode(texts)
    db = sqlite3.connect(str(tmp_path / FILE_NAME))
    with db:
        db.execute("UPDATE vectors SET data = ? WHERE rowid = 1", (b"\x01" * 4 * enc.dim,))
    db.close()
    totals = []
    vectors = enc.encode(texts, callback=lambda done, total: totals.append(total))
    assert totals == [1]
    assert_within(vectors, expected, network_tolerance(enc._model))  # re-encoded alone


def test_texts_are_tokenized_a_chunk_at_a_time(encoder, monkeypatch):
    from llmrec.text import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "_TOKENIZE_CHUNK", 16)
    sizes = []
    tokenizer = encoder._tokenizer
    monkeypatch.setattr(encoder, "_tokenizer",
                        lambda texts, **kw: sizes.append(len(texts)) or tokenizer(texts, **kw))
    texts = _mixed_texts(100, seed=10)
    vectors = encoder.encode(texts)
    assert max(sizes) == 32 and sum(sizes) == 100  # max(16, 8 * batch_size 4)
    monkeypatch.undo()
    assert_within(vectors, encoder.encode(texts), network_tolerance(encoder._model))


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import torch
    from llmrec.text import TextEncoder
    from llmrec.text.testing import WORDS
    torch.set_num_threads(1)
    enc = TextEncoder(sys.argv[1], device="cpu", batch_size=256)
    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    texts = [" ".join(words[rng.integers(0, len(words), 30)]) for _ in range(int(sys.argv[2]))]
    enc.encode(texts[:4_000])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = enc.encode(texts)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) / 1024, out.nbytes / 2**20)
""")


def test_peak_memory_is_bounded_by_the_chunk_not_the_corpus(tiny_dir):
    # 20k texts of ~32 tokens: tokenizing them all at once would hold about 1M tokens in
    # Python lists and Rust encodings (~110 MiB); streaming 2k-text chunks stays near
    # the output array. bench/bench_text.py measures the same for 100k texts.
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tiny_dir), "20000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    growth_mib, output_mib = map(float, result.stdout.split()[-2:])
    assert growth_mib < output_mib + 32, (growth_mib, output_mib)
