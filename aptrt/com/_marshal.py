"""Marshaling: streams, marshal data (NORMAL, TABLESTRONG, TABLEWEAK), the GIT, the free-threaded
marshaler, CoLockObjectExternal and CoDisconnectObject.

A marshal stream (:class:`IStream`) is an opaque sequence of marshal packets with a seek position, as a
``CreateStreamOnHGlobal`` stream is a sequence of bytes: ``CoMarshalInterface`` writes a packet at the
position and moves past it, ``CoUnmarshalInterface``/``CoReleaseMarshalData`` read the packet there and
move past it (reading past the end is ``STG_E_READFAULT``), ``Seek(0, STREAM_SEEK_SET)`` rewinds.

A packet names an object's stub manager (its OXID/OID/IPID, in COM's terms), the interface and the
flags. NORMAL data carries one strong external reference until it is unmarshaled (once:
``CO_E_OBJNOTCONNECTED`` the second time) or released; TABLESTRONG data one until released; TABLEWEAK
data none (it only counts as a table-weak reference). Unmarshaling in the object's home apartment gives
the object itself; anywhere else a facade proxy. Objects that use the free-threaded marshaler (they
derive from :class:`aptrt.Agile`, or hand out the marshaler from ``QueryInterface(IID_IMarshal)``)
travel as themselves for ``MSHCTX_INPROC``/``MSHCTX_CROSSCTX``.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

from .._core._apartment import Apartment
from .._core._exceptions import DisconnectReason, InvalidArgumentError, NoInterfaceError, ObjectNotConnectedError
from .._core._hresult import HRESULT
from .._core._interface import Interface, is_com_object
from .._core._marshaling import Agile
from .._core._proxy import Proxy
from .._core._validate import check_cookie
from . import _init
from ._constants import (
    MSHCTX_CROSSCTX,
    MSHCTX_INPROC,
    MSHLFLAGS_NOPING,
    MSHLFLAGS_NORMAL,
    MSHLFLAGS_TABLESTRONG,
    MSHLFLAGS_TABLEWEAK,
    S_OK,
    STREAM_SEEK_CUR,
    STREAM_SEEK_END,
    STREAM_SEEK_SET,
    CLSID_InProcFreeMarshaler,
    CLSID_StdMarshal,
)
from ._proxy import ComProxy, acquire, adopt
from ._unknown import (
    IUnknown,
    StubManager,
    disconnect,
    ext_addref,
    ext_release,
    find_manager,
    get_manager,
    qi,
    supports,
)
from ._util import addref, dword, error, release, required, to_interface

# -- interfaces ------------------------------------------------------------------------------------------


class IStream(IUnknown, iid="0000000C-0000-0000-C000-000000000046"):
    """A marshal stream (opaque: it holds marshal packets, and moves in packets)."""

    def Seek(self, dlibMove: int, dwOrigin: int = STREAM_SEEK_SET) -> int:
        raise NotImplementedError

    def Clone(self) -> Any:
        raise NotImplementedError


class IMarshal(IUnknown, iid="00000003-0000-0000-C000-000000000046"):
    """Custom marshaling (aptrt.com implements the free-threaded marshaler with it)."""

    def GetUnmarshalClass(
        self, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int
    ) -> uuid.UUID:
        raise NotImplementedError

    def GetMarshalSizeMax(self, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int) -> int:
        raise NotImplementedError

    def MarshalInterface(
        self, pStm: Any, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int
    ) -> int:
        raise NotImplementedError

    def UnmarshalInterface(self, pStm: Any, riid: Any) -> Any:
        raise NotImplementedError

    def ReleaseMarshalData(self, pStm: Any) -> int:
        raise NotImplementedError

    def DisconnectObject(self, dwReserved: int) -> int:
        raise NotImplementedError


class IGlobalInterfaceTable(IUnknown, iid="00000146-0000-0000-C000-000000000046"):
    """The process's table of interfaces any apartment can get back by cookie."""

    def RegisterInterfaceInGlobal(self, pUnk: Any, riid: Any) -> int:
        raise NotImplementedError

    def RevokeInterfaceFromGlobal(self, dwCookie: int) -> int:
        raise NotImplementedError

    def GetInterfaceFromGlobal(self, dwCookie: int, riid: Any) -> Any:
        raise NotImplementedError


