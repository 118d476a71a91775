"""Item labels (each item's title, else its text) as one UTF-8 buffer and row offsets.

A numpy object array holds one Python ``str`` per item: 49 bytes of object header
besides the characters, and an 8-byte pointer (165 bytes per item on the 1M stand-in
catalogue, whose labels are texts of about 108 characters). :class:`Labels` keeps the
UTF-8 bytes and one int64 offset per item. Labels are read one at a time (explanations,
the server's item labels), never scanned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec._arrays import appended, spare_rows


class Labels:
    """Labels of items 0 … n − 1: item i is ``data[offsets[i]:offsets[i + 1]]`` decoded
    from UTF-8. ``data`` uint8, ``offsets`` int64 (n + 1,), rising from 0 to len(data)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def of(cls, texts: Any) -> Labels:
        """Labels of ``texts`` (any values: each is ``str()``-ed)."""
        encoded = [str(t).encode("utf-8") for t in texts]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1]) + self.offsets.nbytes

    def texts(self, rows: Any) -> list[str]:
        """The labels of int ``rows`` (each in range), as a list: one offsets gather for
        all of them (a ranking's labels)."""
        rows = np.asarray(rows, dtype=np.int64)
        data = self.data
        # errors="replace": bytes a crafted file holds decode, never raise
        return [data[a:b].tobytes().decode("utf-8", errors="replace")
                for a, b in zip(self.offsets[rows].tolist(), self.offsets[rows + 1].tolist())]

    def __getitem__(self, rows: Any) -> Any:
        """One label (str) for an integer row; an object array of them for row arrays
        and slices."""
        if not isinstance(rows, slice) and np.ndim(rows) == 0:
            row = int(rows)
            if not -len(self) <= row < len(self):
                raise IndexError(f"label row {row} out of range for {len(self)} items")
            return self.texts([row % len(self)])[0]
        picked = np.arange(len(self))[rows]
        out = np.empty(picked.shape, dtype=object)
        out.flat[:] = self.texts(picked.ravel())
        return out

    def with_spare_rows(self) -> Labels:
        """These labels in storage with room to append (:func:`llmrec._arrays.spare_rows`)."""
        return Labels(spare_rows(self.data[:int(self.offsets[-1])]), spare_rows(self.offsets))

    def appended(self, texts: Any) -> Labels:
        """These labels and those of ``texts``, written in spare capacity past what this
        object sees (it stays as it is)."""
        new = Labels.of(texts)
        end = int(self.offsets[-1])
        return Labels(appended(self.data[:end], new.data), appended(self.offsets, new.offsets[1:] + end))


__all__ = ["Labels"]
