"""``State``: the named Tensors that evolve in a simulation (positions, velocities, ...).

A state is a small immutable record::

    s = State(x=x0, v=v0)            # x0, v0: Tensors [P, 3]
    s.x, s["v"], s.fields            # access; ("x", "v")
    s2 = s.replace(v=v1)             # a new State; s is unchanged

Which fields a system expects, and which of them are positions and which velocities, is
the system's business (``System.position_fields`` / ``velocity_fields``).
"""
from __future__ import annotations

from ..autodiff import Tensor, as_tensor

__all__ = ["State"]


class State:
    """An immutable mapping from field names to Tensors (see the module docstring)."""
    __slots__ = ("_f",)

    def __init__(self, **fields):
        f = {}
        for name, value in fields.items():
            f[name] = value if isinstance(value, Tensor) else as_tensor(value)
        object.__setattr__(self, "_f", f)

    # ------------------------------------------------------------ mapping
    @property
    def fields(self):
        """Field names, in order."""
        return tuple(self._f)

    def __getattr__(self, name):
        try:
            return object.__getattribute__(self, "_f")[name]
        except KeyError:
            raise AttributeError(f"State has no field {name!r} (fields: {', '.join(self._f)})") from None

    def __getitem__(self, name):
        try:
            return self._f[name]
        except KeyError:
            raise KeyError(f"State has no field {name!r} (fields: {', '.join(self._f)})") from None

    def __setattr__(self, name, value):
        raise AttributeError("State is immutable: use state.replace(name=value)")

    def __contains__(self, name):
        return name in self._f

    def __iter__(self):
        return iter(self._f)

    def __len__(self):
        return len(self._f)

    def keys(self):
        """Field names (a dict view)."""
        return self._f.keys()

    def values(self):
        """Field Tensors (a dict view)."""
        return self._f.values()

    def items(self):
        """``(name, Tensor)`` pairs (a dict view)."""
        return self._f.items()

    def replace(self, **changes):
        """A new State with some fields replaced (or added)."""
        f = dict(self._f)
        f.update(changes)
        return State(**f)

    # ------------------------------------------------------------ conversions
    def tensors(self):
        """The field Tensors as a tuple, in field order."""
        return tuple(self._f.values())

    @classmethod
    def from_tensors(cls, names, tensors):
        """Inverse of ``tensors``: a State with ``names`` bound to ``tensors``."""
        return cls(**dict(zip(names, tensors)))

    def detach(self):
        """A State of detached Tensors (no gradient flows back into this state)."""
        return State(**{k: v.detach() for k, v in self._f.items()})

    def to(self, *args, **kwargs):
        """``Tensor.to`` applied to every field (device and/or dtype)."""
        return State(**{k: v.to(*args, **kwargs) for k, v in self._f.items()})

    def clone(self):
        """A State of cloned Tensors (same values and graph, new memory)."""
        return State(**{k: v.clone() for k, v in self._f.items()})

    @property
    def dtype(self):
        """dtype of the first field (None for an empty State)."""
        return next(iter(self._f.values())).dtype if self._f else None

    @property
    def device(self):
        """Device of the first field (None for an empty State)."""
        return next(iter(self._f.values())).device if self._f else None

    def __repr__(self):
        inner = ", ".join(f"{k}=Tensor{list(v.shape)}" for k, v in self._f.items())
        return f"State({inner})"
