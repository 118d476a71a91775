"""scikit-learn's estimator protocol, shared by ALS and the Recommender."""

from __future__ import annotations

from typing import Any


class Estimator:
    """get_params / set_params / repr over the constructor arguments named in
    ``_param_names`` (keyword-only, stored as given, no logic in ``__init__``)."""

    _param_names: tuple[str, ...] = ()

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # noqa: ARG002 (scikit-learn's signature)
        """The constructor arguments, as given (``deep`` is scikit-learn's: no parameter
        here is an estimator whose own parameters could be listed)."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments; returns self. Takes effect at the next fit."""
        for name in params:
            if name not in self._param_names:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid: {list(self._param_names)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not isinstance(v, type(defaults[k])) or v != defaults[k]]
        return f"{type(self).__name__}({', '.join(changed)})"
