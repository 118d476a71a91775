"""User and item towers trained on interactions (torch; the ``text`` extra).

>>> towers = llmrec.towers.SequenceTowers(dim=64, layers=2, max_history=50)
>>> towers.fit(histories, item_texts=texts)            # histories: one id array per user
>>> U = towers.user_vectors(histories, requests=None)  # (n, 64) float32
>>> # with fit(…, profiles=user_texts), user_vectors(…, profiles=…) reads them too
>>> V = towers.item_vectors()                          # every fitted item
>>> V_new = towers.item_vectors(texts=new_texts)       # items unseen at fit, from text
>>> ids, scores = llmrec.ExactIndex(V).search(U, 10)

Importing this package does not import torch; fitting, encoding and loading do.
"""

from __future__ import annotations

from llmrec.towers.estimator import SequenceTowers

__all__ = ["SequenceTowers"]
