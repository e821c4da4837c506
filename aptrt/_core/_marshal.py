"""How values cross an apartment boundary.

The policy (documented in the README, benchmarked in ``benchmarks``):

* interface objects (instances of implementation classes) never cross raw: they are exported from the
  apartment they live in and arrive as proxies; a proxy that reaches its object's home apartment arrives
  as the object itself; a proxy passed on to a third apartment arrives as a proxy bound there;
* immutable values (``int``, ``str``, ``bytes``, ``tuple`` of such, ``frozenset``, ``None``, ...) pass
  through untouched, so a 1 MB ``bytes`` costs nothing to send;
* the mutable built-in containers ``list``, ``dict``, ``set`` and ``bytearray`` are copied (shallowly,
  with their items marshaled by these same rules), so two apartments never share one by accident;
* ``aptrt.by_reference(value)`` is the explicit opt-out: the value crosses as it is, uncopied (for large
  buffers; the sender promises not to touch it while the receiver uses it);
* any other object crosses as it is (it is the user's to make it safe: immutable, or self-guarding).
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._interface import Interface, is_interface, primary_interface

if TYPE_CHECKING:
    from ._apartment import Apartment

T = TypeVar("T")

#: types whose values are immutable and hold no interface: they pass through
PLAIN: frozenset[type] = frozenset(
    {
        int,
        float,
        complex,
        bool,
        str,
        bytes,
        type(None),
        range,
        frozenset,
        uuid.UUID,
        decimal.Decimal,
        fractions.Fraction,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        type(Ellipsis),
    }
)


class ByReference(Generic[T]):
    """Marks a value to cross apartments uncopied (see :func:`by_reference`)."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"by_reference({self.value!r})"


def by_reference(value: T) -> T:
    """Send *value* to another apartment as it is, without the copy aptrt makes of mutable containers.

    Use it for large buffers (``bytearray``, ``memoryview``, big lists) when the sender will not touch
    the value while the receiver uses it. The receiver gets *value* itself.
    """
    return ByReference(value)  # type: ignore[return-value]


def is_plain(args: tuple[Any, ...]) -> bool:
    """True when every value in *args* passes through untouched (the fast path)."""
    for value in args:
        if type(value) not in PLAIN:
            return False
    return True


def marshal(value: Any, src: Apartment, dst: Apartment) -> Any:
    """*value* as the receiving apartment *dst* must see it, sent from *src*."""
    cls = type(value)
    if cls in PLAIN:
        return value
    from ._proxy import Proxy, make_proxy

    if isinstance(value, Proxy):
        stub = value._stub
        if stub.apartment is dst:
            return stub.live_object()
        return make_proxy(stub, dst, value._interface)
    if isinstance(value, Interface) and not is_interface(cls):
        if getattr(value, "__aptrt_agile__", False):
            return value
        if src is dst:
            return value
        stub = src.exports.export(value)
        return make_proxy(stub, dst, primary_interface(cls))
    if cls is ByReference:
        return value.value
    copier = _CONTAINERS.get(cls)
    if copier is not None:
        return copier(value, src, dst)
    if isinstance(value, tuple):
        items = [marshal(item, src, dst) for item in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return cls._make(items) if hasattr(cls, "_make") else cls(items)
    return value


def marshal_args(args: tuple[Any, ...], src: Apartment, dst: Apartment) -> tuple[Any, ...]:
    if is_plain(args):
        return args
    return tuple(marshal(value, src, dst) for value in args)


def marshal_kwargs(kwargs: dict[str, Any], src: Apartment, dst: Apartment) -> dict[str, Any]:
    return {key: marshal(value, src, dst) for key, value in kwargs.items()}


def _tuple(value: tuple[Any, ...], src: Apartment, dst: Apartment) -> tuple[Any, ...]:
    items = tuple(marshal(item, src, dst) for item in value)
    if all(a is b for a, b in zip(items, value, strict=True)):
        return value
    return items


_CONTAINERS: dict[type, Callable[[Any, Apartment, Apartment], Any]] = {
    tuple: _tuple,
    list: lambda v, s, d: [marshal(item, s, d) for item in v],
    dict: lambda v, s, d: {marshal(k, s, d): marshal(item, s, d) for k, item in v.items()},
    set: lambda v, s, d: {marshal(item, s, d) for item in v},
    bytearray: lambda v, s, d: bytearray(v),
}
