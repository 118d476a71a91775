"""Shared pieces of the Recommender tests: a word-hashing encoder whose vectors carry
the synthetic catalogue's topic vocabulary, small data sets, and the crafted-file check."""

from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest

from llmrec import FormatError, Recommender
from llmrec.datasets import synthetic


class WordEncoder:
    """Bag of words: each word a fixed random vector, a text the normalised sum.

    Texts sharing words get similar vectors, so the synthetic items' topic words carry
    real signal, as a language model's would (and it runs in microseconds)."""

    dim = 64
    model_name = "word-hash"

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def _word(self, word: str) -> np.ndarray:
        if word not in self._cache:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            self._cache[word] = np.random.default_rng(seed).standard_normal(self.dim)
        return self._cache[word]

    def encode(self, texts, *, kind="document", show_progress=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3]
            if words:
                out[i] = np.sum([self._word(w) for w in words], axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def small_data(n_users: int = 300, n_items: int = 400, seed: int = 0):
    return synthetic(n_users, n_items, n_topics=8, density=0.05, random_state=seed)


def assert_crafted_copy_refused(saved, tmp_path, craft, match=None):
    """Copy the model directory ``saved`` into ``tmp_path``, let ``craft(directory)``
    damage the copy, and check that loading it raises FormatError (matching ``match``)."""
    directory = tmp_path / "crafted"
    shutil.copytree(saved, directory)
    craft(directory)
    with pytest.raises(FormatError, match=match):
        Recommender.load(directory, encoder=WordEncoder())


def assert_crafted_arrays_refused(saved, tmp_path, craft, match=None):
    """As :func:`assert_crafted_copy_refused`, with ``craft(arrays)`` changing the dict of
    the copy's Recommender arrays in place (written back with the same meta and version)."""
    from llmrec._fileformat import load_arrays, save_arrays

    def damage(directory):
        path = directory / "recommender.llmrec"
        meta, arrays, version = load_arrays(path, "Recommender", max_kind_version=99)
        arrays = {name: np.array(a) for name, a in arrays.items()}
        craft(arrays)
        save_arrays(path, "Recommender", version, meta, arrays)

    assert_crafted_copy_refused(saved, tmp_path, damage, match=match)
