"""aptrt.com conformance: IUnknown counts, IExternalConnection, CoLockObjectExternal, CoDisconnectObject,
and what apartment shutdown does to stubs and proxies.

``locks`` is the object's COM reference count (Wine's ``cLocks``); ``connections`` and
``last_release_closes`` are what IExternalConnection was told (Wine's ``external_connections`` and
``last_release_closes``, checked by marshal.c's ``with_external_conn`` passes).
"""

from __future__ import annotations

import gc
import threading
from typing import ClassVar

import aptrt
from aptrt import com

from .com_support import (
    Both,
    ComThread,
    Connected,
    Counted,
    IOther,
    ITest,
    com_clean,
    host,
    marshal,
    raises_hr,
    release_data,
    sta,
    unmarshal,
    wait,
)

__all__ = ["com_clean", "host", "sta"]


def test_iunknown_defaults() -> None:
    """QueryInterface gives the object for each interface it implements (and IUnknown), adding a
    reference; E_NOINTERFACE otherwise; AddRef/Release return the new count [D: IUnknown::QueryInterface,
    IUnknown::AddRef, IUnknown::Release]."""
    obj = Both()
    assert obj.AddRef() == 1
    assert obj.QueryInterface(com.IID_IUnknown) is obj
    assert obj.QueryInterface(IOther) is obj
    assert obj.QueryInterface("{" + str(ITest.__iid__) + "}") is obj
    assert obj.locks == 4
    with raises_hr(com.E_NOINTERFACE):
        Counted().QueryInterface(IOther)
    with raises_hr(com.E_NOINTERFACE):
        obj.QueryInterface("{12345678-1234-1234-1234-56789abcdef0}")
    with raises_hr(com.E_INVALIDARG):
        obj.QueryInterface(None)
    assert [obj.Release() for _ in range(4)] == [3, 2, 1, 0]


def test_external_connection_normal_marshal(sta: None) -> None:
    """NORMAL marshal data is a strong external connection; releasing it gives ReleaseConnection with
    fLastReleaseCloses=TRUE [marshal.c test_normal_marshal_and_release (with_external_conn)]."""
    obj = Connected()
    stream = marshal(obj)
    assert obj.connections == 1 and obj.locks > 0
    release_data(stream)
    assert obj.connections == 0 and obj.last_release_closes is True and obj.locks == 0


def test_external_connection_same_apartment_unmarshal(sta: None) -> None:
    """Unmarshaling at home ends the connection with fLastReleaseCloses=FALSE; the caller's pointer
    keeps the object [marshal.c test_normal_marshal_and_unmarshal (with_external_conn)]."""
    obj = Connected()
    pointer = unmarshal(marshal(obj))
    assert obj.connections == 0 and obj.last_release_closes is False and obj.locks > 0
    pointer.Release()
    assert obj.locks == 0


def test_external_connection_interthread(host: ComThread) -> None:
    """A proxy in another apartment holds the connection; its release ends it with
    fLastReleaseCloses=TRUE [marshal.c test_interthread_marshal_and_unmarshal (with_external_conn)]."""
    obj = Connected()
    proxy = unmarshal(host.run(marshal, obj))
    assert obj.connections == 1
    proxy.Release()
    assert obj.connections == 0 and obj.last_release_closes is True and obj.locks == 0


def test_tableweak_with_external_connection(host: ComThread) -> None:
    """TABLEWEAK data is no connection; with IExternalConnection it keeps the stub after the last proxy
    goes, until the data is released [marshal.c test_tableweak_marshal_and_unmarshal_twice
    (with_external_conn)]."""
    obj = Connected()
    stream = host.run(marshal, obj, com.MSHLFLAGS_TABLEWEAK)
    assert obj.connections == 0 and obj.locks > 0
    first, second = unmarshal(stream), unmarshal(stream)
    assert obj.connections == 1
    first.Release()
    second.Release()
    assert obj.connections == 0 and obj.last_release_closes is True
    assert obj.locks > 0  # the remaining weak reference keeps the stub
    host.run(release_data, stream)
    assert obj.locks == 0


def test_tableweak_and_normal(host: ComThread) -> None:
    """TABLEWEAK and NORMAL data of one object unmarshal into the same proxy; the object goes with the
    last proxy reference [marshal.c test_tableweak_and_normal_marshal_and_unmarshal]."""
    obj = Counted()
    weak_stream, normal_stream = host.run(lambda: (marshal(obj, com.MSHLFLAGS_TABLEWEAK), marshal(obj)))
    weak, normal = unmarshal(weak_stream), unmarshal(normal_stream)
    assert weak is normal  # one proxy manager per object and apartment
    normal.Release()
    assert obj.locks > 0
    weak.Release()
    assert obj.locks == 0