IID_IStream = IStream.__iid__
IID_IMarshal = IMarshal.__iid__
IID_IGlobalInterfaceTable = IGlobalInterfaceTable.__iid__

# -- packets -------------------------------------------------------------------------------------------------


class Packet:
    """Marshal data for one interface pointer (see the module docstring)."""

    __slots__ = ("home", "obj", "interface", "flags", "weak_client", "used", "released", "lock")

    def __init__(
        self, home: StubManager | None, obj: Any, interface: type[Interface], flags: int, *, weak_client: bool = False
    ) -> None:
        #: the stub manager of a standard packet (None for a free-threaded one)
        self.home = home
        #: the object of a free-threaded packet (travels as itself)
        self.obj = obj
        self.interface = interface
        self.flags = flags
        #: TABLEWEAK data of a proxy: the weak reference stays with the proxy's apartment, none at home
        self.weak_client = weak_client
        self.used = False
        self.released = False
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        kind = "free-threaded" if self.home is None else "standard"
        state = "released" if self.released else ("used" if self.used else "live")
        return f"<marshal packet {kind} {self.interface.__name__} flags={self.flags} {state}>"


def uses_ftm(obj: Any) -> bool:
    """True if *obj* is marshaled by the free-threaded marshaler (Agile, or aggregates the FTM)."""
    if getattr(obj, "__aptrt_agile__", False):
        return True
    if isinstance(obj, FreeThreadedMarshaler):
        return True
    query = getattr(obj, "QueryInterface", None)
    if not callable(query) or not is_com_object(obj):
        return False
    try:
        marshaler = query(IMarshal)
    except NoInterfaceError:
        return False
    release(marshaler)
    return isinstance(marshaler, FreeThreadedMarshaler)


def make_packet(pUnk: Any, interface: type[Interface], flags: int, dest: int, apartment: Apartment) -> Packet:
    """Marshal *pUnk* (an object of *apartment*, or a proxy) for *interface*: CoMarshalInterface's work."""
    flags = _mshlflags(flags)
    if isinstance(pUnk, Proxy):
        pUnk = adopt(pUnk)
    if isinstance(pUnk, ComProxy):
        manager = pUnk._pm
        if manager.released:
            raise ObjectNotConnectedError("this proxy was released")
        if manager.stub.disconnected:
            raise manager.stub.disconnected_error()
        if interface is not IUnknown and not manager.stub.info.implements(interface):
            raise NoInterfaceError(f"{manager.stub.info.cls.__qualname__} does not implement {interface.__name__}")
        if flags == MSHLFLAGS_TABLEWEAK:
            return Packet(manager.home, None, interface, flags, weak_client=True)
        ext_addref(manager.home, 1)
        return Packet(manager.home, None, interface, flags)
    if not supports(pUnk, interface):
        raise NoInterfaceError(f"{type(pUnk).__qualname__} does not implement {interface.__name__}")
    if dest in (MSHCTX_INPROC, MSHCTX_CROSSCTX) and uses_ftm(pUnk):
        if flags != MSHLFLAGS_TABLEWEAK:
            addref(pUnk)
        return Packet(None, pUnk, interface, flags)
    home = get_manager(pUnk, apartment)
    if flags == MSHLFLAGS_TABLEWEAK:
        ext_addref(home, 0, True)
    else:
        ext_addref(home, 1)
    return Packet(home, None, interface, flags)


def _mshlflags(flags: object) -> int:
    """NORMAL, TABLESTRONG or TABLEWEAK (NOPING stripped: it changes nothing in-process); else E_INVALIDARG."""
    if isinstance(flags, bool) or not isinstance(flags, int) or (flags & ~MSHLFLAGS_NOPING) not in (0, 1, 2):
        raise InvalidArgumentError(f"invalid MSHLFLAGS {flags!r}")
    return flags & ~MSHLFLAGS_NOPING


