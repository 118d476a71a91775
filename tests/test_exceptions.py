"""The one exception module: llmrec.exceptions, re-exported at the top level."""

from __future__ import annotations

import pytest

import llmrec
from llmrec import ALS, ExactIndex, QuantizedIndex, Recommender, datasets, exceptions


def test_the_exceptions_are_public_in_one_module():
    assert set(exceptions.__all__) == {"FormatError", "NotFittedError", "UnknownIdError"}
    for name in exceptions.__all__:
        assert getattr(llmrec, name) is getattr(exceptions, name)
        assert name in llmrec.__all__
    assert issubclass(exceptions.FormatError, ValueError)
    assert issubclass(datasets.DataFormatError, exceptions.FormatError)
    assert "PackageNotFoundError" not in dir(llmrec)  # an import detail, not llmrec's API


@pytest.mark.parametrize("load", [ExactIndex.load, QuantizedIndex.load, ALS.load,
                                  lambda path: Recommender.load(path.parent, encoder=None)],
                         ids=["ExactIndex", "QuantizedIndex", "ALS", "Recommender"])
def test_every_load_raises_format_error_for_a_foreign_file(tmp_path, load):
    path = tmp_path / "recommender.llmrec"  # the file name Recommender.load reads
    path.write_bytes(b"this is not an llmrec file " * 8)
    with pytest.raises(exceptions.FormatError, match="not an llmrec file"):
        load(path)


def test_load_movielens_raises_format_error_for_a_malformed_file(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\n")
    with pytest.raises(exceptions.FormatError, match=r"u.data, line 1"):
        datasets.load_movielens(tmp_path)