def test_two_tableweak_data(host: ComThread) -> None:
    """Two TABLEWEAK data: releasing one leaves the object alive for the other, releasing both frees it
    [marshal.c test_two_tableweak_marshal_and_releasedata]."""
    obj = Counted()
    first, second = host.run(lambda: (marshal(obj, com.MSHLFLAGS_TABLEWEAK), marshal(obj, com.MSHLFLAGS_TABLEWEAK)))
    host.run(release_data, first)
    assert obj.locks > 0
    host.run(release_data, second)
    assert obj.locks == 0


def test_lock_object_external_then_disconnect(sta: None) -> None:
    """CoLockObjectExternal makes the stub of an object never marshaled (a strong connection);
    CoDisconnectObject then releases the object without telling IExternalConnection [marshal.c
    test_lock_object_external]."""
    obj = Connected()
    assert com.CoLockObjectExternal(obj, True, True) == com.S_OK
    assert obj.locks > 0 and obj.connections == 1
    assert com.CoDisconnectObject(obj, 0) == com.S_OK
    assert obj.locks == 0 and obj.connections == 1


def test_lock_object_external_counts(sta: None) -> None:
    """Locks and marshal data add up: the object goes with the last of them, and the last unlock with
    fLastUnlockReleases=TRUE says so to IExternalConnection [marshal.c test_lock_object_external]."""
    obj = Connected()
    com.CoLockObjectExternal(obj, True, True)
    stream = marshal(obj)
    com.CoLockObjectExternal(obj, True, True)
    release_data(stream)
    assert obj.locks > 0 and obj.connections == 1
    com.CoLockObjectExternal(obj, False, True)
    assert obj.locks > 0 and obj.connections == 1
    com.CoLockObjectExternal(obj, False, True)
    assert obj.locks == 0 and obj.connections == 0 and obj.last_release_closes is True


def test_last_unlock_without_release(sta: None) -> None:
    """fLastUnlockReleases=FALSE is passed on to ReleaseConnection; with only strong references the
    object still goes [marshal.c test_lock_object_external]."""
    obj = Connected()
    com.CoLockObjectExternal(obj, True, False)
    assert obj.locks > 0 and obj.connections == 1
    com.CoLockObjectExternal(obj, False, False)
    assert obj.locks == 0 and obj.connections == 0 and obj.last_release_closes is False


def test_weak_data_survives_an_unlock(sta: None) -> None:
    """With TABLEWEAK data outstanding, an unlock with fLastUnlockReleases=FALSE does not release the
    object; CoDisconnectObject does [marshal.c test_lock_object_external]."""
    obj = Connected()
    marshal(obj, com.MSHLFLAGS_TABLEWEAK)
    assert obj.locks > 0 and obj.connections == 0
    com.CoLockObjectExternal(obj, True, False)
    assert obj.connections == 1
    com.CoLockObjectExternal(obj, False, False)
    assert obj.locks > 0 and obj.connections == 0 and obj.last_release_closes is False
    com.CoDisconnectObject(obj, 0)
    assert obj.locks == 0


def test_unknown_objects_are_ignored(sta: None) -> None:
    """Unlocking an object never locked, or disconnecting one never exported, succeeds silently;
    CoDisconnectObject(None) is E_INVALIDARG [com-semantics.md §3.4 (Wine: "native is pretty broken
    here"); marshal.c test_disconnect_stub]."""
    obj = Counted()
    assert com.CoLockObjectExternal(obj, False, True) == com.S_OK
    assert com.CoDisconnectObject(obj, 0) == com.S_OK
    assert obj.locks == 0
    with raises_hr(com.E_INVALIDARG):
        com.CoDisconnectObject(None, 0)
    with raises_hr(com.E_INVALIDARG):
        com.CoLockObjectExternal(None, True, True)


def test_disconnect_stub(host: ComThread) -> None:
    """CoDisconnectObject cuts every external reference, locks included: the object is released and its
    clients get RPC_E_DISCONNECTED [marshal.c test_disconnect_stub; D: CoDisconnectObject]."""
    obj = Counted()
    stream = host.run(marshal, obj)
    proxy = unmarshal(stream)
    host.run(com.CoLockObjectExternal, obj, True, True)
    host.run(com.CoDisconnectObject, obj, 0)
    assert obj.locks == 0
    with raises_hr(com.RPC_E_DISCONNECTED) as info:
        proxy.Value()
    assert isinstance(info.value, aptrt.DisconnectedError)
    assert proxy.Release() == 0


