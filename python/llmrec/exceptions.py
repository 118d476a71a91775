"""Exceptions shared across llmrec's estimators."""

from __future__ import annotations


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


__all__ = ["NotFittedError", "UnknownIdError"]
