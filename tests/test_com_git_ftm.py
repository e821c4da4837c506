"""aptrt.com conformance: the global interface table and the free-threaded marshaler."""

from __future__ import annotations

from typing import Any

import aptrt
from aptrt import com

from .com_support import ComThread, Counted, ITest, com_clean, in_thread, marshal, raises_hr, sta, unmarshal

__all__ = ["com_clean", "sta"]


def get_git() -> Any:
    return com.CoCreateInstance(
        com.CLSID_StdGlobalInterfaceTable, None, com.CLSCTX_INPROC_SERVER, com.IID_IGlobalInterfaceTable
    )


class FreeThreaded(Counted):
    """An object that aggregates the free-threaded marshaler (hands it out for IID_IMarshal)."""

    def __init__(self) -> None:
        super().__init__()
        self.ftm = com.CoCreateFreeThreadedMarshaler(self)

    def QueryInterface(self, riid: Any) -> Any:
        if riid in (com.IMarshal, com.IID_IMarshal):
            return self.ftm.QueryInterface(com.IID_IMarshal)
        return super().QueryInterface(riid)


# -- the GIT ------------------------------------------------------------------------------------------------


def test_git_singleton(sta: None) -> None:
    """The GIT is a process-wide singleton: every CoCreateInstance gives it, and AddRef/Release answer 1
    [marshal.c test_globalinterfacetable]."""
    git = get_git()
    assert get_git() is git
    assert git.AddRef() == 1 and git.AddRef() == 1
    assert git.Release() == 1 and git.Release() == 1


def test_git_get_from_another_apartment(sta: None) -> None:
    """A registered interface holds the object; another thread gets CO_E_NOTINITIALIZED until it
    initialises, then a proxy of its own apartment; revoking releases the object [marshal.c
    test_globalinterfacetable (get_global_interface_proc)]."""
    git = get_git()
    obj = Counted(5)
    cookie = git.RegisterInterfaceInGlobal(obj, ITest)
    assert cookie and obj.locks > 0

    def elsewhere() -> int:
        with raises_hr(com.CO_E_NOTINITIALIZED):
            git.GetInterfaceFromGlobal(cookie, ITest)
        com.CoInitialize(None)
        try:
            proxy = git.GetInterfaceFromGlobal(cookie, ITest)
            assert isinstance(proxy, com.ComProxy)
            value = int(proxy.Value())
            proxy.Release()
            return value
        finally:
            com.CoUninitialize()

    assert in_thread(elsewhere) == 5
    assert git.RevokeInterfaceFromGlobal(cookie) == com.S_OK
    assert obj.locks == 0


def test_git_home_apartment_gets_the_object(sta: None) -> None:
    """GetInterfaceFromGlobal unmarshals into the caller's apartment: the home apartment gets the object
    itself, under any of its interfaces [com-semantics.md §1.3; W:ole32/git.c; marshal.c
    test_globalinterfacetable (different iid)]."""
    git = get_git()
    obj = Counted()
    cookie = git.RegisterInterfaceInGlobal(obj, ITest)
    assert git.GetInterfaceFromGlobal(cookie, com.IID_IUnknown) is obj
    assert git.GetInterfaceFromGlobal(cookie, ITest) is obj
    obj.Release()
    obj.Release()
    git.RevokeInterfaceFromGlobal(cookie)
    assert obj.locks == 0


def test_git_cookies(sta: None) -> None:
    """Cookie 0 is never valid, and an unknown or revoked cookie is E_INVALIDARG [com-semantics.md §1.3;
    W:ole32/git.c; D: IGlobalInterfaceTable::GetInterfaceFromGlobal]."""
    git = get_git()
    with raises_hr(com.E_INVALIDARG):
        git.GetInterfaceFromGlobal(0, ITest)
    with raises_hr(com.E_INVALIDARG):
        git.RevokeInterfaceFromGlobal(0)
    cookie = git.RegisterInterfaceInGlobal(Counted(), ITest)
    git.RevokeInterfaceFromGlobal(cookie)
    with raises_hr(com.E_INVALIDARG):
        git.GetInterfaceFromGlobal(cookie, ITest)
    with raises_hr(com.E_INVALIDARG):
        git.RevokeInterfaceFromGlobal(cookie)
    with raises_hr(com.E_INVALIDARG):
        git.RegisterInterfaceInGlobal(None, ITest)


def test_git_register_a_proxy(sta: None) -> None:
    """A proxy can be registered: other apartments then reach the real object directly, even after that
    proxy is released [D: IGlobalInterfaceTable::RegisterInterfaceInGlobal; com-semantics.md §1.3]."""
    git = get_git()
    obj = Counted(3)
    with ComThread(name="home") as home, ComThread(name="third") as third:
        proxy = unmarshal(home.run(marshal, obj))
        cookie = git.RegisterInterfaceInGlobal(proxy, ITest)
        proxy.Release()

        def use() -> Any:
            again = git.GetInterfaceFromGlobal(cookie, ITest)
            where = again.Where()
            again.Release()
            return where

        assert third.run(use)[0] == "home"
        git.RevokeInterfaceFromGlobal(cookie)
    assert obj.locks == 0


