"""Exceptions shared across llmrec's estimators."""

from __future__ import annotations


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``.

    Inherits from ``ValueError`` and ``AttributeError`` like scikit-learn's, so code that
    catches either keeps working.
    """


__all__ = ["NotFittedError"]
