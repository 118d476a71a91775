"""The exceptions llmrec raises beyond Python's own (all importable from ``llmrec``).

- :class:`FormatError` (a ``ValueError``): a file given to any ``load`` (``ExactIndex``,
  ``QuantizedIndex``, ``ALS``, ``SequenceTowers``, ``Recommender``,
  ``datasets.load_movielens``) is not an llmrec file, is of another kind or version, is
  truncated, corrupted or inconsistent.
- :class:`NotFittedError` (a ``ValueError`` and ``AttributeError``): an estimator used
  before ``fit``.
- :class:`UnknownIdError` (a ``KeyError``): a user or item id the model does not know.

Bad arguments raise ``TypeError`` (wrong type) or ``ValueError`` (wrong value), with a
message that names the argument and what was expected.
"""

from __future__ import annotations


class FormatError(ValueError):
    """A file is not an llmrec file, is of another kind or version, or is damaged."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``.

    Inherits from ``ValueError`` and ``AttributeError`` like scikit-learn's, so code that
    catches either keeps working.
    """


class UnknownIdError(KeyError):
    """A user or item id that the model does not know.

    A ``KeyError`` (so ``except KeyError`` catches it) whose message names the id and
    whether it was a user or an item id; ``.id`` holds the offending id.
    """

    def __init__(self, message: str, id: object = None) -> None:
        from llmrec._checks import plain

        super().__init__(message)
        self.message = message
        self.id = plain(id)  # 7001, not np.int64(7001)

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return self.message


__all__ = ["FormatError", "NotFittedError", "UnknownIdError"]
