"""Values a dry-run could not produce: ``Unknown`` stands for them and flows through every
expression; ``UnknownValue`` is raised when something needs one to be concrete."""
from __future__ import annotations

from typing import Any


class UnknownValue(Exception):
    """An expression needed a value that a dry-run could not produce."""

    def __init__(self, unknown: "Unknown") -> None:
        super().__init__(f"{unknown.origin} is unknown in a dry-run")
        self.unknown = unknown


#: attributes Jinja's sandbox looks up on anything it calls: an unknown has none of them
_JINJA_PROBES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg",
                           "jinja_async_variant", "_fail_with_undefined_error"})


class Unknown:
    """A value that only a real run would know, e.g. ``users.rows`` of a planned step.

    It flows through attribute and item access, arithmetic, comparisons, method calls,
    filters and tests (each gives another ``Unknown``); anything that needs it concrete
    (``if``, ``len``, ``int``, iteration) raises ``UnknownValue``.
    """

    __slots__ = ("origin", "step")

    def __init__(self, origin: str, step: str | None = None) -> None:
        self.origin = origin
        self.step = step  # the id of the step whose result it stands for

    def derive(self, suffix: str) -> "Unknown":
        return Unknown(f"{self.origin}{suffix}", self.step)

    def __getattr__(self, name: str) -> "Unknown":
        if name.startswith("__") or name in _JINJA_PROBES:
            raise AttributeError(name)
        return self.derive(f".{name}")

    def __getitem__(self, key: Any) -> "Unknown":
        if isinstance(key, slice):
            key = f"{'' if key.start is None else key.start}:{'' if key.stop is None else key.stop}"
            return self.derive(f"[{key}]")
        return self.derive(f"[{key!r}]")

    def _derived(self, *_: Any, **__: Any) -> "Unknown":
        return self

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _derived  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _derived
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _derived
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __call__ = _derived
    __hash__ = object.__hash__

    def _concrete(self, *_: Any):
        raise UnknownValue(self)

    __bool__ = __len__ = __iter__ = __int__ = __float__ = __index__ = __contains__ = _concrete

    def __str__(self) -> str:
        source = f"from step '{self.step}': " if self.step else ""
        return f"<{source}{self.origin}, {UNKNOWN_MARK}>"

    __repr__ = __str__


#: every rendering of an ``Unknown`` ends with this: a string holding it is unknown too
UNKNOWN_MARK = "unknown until run"


def _contains_unknown(value: Any) -> Unknown | None:
    if isinstance(value, Unknown):
        return value
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return None
    for item in value:
        found = _contains_unknown(item)
        if found is not None:
            return found
    return None


def contains_unknown(value: Any) -> Unknown | None:
    """The first ``Unknown`` inside ``value`` (lists, tuples and dicts walked), if any."""
    return _contains_unknown(value)


def find_unknown(args: tuple, kwargs: dict) -> Unknown | None:
    """The first ``Unknown`` among a call's arguments, looking two levels deep: a filter
    over a list that holds an unknown item is unknown too (deeper values are rare, and
    scanning every big list on every call would cost real runs time)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Unknown):
            return value
        inner = value.values() if isinstance(value, dict) else (
            value if isinstance(value, (list, tuple)) else ())
        for item in inner:
            if isinstance(item, Unknown):
                return item
    return None