def unmarshal_packet(packet: Packet, interface: type[Interface], apartment: Apartment) -> Any:
    """What *packet* names, for *apartment*: the object at home (one more reference), else a proxy."""
    if packet.home is None:  # free-threaded: the pointer itself; NORMAL data hands its reference over
        obj = packet.obj
        if not supports(obj, interface):
            raise NoInterfaceError(f"{type(obj).__qualname__} does not implement {interface.__name__}")
        if packet.flags == MSHLFLAGS_NORMAL:
            with packet.lock:
                packet.used = True
            return obj
        return qi(obj, interface)
    home = packet.home
    normal = packet.flags == MSHLFLAGS_NORMAL
    if normal:
        with packet.lock:
            if packet.used or packet.released:
                raise ObjectNotConnectedError("this NORMAL marshal data was already unmarshaled or released")
            packet.used = True
    if not home.alive:
        if normal:
            raise ObjectNotConnectedError("the object of this marshal data is no longer connected")
        raise error(HRESULT.CO_E_OBJNOTREG, "the object of this table marshal data is gone")
    obj = home.obj
    if not supports(obj, interface):
        if normal:
            ext_release(home, 1, False, False)
        raise NoInterfaceError(f"{type(obj).__qualname__} does not implement {interface.__name__}")
    if home.apartment is apartment:
        result = qi(obj, interface)
        if normal:
            ext_release(home, 1, False, False)
        return result
    return acquire(apartment, home.stub, home, interface, transfer=normal)


def release_packet(packet: Packet) -> None:
    """CoReleaseMarshalData for one packet (again: nothing)."""
    with packet.lock:
        if packet.released:
            return
        packet.released = True
        used = packet.used
    home = packet.home
    if home is None:
        if packet.flags == MSHLFLAGS_TABLESTRONG or (packet.flags == MSHLFLAGS_NORMAL and not used):
            release(packet.obj)
        return
    if packet.weak_client:
        return
    if packet.flags == MSHLFLAGS_TABLEWEAK:
        ext_release(home, 0, True, False)
    elif packet.flags == MSHLFLAGS_TABLESTRONG or not used:
        ext_release(home, 1, False, True)


# -- streams -----------------------------------------------------------------------------------------------


