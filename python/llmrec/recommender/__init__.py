"""The Recommender: interactions and text together, served by the native ranker.

:class:`Recommender` is the one object most users touch; :class:`Recommendations` is
what its queries return. See :mod:`llmrec.recommender.model` for how it scores.
"""

from llmrec.exceptions import UnknownIdError
from llmrec.recommender.explain import Explanation
from llmrec.recommender.model import Recommender
from llmrec.recommender.results import Recommendations

__all__ = ["Explanation", "Recommendations", "Recommender", "UnknownIdError"]
