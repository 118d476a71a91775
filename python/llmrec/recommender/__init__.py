"""The Recommender: interactions and text together, served by the native ranker.

:class:`Recommender` is the one object most users touch; :class:`Recommendations` is
what its queries return. See :mod:`llmrec.recommender.model` for how it scores.

The package, file by file (data enters at ``model.fit``; requests at the public methods
of ``model``, which pin a ``snapshot`` and rank through ``ranking`` over ``scoring``):

* model — the estimator: parameters and their checks, the encoder, fit's order of
  steps, request parsing, the public methods (which delegate below);
* inputs, ids, feedback, history — reading the DataFrames, caller ids ↔ rows, what
  each interaction means, the liked histories;
* training, grid_sample, fusion, scenarios, calibration, towers_signal, popularity —
  fitting the parts: ALS and next-item ALS, the blend and λ on a validation slice,
  per-scenario blends, Platt scaling, the optional towers, the popularity prior of
  short histories;
* state — the fitted state (:class:`~.state.Fitted`), built by one function for fit
  and load;
* users — every signal's user vectors from histories (fit, update, visitors);
* rows, scoring, partitioned — the item matrices, catalogue geometry, stage-1
  candidate channels (exact, quantized, IVF) and the native exact re-scoring;
* ranking — one request: candidates, re-scoring, MMR, the popular list;
* pairs, recall, explain — scores of given pairs and probabilities, the two-stage
  ranking's recall, explanations;
* snapshot — what a request pins and how writers publish;
* updates, late_items — update and add_items, and the items re-solved from their
  first clicks; catalogue — remove_items, forget_user, compact;
* persistence — save and load (versioned, atomic); results — ``Recommendations``.
"""

from llmrec.exceptions import UnknownIdError
from llmrec.recommender.explain import Explanation
from llmrec.recommender.model import Recommender
from llmrec.recommender.results import Recommendations

__all__ = ["Explanation", "Recommendations", "Recommender", "UnknownIdError"]