# -- the free-threaded marshaler -------------------------------------------------------------------------


def test_ftm_inproc_normal(sta: None) -> None:
    """In-process, the FTM writes the pointer itself: NORMAL data holds a reference that the unmarshaled
    pointer takes over [marshal.c test_freethreadedmarshaler]."""
    ftm = com.CoCreateFreeThreadedMarshaler(None).QueryInterface(com.IID_IMarshal)
    obj = Counted()
    assert ftm.GetMarshalSizeMax(ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL) == 4 + 8 + 16
    assert ftm.GetUnmarshalClass(ITest, obj, com.MSHCTX_INPROC, None, 0) == com.CLSID_InProcFreeMarshaler
    stream = com.CreateStreamOnHGlobal(None, True)
    ftm.MarshalInterface(stream, ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    assert obj.locks > 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    assert ftm.UnmarshalInterface(stream, com.IID_IUnknown) is obj
    obj.Release()
    assert obj.locks == 0


def test_ftm_table_marshaling(sta: None) -> None:
    """FTM TABLESTRONG data holds the object until ReleaseMarshalData; TABLEWEAK data holds nothing and
    the unmarshaled pointer carries its own reference [marshal.c test_freethreadedmarshaler]."""
    ftm = com.CoCreateFreeThreadedMarshaler(None)
    obj = Counted()
    stream = com.CreateStreamOnHGlobal(None, True)
    ftm.MarshalInterface(stream, ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_TABLESTRONG)
    stream.Seek(0, com.STREAM_SEEK_SET)
    ftm.UnmarshalInterface(stream, com.IID_IUnknown).Release()
    assert obj.locks > 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    ftm.ReleaseMarshalData(stream)
    assert obj.locks == 0

    stream.Seek(0, com.STREAM_SEEK_SET)
    ftm.MarshalInterface(stream, ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_TABLEWEAK)
    assert obj.locks == 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    unmarshaled = ftm.UnmarshalInterface(stream, com.IID_IUnknown)
    assert obj.locks == 1
    unmarshaled.Release()
    assert obj.locks == 0


def test_ftm_disconnect_does_nothing(sta: None) -> None:
    """The FTM's DisconnectObject does nothing, and it does not enforce the marshaling rules: released
    NORMAL data still unmarshals [marshal.c test_freethreadedmarshaler]."""
    ftm = com.CoCreateFreeThreadedMarshaler(None)
    obj = Counted()
    stream = com.CreateStreamOnHGlobal(None, True)
    ftm.MarshalInterface(stream, ITest, obj, com.MSHCTX_INPROC, None, com.MSHLFLAGS_NORMAL)
    assert ftm.DisconnectObject(0) == com.S_OK
    assert obj.locks > 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    ftm.ReleaseMarshalData(stream)
    assert obj.locks == 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    assert ftm.UnmarshalInterface(stream, com.IID_IUnknown) is obj
    assert obj.locks == 0


def test_ftm_other_contexts_use_standard_marshaling(sta: None) -> None:
    """For contexts other than in-process, the FTM falls back to standard marshaling (CLSID_StdMarshal),
    released with CoReleaseMarshalData [marshal.c test_freethreadedmarshaler]."""
    ftm = com.CoCreateFreeThreadedMarshaler(None)
    obj = Counted()
    assert ftm.GetUnmarshalClass(ITest, obj, com.MSHCTX_LOCAL, None, 0) == com.CLSID_StdMarshal
    stream = com.CreateStreamOnHGlobal(None, True)
    ftm.MarshalInterface(stream, ITest, obj, com.MSHCTX_LOCAL, None, com.MSHLFLAGS_NORMAL)
    assert obj.locks > 0
    stream.Seek(0, com.STREAM_SEEK_SET)
    com.CoReleaseMarshalData(stream)
    assert obj.locks == 0


def test_free_threaded_objects_travel_as_themselves(sta: None) -> None:
    """An object that aggregates the FTM (or is aptrt.Agile) reaches every apartment of the process as a
    direct pointer, not a proxy [com-semantics.md §1.3 (FTM); D: CoCreateFreeThreadedMarshaler]."""

    class AgileObject(aptrt.Agile, Counted):
        pass

    for obj in (FreeThreaded(), AgileObject()):
        stream = com.CoMarshalInterThreadInterfaceInStream(ITest, obj)
        with ComThread() as other:
            received = other.run(com.CoGetInterfaceAndReleaseStream, stream, ITest)
        assert received is obj
        assert obj.locks == 1  # the data's reference passed to the received pointer
        received.Release()
        assert obj.locks == 0