class ComStream(Agile, IStream):
    """An opaque marshal stream (``CreateStreamOnHGlobal``): usable from any thread."""

    def __init__(self, items: list[Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = [] if items is None else items
        self._pos = 0
        self._com_refs = 1

    def __repr__(self) -> str:
        return f"<IStream {len(self._items)} packet(s), at {self._pos}>"

    def Seek(self, dlibMove: int, dwOrigin: int = STREAM_SEEK_SET) -> int:
        """Move the position (in packets); returns the new position."""
        if isinstance(dlibMove, bool) or not isinstance(dlibMove, int):
            raise error(HRESULT.E_INVALIDARG, f"cannot seek by {dlibMove!r}: not an int")
        if isinstance(dwOrigin, bool) or not isinstance(dwOrigin, int):
            raise error(HRESULT.E_INVALIDARG, f"unknown seek origin {dwOrigin!r}")
        with self._lock:
            base = {STREAM_SEEK_SET: 0, STREAM_SEEK_CUR: self._pos, STREAM_SEEK_END: len(self._items)}.get(dwOrigin)
            if base is None or base + dlibMove < 0:
                raise error(HRESULT.E_INVALIDARG, f"cannot seek by {dlibMove} from origin {dwOrigin}")
            self._pos = base + dlibMove
            return self._pos

    def Clone(self) -> ComStream:
        """A stream over the same packets with its own position."""
        clone = ComStream(self._items)
        clone._pos = self._pos
        return clone

    def write(self, packet: Packet) -> None:
        with self._lock:
            if self._pos < len(self._items):
                self._items[self._pos] = packet
            else:
                self._items.append(packet)
            self._pos += 1

    def read(self) -> Packet:
        with self._lock:
            if self._pos >= len(self._items):
                raise error(HRESULT.STG_E_READFAULT, "no marshal data at the stream's position")
            item = self._items[self._pos]
            self._pos += 1
        if not isinstance(item, Packet):
            raise error(HRESULT.RPC_E_INVALID_OBJREF, "the stream's data is not marshal data")
        return item


def _stream(pStm: Any) -> ComStream:
    required(pStm, "pStm")
    if not isinstance(pStm, ComStream):
        raise InvalidArgumentError(f"not a stream of aptrt.com: {pStm!r}")
    return pStm


def CreateStreamOnHGlobal(hGlobal: object = None, fDeleteOnRelease: bool = True) -> ComStream:
    """A new, empty marshal stream (one reference)."""
    return ComStream()


def CoMarshalInterface(
    pStm: Any,
    riid: Any,
    pUnk: Any,
    dwDestContext: int = MSHCTX_INPROC,
    pvDestContext: object = None,
    mshlflags: int = MSHLFLAGS_NORMAL,
) -> int:
    """Write marshal data for *pUnk*'s interface *riid* into *pStm* (see the module docstring).

    :raises InvalidArgumentError: no stream or no object (``E_INVALIDARG``)
    :raises NoInterfaceError: the object does not implement *riid* (``E_NOINTERFACE``)
    """
    _init.flush()
    stream = _stream(pStm)
    required(pUnk, "pUnk")
    dword(dwDestContext, "dwDestContext")
    apartment = _init.require_apartment()
    stream.write(make_packet(pUnk, to_interface(riid), mshlflags, dwDestContext, apartment))
    return S_OK


def CoUnmarshalInterface(pStm: Any, riid: Any) -> Any:
    """Read marshal data from *pStm*: the object in its home apartment, a facade proxy anywhere else.

    :raises COMError: ``STG_E_READFAULT`` at the end of the stream; ``CO_E_OBJNOTCONNECTED`` for NORMAL
        data already unmarshaled or released; ``CO_E_OBJNOTREG`` for table data whose object is gone
    """
    _init.flush()
    stream = _stream(pStm)
    apartment = _init.require_apartment()
    interface = to_interface(riid)
    return unmarshal_packet(stream.read(), interface, apartment)


def CoReleaseMarshalData(pStm: Any) -> int:
    """Release the marshal data at *pStm*'s position (its reference on the object); ``STG_E_READFAULT``
    past the end."""
    _init.flush()
    stream = _stream(pStm)
    _init.require_apartment()
    release_packet(stream.read())
    return S_OK


def CoMarshalInterThreadInterfaceInStream(riid: Any, pUnk: Any) -> ComStream:
    """NORMAL marshal data for *pUnk* in a new stream, rewound (for another thread to unmarshal)."""
    required(pUnk, "pUnk")
    stream = ComStream()
    CoMarshalInterface(stream, riid, pUnk, MSHCTX_INPROC, None, MSHLFLAGS_NORMAL)
    stream.Seek(0, STREAM_SEEK_SET)
    return stream


def CoGetInterfaceAndReleaseStream(pStm: Any, iid: Any) -> Any:
    """Unmarshal from *pStm* and release the stream, whether unmarshaling succeeded or not."""
    stream = _stream(pStm)
    try:
        return CoUnmarshalInterface(stream, iid)
    finally:
        stream.Release()


# -- the global interface table ------------------------------------------------------------------------


class GlobalInterfaceTable(Agile, IGlobalInterfaceTable):
    """The process's GIT (one per facade runtime): cookie → TABLESTRONG marshal data. Cookie 0 is never
    valid. ``AddRef``/``Release`` always answer 1 (a singleton)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, Packet] = {}
        self._cookies = itertools.count(1)

    def AddRef(self) -> int:
        return 1

    def Release(self) -> int:
        return 1

    def RegisterInterfaceInGlobal(self, pUnk: Any, riid: Any) -> int:
        """Register *pUnk* (an object of the calling apartment, or a proxy); returns its cookie."""
        _init.flush()
        required(pUnk, "pUnk")
        apartment = _init.require_apartment()
        packet = make_packet(pUnk, to_interface(riid), MSHLFLAGS_TABLESTRONG, MSHCTX_INPROC, apartment)
        with self._lock:
            cookie = next(self._cookies)
            self._entries[cookie] = packet
        return cookie

    def RevokeInterfaceFromGlobal(self, dwCookie: int) -> int:
        """Forget a cookie and release its marshal data; ``E_INVALIDARG`` for an unknown cookie (or 0)."""
        _init.flush()
        check_cookie(dwCookie, "dwCookie")
        _init.require_apartment()
        with self._lock:
            packet = self._entries.pop(dwCookie, None) if dwCookie else None
        if packet is None:
            raise InvalidArgumentError(f"no interface is registered in the GIT under cookie {dwCookie!r}")
        release_packet(packet)
        return S_OK

    def GetInterfaceFromGlobal(self, dwCookie: int, riid: Any) -> Any:
        """The registered interface, for the calling apartment (the object itself in its home apartment).

        :raises NotInitializedError: the thread is in no apartment (``CO_E_NOTINITIALIZED``)
        :raises InvalidArgumentError: an unknown cookie, or 0 (``E_INVALIDARG``)
        """
        _init.flush()
        check_cookie(dwCookie, "dwCookie")
        apartment = _init.require_apartment()
        with self._lock:
            packet = self._entries.get(dwCookie) if dwCookie else None
        if packet is None:
            raise InvalidArgumentError(f"no interface is registered in the GIT under cookie {dwCookie!r}")
        return unmarshal_packet(packet, to_interface(riid), apartment)

    def clear(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for packet in entries:
            release_packet(packet)


def global_interface_table() -> GlobalInterfaceTable:
    """The facade runtime's GIT (made on first use)."""
    with _init.state.lock:
        git = _init.state.extras.get("git")
        if git is None:
            git = _init.state.extras["git"] = GlobalInterfaceTable()
    assert isinstance(git, GlobalInterfaceTable)
    return git


@_init.on_close
def _clear_git() -> None:
    git = _init.state.extras.get("git")
    if isinstance(git, GlobalInterfaceTable):
        git.clear()


# -- the free-threaded marshaler ------------------------------------------------------------------------


class FreeThreadedMarshaler(Agile, IMarshal):
    """COM's free-threaded marshaler. Aggregated by *outer* (its IUnknown delegates there), it makes the
    outer object travel as itself between apartments of the process."""

    def __init__(self, outer: Any = None) -> None:
        self._outer = outer

    def QueryInterface(self, riid: Any) -> Any:
        interface = to_interface(riid)
        if interface is IMarshal:
            self.AddRef()
            return self
        if self._outer is not None:
            return qi(self._outer, interface)
        return super().QueryInterface(interface)

    def AddRef(self) -> int:
        return self._outer.AddRef() if self._outer is not None else super().AddRef()

    def Release(self) -> int:
        return self._outer.Release() if self._outer is not None else super().Release()

    def GetUnmarshalClass(
        self, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int
    ) -> uuid.UUID:
        return CLSID_InProcFreeMarshaler if dwDestContext in (MSHCTX_INPROC, MSHCTX_CROSSCTX) else CLSID_StdMarshal

    def GetMarshalSizeMax(self, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int) -> int:
        # flags, pointer and a GUID (marshal.c test_freethreadedmarshaler's expected size)
        return 4 + 8 + 16 if dwDestContext in (MSHCTX_INPROC, MSHCTX_CROSSCTX) else 68

    def MarshalInterface(
        self, pStm: Any, riid: Any, pv: Any, dwDestContext: int, pvDestContext: Any, mshlflags: int
    ) -> int:
        stream = _stream(pStm)
        required(pv, "pv")
        interface = to_interface(riid)
        if dwDestContext in (MSHCTX_INPROC, MSHCTX_CROSSCTX):
            flags = _mshlflags(mshlflags)
            if not supports(pv, interface):
                raise NoInterfaceError(f"{type(pv).__qualname__} does not implement {interface.__name__}")
            if flags != MSHLFLAGS_TABLEWEAK:
                addref(pv)
            stream.write(Packet(None, pv, interface, flags))
        else:
            stream.write(make_packet(pv, interface, mshlflags, dwDestContext, _init.require_apartment()))
        return S_OK

    def UnmarshalInterface(self, pStm: Any, riid: Any) -> Any:
        stream = _stream(pStm)
        return unmarshal_packet(stream.read(), to_interface(riid), _init.require_apartment())

    def ReleaseMarshalData(self, pStm: Any) -> int:
        release_packet(_stream(pStm).read())
        return S_OK

    def DisconnectObject(self, dwReserved: int) -> int:
        """Does nothing (an in-process free-threaded object has no stub to disconnect)."""
        return S_OK


def CoCreateFreeThreadedMarshaler(punkOuter: Any) -> FreeThreadedMarshaler:
    """A free-threaded marshaler aggregated by *punkOuter* (None: a standalone one). Return it from the
    outer object's ``QueryInterface(IID_IMarshal)`` to make the object travel as itself.

    :raises InvalidArgumentError: *punkOuter* is neither None nor a COM object (``E_INVALIDARG``)
    """
    if punkOuter is not None and not (is_com_object(punkOuter) or isinstance(punkOuter, ComProxy)):
        raise InvalidArgumentError(f"punkOuter must be a COM object or None, not {type(punkOuter).__qualname__}")
    return FreeThreadedMarshaler(punkOuter)


# -- lifetime ------------------------------------------------------------------------------------------


def CoLockObjectExternal(pUnk: Any, fLock: bool, fLastUnlockReleases: bool = True) -> int:
    """Add (``fLock``) or remove a strong external reference on an object of the calling apartment, as a
    server does to keep an object alive for its clients. The first lock makes the object's stub; the
    last unlock, with *fLastUnlockReleases*, lets it go (table-weak data then keeps it only if the object
    implements IExternalConnection). Unlocking an object never locked does nothing (``S_OK``).
    On a proxy, it adds or removes a reference on the proxy.

    :raises InvalidArgumentError: *pUnk* is None, or neither a COM object nor a facade proxy (``E_INVALIDARG``)
    """
    _init.flush()
    required(pUnk, "pUnk")
    if not isinstance(pUnk, ComProxy) and not is_com_object(pUnk):
        raise InvalidArgumentError(f"{type(pUnk).__qualname__} is not a COM object: it cannot be locked")
    apartment = _init.require_apartment()
    if isinstance(pUnk, ComProxy):
        if fLock:
            pUnk.AddRef()
        else:
            pUnk.Release()
        return S_OK
    if fLock:
        ext_addref(get_manager(pUnk, apartment), 1)
    else:
        manager = find_manager(pUnk, apartment)
        if manager is not None:
            ext_release(manager, 1, False, bool(fLastUnlockReleases))
    return S_OK


def CoDisconnectObject(pUnk: Any, dwReserved: int = 0) -> int:
    """Cut every external reference to an object of the calling apartment (locks included): its clients
    get ``RPC_E_DISCONNECTED`` from then on. An object with its own IMarshal is asked to do it
    (``IMarshal::DisconnectObject``). Unknown objects are ignored (``S_OK``); it may be called from inside
    a call on the object."""
    _init.flush()
    required(pUnk, "pUnk")
    apartment = _init.require_apartment()
    if isinstance(pUnk, ComProxy):
        return S_OK
    if is_com_object(pUnk) and not isinstance(pUnk, FreeThreadedMarshaler):
        try:
            marshaler = qi(pUnk, IMarshal)
        except NoInterfaceError:
            marshaler = None
        if marshaler is not None:
            try:
                return int(marshaler.DisconnectObject(dwReserved))
            finally:
                release(marshaler)
    manager = find_manager(pUnk, apartment)
    if manager is not None:
        disconnect(manager, DisconnectReason.OBJECT_DISCONNECTED)
        return S_OK
    stub = apartment.exports.lookup(pUnk)
    if stub is not None:
        stub.disconnect(DisconnectReason.OBJECT_DISCONNECTED)
    return S_OK
