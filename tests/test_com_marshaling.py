"""aptrt.com conformance: marshal streams, NORMAL/TABLESTRONG/TABLEWEAK data, proxies and apartments.

Objects count their references (``locks``): Wine's ``cLocks``, which marshal.c checks after each step.
"""

from __future__ import annotations

import threading

from aptrt import com

from .com_support import (
    Both,
    ComThread,
    Counted,
    IOther,
    ITest,
    com_clean,
    host,
    in_thread,
    marshal,
    raises_hr,
    release_data,
    sta,
    unmarshal,
)

__all__ = ["com_clean", "host", "sta"]


def test_marshal_invalid_arguments(sta: None) -> None:
    """CoMarshalInterface needs a stream and an object: E_INVALIDARG [compobj.c test_CoMarshalInterface]."""
    stream = com.CreateStreamOnHGlobal(None, True)
    with raises_hr(com.E_INVALIDARG):
        com.CoMarshalInterface(stream, ITest, None, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    with raises_hr(com.E_INVALIDARG):
        com.CoMarshalInterface(None, ITest, Counted(), com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    with raises_hr(com.E_NOINTERFACE):
        com.CoMarshalInterface(stream, IOther, Counted(), com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)


def test_release_reads_at_the_stream_position(sta: None) -> None:
    """CoReleaseMarshalData reads at the stream's position: not rewound, STG_E_READFAULT; rewound,
    S_OK, and the object's references are gone [compobj.c test_CoMarshalInterface; marshal.c
    test_bad_marshal_stream, test_normal_marshal_and_release]."""
    obj = Counted()
    stream = com.CreateStreamOnHGlobal(None, True)
    com.CoMarshalInterface(stream, ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    assert obj.locks > 0
    with raises_hr(com.STG_E_READFAULT):
        com.CoReleaseMarshalData(stream)
    assert release_data(stream) == com.S_OK
    assert obj.locks == 0


def test_unmarshal_invalid_arguments() -> None:
    """CoUnmarshalInterface: no stream is E_INVALIDARG (even uninitialised), an uninitialised thread
    CO_E_NOTINITIALIZED, an empty stream STG_E_READFAULT [compobj.c test_CoUnmarshalInterface]."""
    with raises_hr(com.E_INVALIDARG):
        com.CoUnmarshalInterface(None, com.IID_IUnknown)
    stream = com.CreateStreamOnHGlobal(None, True)
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoUnmarshalInterface(stream, com.IID_IUnknown)
    com.CoInitialize(None)
    try:
        with raises_hr(com.STG_E_READFAULT):
            com.CoUnmarshalInterface(stream, com.IID_IUnknown)
    finally:
        com.CoUninitialize()


def test_same_apartment_unmarshal_gives_the_object(sta: None) -> None:
    """Unmarshaled in its own apartment, NORMAL data gives the object itself, with a reference; a
    second unmarshal is CO_E_OBJNOTCONNECTED [marshal.c test_normal_marshal_and_unmarshal,
    test_normal_marshal_and_unmarshal_twice]."""
    obj = Counted()
    stream = marshal(obj)
    assert unmarshal(stream) is obj
    assert obj.locks == 1
    with raises_hr(com.CO_E_OBJNOTCONNECTED):
        unmarshal(stream)
    obj.Release()
    assert obj.locks == 0


def test_unmarshal_for_a_missing_interface_uses_the_data(sta: None) -> None:
    """Unmarshaling for an interface the object lacks fails with E_NOINTERFACE and still uses up the
    NORMAL data [marshal.c test_same_apartment_unmarshal_failure]."""
    obj = Counted()
    stream = marshal(obj, iid=com.IID_IUnknown)
    with raises_hr(com.E_NOINTERFACE):
        unmarshal(stream, IOther)
    assert obj.locks == 0


def test_interthread_marshal(host: ComThread) -> None:
    """Unmarshaled in another apartment, NORMAL data gives a proxy that calls the object in its own
    apartment; releasing the proxy releases the object [marshal.c test_interthread_marshal_and_unmarshal]."""
    obj = Counted()
    stream = host.run(marshal, obj)
    proxy = unmarshal(stream)
    assert isinstance(proxy, com.ComProxy)
    assert obj.locks > 0
    assert proxy.Where()[0] == "host-sta"
    assert proxy.Release() == 0
    assert obj.locks == 0


def test_proxy_marshaled_again(host: ComThread) -> None:
    """A proxy can be marshaled on; the new consumers point at the real object, which stays alive when
    the first proxy goes [marshal.c test_proxy_marshal_and_unmarshal, test_proxy_marshal_and_unmarshal2]."""
    obj = Counted()
    proxy = unmarshal(host.run(marshal, obj))
    stream = com.CreateStreamOnHGlobal(None, True)
    for _ in range(6):
        com.CoMarshalInterface(stream, ITest, proxy, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    proxy.Release()
    assert obj.locks > 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    for _ in range(6):
        again = com.CoUnmarshalInterface(stream, ITest)
        assert again.Value() == 42
        again.Release()
    assert obj.locks == 0


def test_tablestrong_twice(host: ComThread) -> None:
    """TABLESTRONG data unmarshals any number of times and keeps the object alive until
    CoReleaseMarshalData [marshal.c test_tablestrong_marshal_and_unmarshal_twice]."""
    obj = Counted()
    stream = host.run(marshal, obj, com.MSHLFLAGS_TABLESTRONG)
    first, second = unmarshal(stream), unmarshal(stream)
    assert first == second
    first.Release()
    second.Release()
    assert obj.locks > 0  # the difference between strong and weak table marshaling
    host.run(release_data, stream)
    assert obj.locks == 0


def test_tableweak_twice(host: ComThread) -> None:
    """TABLEWEAK data unmarshals any number of times but does not keep the object alive: it goes with
    the last proxy [marshal.c test_tableweak_marshal_and_unmarshal_twice]."""
    obj = Counted()
    stream = host.run(marshal, obj, com.MSHLFLAGS_TABLEWEAK)
    assert obj.locks > 0
    first, second = unmarshal(stream), unmarshal(stream)
    first.Release()
    assert obj.locks > 0
    second.Release()
    assert obj.locks == 0
    with raises_hr(com.CO_E_OBJNOTREG):
        unmarshal(stream)


def test_tableweak_released_data(host: ComThread) -> None:
    """Releasing TABLEWEAK data before any unmarshal frees the object (later unmarshals fail with
    CO_E_OBJNOTREG); released while a proxy lives, the data still unmarshals [marshal.c
    test_tableweak_marshal_releasedata1, test_tableweak_marshal_releasedata2]."""
    lonely = Counted()
    stream = host.run(marshal, lonely, com.MSHLFLAGS_TABLEWEAK)
    host.run(release_data, stream)
    assert lonely.locks == 0
    with raises_hr(com.CO_E_OBJNOTREG):
        unmarshal(stream)

    obj = Counted()
    stream = host.run(marshal, obj, com.MSHLFLAGS_TABLEWEAK)
    first = unmarshal(stream)
    host.run(release_data, stream)
    assert obj.locks > 0
    second = unmarshal(stream)
    first.Release()
    second.Release()
    assert obj.locks == 0


def test_proxy_table_marshaling(host: ComThread) -> None:
    """A proxy marshaled TABLESTRONG keeps the object alive after the proxy is released; marshaled
    TABLEWEAK it does not (CO_E_OBJNOTREG) [marshal.c test_proxy_marshal_and_unmarshal_strong,
    test_proxy_marshal_and_unmarshal_weak]."""
    obj = Counted()
    proxy = unmarshal(host.run(marshal, obj))
    strong = marshal(proxy, com.MSHLFLAGS_TABLESTRONG)
    proxy.Release()
    again = unmarshal(strong)
    assert again.Value() == 42
    again.Release()
    assert obj.locks > 0
    release_data(strong)
    assert obj.locks == 0

    weak_obj = Counted()
    proxy = unmarshal(host.run(marshal, weak_obj))
    weak = marshal(proxy, com.MSHLFLAGS_TABLEWEAK)
    proxy.Release()
    with raises_hr(com.CO_E_OBJNOTREG):
        unmarshal(weak)
    assert weak_obj.locks == 0


def test_proxy_used_in_the_wrong_apartment(host: ComThread) -> None:
    """A proxy belongs to the apartment that unmarshaled it: another STA or the implicit MTA gets
    RPC_E_WRONG_THREAD, an uninitialised thread CO_E_NOTINITIALIZED; released from there, it still
    gives its reference back [marshal.c test_proxy_used_in_wrong_thread]."""
    obj = Counted()
    proxy = unmarshal(host.run(marshal, obj))

    def from_uninitialised() -> None:
        with raises_hr(com.CO_E_NOTINITIALIZED):
            proxy.Value()
        cookie = com.CoIncrementMTAUsage()
        assert com.CoGetApartmentType() == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_IMPLICIT_MTA)
        with raises_hr(com.RPC_E_WRONG_THREAD):
            proxy.Value()
        com.CoDecrementMTAUsage(cookie)

    in_thread(from_uninitialised)
    with ComThread() as other:
        with raises_hr(com.RPC_E_WRONG_THREAD):
            other.run(proxy.Value)
        other.run(proxy.Release)
    assert obj.locks == 0


def test_proxy_identity(host: ComThread) -> None:
    """One proxy manager per object and apartment: QueryInterface(IID_IUnknown) from any interface
    gives the same proxy, and QueryInterface for a missing interface is E_NOINTERFACE [marshal.c
    test_client_security, test_proxy_interfaces; com-semantics.md §1.3]."""
    obj = Both()
    test = unmarshal(host.run(marshal, obj))
    other = test.QueryInterface(IOther)
    assert other.Other() == "other"
    assert test.QueryInterface(com.IID_IUnknown) is other.QueryInterface(com.IID_IUnknown)
    assert test == other
    with raises_hr(com.E_NOINTERFACE):
        unmarshal(host.run(marshal, Counted())).QueryInterface(IOther)
    for proxy in (test, other, test, other):
        proxy.Release()
    assert obj.locks == 0


def test_inter_thread_stream(host: ComThread) -> None:
    """CoMarshalInterThreadInterfaceInStream needs an object (E_INVALIDARG) and holds it until the
    data is unmarshaled and the proxy released [compobj.c test_CoMarshalInterThreadInterfaceInStream]."""
    with raises_hr(com.E_INVALIDARG):
        com.CoMarshalInterThreadInterfaceInStream(ITest, None)
    obj = Counted()
    stream = host.run(com.CoMarshalInterThreadInterfaceInStream, ITest, obj)
    assert obj.locks > 0
    proxy = com.CoUnmarshalInterface(stream, ITest)
    proxy.Release()
    assert obj.locks == 0


def test_get_interface_and_release_stream(host: ComThread) -> None:
    """CoGetInterfaceAndReleaseStream needs a stream (E_INVALIDARG) and releases it whether it
    unmarshals or not [compobj.c test_CoGetInterfaceAndReleaseStream; W:combase/marshal.c]."""
    with raises_hr(com.E_INVALIDARG):
        com.CoGetInterfaceAndReleaseStream(None, com.IID_IUnknown)
    stream = host.run(com.CoMarshalInterThreadInterfaceInStream, ITest, Counted())
    stream.AddRef()
    with raises_hr(com.E_NOINTERFACE):
        com.CoGetInterfaceAndReleaseStream(stream, IOther)
    assert stream.Release() == 0


def test_implicit_mta_unmarshal_and_use() -> None:
    """An uninitialised thread can unmarshal and use an object while an MTA exists (implicit MTA); once
    it initialises an STA, that proxy is in the wrong apartment [marshal.c test_implicit_mta]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        with ComThread(name="host-sta") as host:
            obj = Counted()
            stream = host.run(marshal, obj)

            def implicit() -> None:
                proxy = unmarshal(stream)
                assert proxy.Value() == 42
                com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
                with raises_hr(com.RPC_E_WRONG_THREAD):
                    proxy.Value()
                com.CoUninitialize()
                proxy.Release()

            in_thread(implicit)
            assert obj.locks == 0
    finally:
        com.CoUninitialize()


def test_interface_arguments_cross_as_proxies(host: ComThread) -> None:
    """Interface pointers passed in calls are marshaled: the callee gets a proxy (and calls back into
    the caller's STA, which serves it while it waits); a proxy that returns home arrives as the object
    itself [com-semantics.md §1.3, §1.6]."""

    class Recorder(Counted):
        seen: object = None

        def Call(self, other: object, method: str) -> object:
            self.seen = other
            return getattr(other, method)()

    recorder = Recorder()
    proxy = unmarshal(host.run(marshal, recorder))
    assert proxy.Call(Counted(7), "Value") == 7  # the host calls back into this STA during the call
    assert isinstance(recorder.seen, com.ComProxy)
    home = Counted(9)
    home_proxy = unmarshal(host.run(marshal, home))
    assert proxy.Call(home_proxy, "Value") == 9
    assert recorder.seen is home  # back in its own apartment, the object itself
    recorder.seen = None
    proxy.Release()
    home_proxy.Release()


def test_sta_to_sta_and_back() -> None:
    """STA → STA → back to the first STA: a thread waiting in an outgoing call serves the callback on its
    own stack, as COM's modal loop does [com-semantics.md §1.6; compobj.c test_CoWaitForMultipleHandles
    (calls served while an STA waits)]."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        with ComThread(name="sta-b") as b, ComThread(name="sta-c") as c:
            c_in_b = b.run(lambda: unmarshal(c.run(marshal, Counted())))

            class Relay(Counted):
                def Call(self, other: object, method: str) -> object:
                    return c_in_b.Call(other, method)  # in B: ask C to call the caller's object back

            relay = unmarshal(b.run(marshal, Relay()))
            # A waits on B, B waits on C, C calls A: A serves the call while it waits
            assert relay.Call(Counted(), "Where") == (threading.current_thread().name, (com.APTTYPE_MAINSTA, 0))
            relay.Release()
            b.run(c_in_b.Release)
    finally:
        com.CoUninitialize()