def test_disconnect_inside_a_call(host: ComThread) -> None:
    """An object may call CoDisconnectObject on itself from inside a call; the call completes, later
    calls fail [marshal.c test_local_server (local_server_GetClassID)]."""

    class SelfDisconnecting(Counted):
        def Value(self) -> int:
            return com.CoDisconnectObject(self, 0)

    proxy = unmarshal(host.run(marshal, SelfDisconnecting()))
    assert proxy.Value() == com.S_OK
    with raises_hr(com.RPC_E_DISCONNECTED):
        proxy.Value()
    proxy.Release()


def test_server_apartment_shutdown(sta: None) -> None:
    """When the server apartment goes, its stubs are released even though clients hold proxies
    (ReleaseConnection with fLastReleaseCloses=FALSE); the proxies then get RPC_E_DISCONNECTED
    [marshal.c test_marshal_stub_apartment_shutdown]."""
    obj = Connected()
    with ComThread(name="host-sta") as host:
        proxy = unmarshal(host.run(marshal, obj))
        assert obj.connections == 1
    assert obj.locks == 0 and obj.connections == 0 and obj.last_release_closes is False
    with raises_hr(com.RPC_E_DISCONNECTED):
        proxy.Value()
    assert proxy.Release() == 0


def test_client_apartment_shutdown(host: ComThread) -> None:
    """When the client apartment goes, its proxies give their references back (fLastReleaseCloses=TRUE)
    and later calls through them fail with CO_E_OBJNOTCONNECTED [marshal.c
    test_marshal_proxy_apartment_shutdown]."""
    obj = Connected()
    stream = host.run(marshal, obj)
    done = threading.Event()
    box: dict[str, object] = {}

    def client() -> None:
        com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
        proxy = unmarshal(stream)
        box["before"] = obj.connections
        com.CoUninitialize()
        box["locks"], box["connections"], box["closes"] = obj.locks, obj.connections, obj.last_release_closes
        try:
            proxy.Value()
        except aptrt.COMError as exc:
            box["error"] = exc.hresult
        box["release"] = proxy.Release()
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    wait(done)
    thread.join()
    assert box == {
        "before": 1,
        "locks": 0,
        "connections": 0,
        "closes": True,
        "error": com.CO_E_OBJNOTCONNECTED,
        "release": 0,
    }


def test_client_mta_shutdown(host: ComThread) -> None:
    """When the MTA goes, the proxies it holds give their references back [marshal.c
    test_marshal_proxy_mta_apartment_shutdown]."""
    obj = Connected()
    stream = host.run(marshal, obj)
    with ComThread(com.COINIT_MULTITHREADED) as mta:
        mta.run(unmarshal, stream)
        assert obj.connections == 1
    assert obj.locks == 0 and obj.connections == 0 and obj.last_release_closes is True


def test_garbage_collected_proxies_give_back_their_reference(host: ComThread) -> None:
    """Dropping every reference to a proxy (Python's Release) gives the object's external reference back,
    as the last Release does in COM [com-semantics.md §1.4]."""
    obj = Counted()
    proxy = unmarshal(host.run(marshal, obj))
    assert obj.locks > 0
    del proxy
    gc.collect()
    com.CoGetApartmentType()  # any facade call gives back what the collector dropped
    assert obj.locks == 0


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e21", threading_model="Free")
class FreeLocked(Counted):
    """A Free object that locks itself (CoLockObjectExternal) when asked for its value."""

    instances: ClassVar[list[FreeLocked]] = []

    def __init__(self) -> None:
        super().__init__()
        FreeLocked.instances.append(self)

    def Value(self) -> int:
        return com.CoLockObjectExternal(self, True, True)


def test_objects_of_apartments_no_thread_owns_are_released() -> None:
    """An object in an apartment no thread of the program initialised (a Free object made for an STA
    lives in an MTA that COM creates) is released when COM shuts down, even while locked [com-semantics.md
    §1.1 (everything is released at the process's last CoUninitialize), §1.2]."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        proxy = com.CoCreateInstance(FreeLocked.__clsid__, None, com.CLSCTX_INPROC_SERVER, ITest)  # type: ignore[attr-defined]
        assert proxy.Where()[1] == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_NONE)
        assert proxy.Value() == com.S_OK
        obj = FreeLocked.instances[-1]
        proxy.Release()
        assert obj.locks == 1  # the lock keeps it
    finally:
        com.CoUninitialize()
    assert obj.locks == 0
