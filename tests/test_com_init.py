"""aptrt.com conformance: per-thread initialisation, apartment types, the implicit MTA, MTA usage."""

from __future__ import annotations

import threading

import pytest

import aptrt
from aptrt import com
from aptrt.com import _init

from .com_support import ComThread, Counted, Factory, ITest, com_clean, in_thread, raises_hr, wait

__all__ = ["com_clean"]

CLSID_Init = "{3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2d01}"


def test_exports() -> None:
    """The facade's names are exported with Win32 spelling and values (com-semantics.md §1.8's table)."""
    assert isinstance(com.__all__, tuple) and len(set(com.__all__)) == len(com.__all__)
    assert all(hasattr(com, name) for name in com.__all__)
    assert com.COMError is aptrt.COMError
    assert com.IClassFactory is aptrt.IClassFactory
    assert com.S_OK == 0 and com.S_FALSE == 1 and com.INFINITE == 0xFFFFFFFF
    assert com.E_INVALIDARG & 0xFFFFFFFF == 0x80070057
    assert com.CO_E_NOTSUPPORTED == com.CO_E_NOT_SUPPORTED
    assert com.RPC_S_CALL_CANCELED & 0xFFFFFFFF == 0x8007071A
    assert str(com.IID_IUnknown) == "00000000-0000-0000-c000-000000000046"
    assert str(com.CLSID_StdGlobalInterfaceTable) == "00000323-0000-0000-c000-000000000046"
    for name in ("CoInitializeEx", "IUnknown", "ComProxy", "CoWaitForMultipleHandles", "IMessageFilter"):
        assert getattr(com, name).__module__ == "aptrt.com", name


def test_first_init_s_ok_repeat_s_false() -> None:
    """First CoInitializeEx is S_OK, the same model again S_FALSE, each balanced by its own
    CoUninitialize [D: CoInitializeEx; compobj.c test_IInitializeSpy]."""
    assert com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED) == com.S_OK
    assert com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED) == com.S_FALSE
    com.CoUninitialize()
    assert com.CoGetApartmentType() == (com.APTTYPE_MAINSTA, com.APTTYPEQUALIFIER_NONE)  # still initialised
    com.CoUninitialize()
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetApartmentType()


def test_other_model_changed_mode_not_counted() -> None:
    """Another model gives RPC_E_CHANGED_MODE and is not counted: one CoUninitialize still ends it
    [D: CoInitializeEx; compobj.c test_OleInitialize_InitCounting]."""
    assert com.CoInitializeEx(None, com.COINIT_MULTITHREADED) == com.S_OK
    with raises_hr(com.RPC_E_CHANGED_MODE) as info:
        com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    assert isinstance(info.value, aptrt.ChangedModeError)
    with pytest.raises(aptrt.ChangedModeError):
        com.CoInitialize(None)
    com.CoUninitialize()
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoCreateInstance(CLSID_Init, None, com.CLSCTX_INPROC_SERVER, ITest)


def test_invalid_flags() -> None:
    """CoInitializeEx with flags that are no COINIT value fails with E_INVALIDARG [D: CoInitializeEx]."""
    with raises_hr(com.E_INVALIDARG):
        com.CoInitializeEx(None, 0x100)


def test_apartment_types() -> None:
    """The first STA is APTTYPE_MAINSTA, a later one APTTYPE_STA, the MTA APTTYPE_MTA, all with
    qualifier NONE; a thread in no apartment gets CO_E_NOTINITIALIZED [compobj.c test_CoGetApartmentType;
    marshal.c bad_thread_proc_sta]."""
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetApartmentType()
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        assert com.CoGetApartmentType() == (com.APTTYPE_MAINSTA, com.APTTYPEQUALIFIER_NONE)
        with ComThread() as sta, ComThread(com.COINIT_MULTITHREADED) as mta:
            assert sta.run(com.CoGetApartmentType) == (com.APTTYPE_STA, com.APTTYPEQUALIFIER_NONE)
            assert mta.run(com.CoGetApartmentType) == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_NONE)
    finally:
        com.CoUninitialize()


def test_main_sta_is_the_first_live_sta() -> None:
    """Once the main STA has gone, the next STA is the main one again [compobj.c test_CoGetObjectContext
    (MAINSTA after earlier tests uninitialised theirs)]."""
    with ComThread() as first:
        assert first.run(com.CoGetApartmentType)[0] == com.APTTYPE_MAINSTA
    com.CoInitialize(None)
    try:
        assert com.CoGetApartmentType()[0] == com.APTTYPE_MAINSTA
    finally:
        com.CoUninitialize()


def test_implicit_mta() -> None:
    """While an MTA exists, a thread that never initialised COM is in it implicitly
    (APTTYPE_MTA, APTTYPEQUALIFIER_IMPLICIT_MTA) and can use COM, but not message filters
    [compobj.c test_implicit_mta]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:

        def implicit() -> tuple[object, ...]:
            kind = com.CoGetApartmentType()
            cookie = com.CoRegisterClassObject(CLSID_Init, Factory(), com.CLSCTX_INPROC_SERVER, com.REGCLS_SINGLEUSE)
            com.CoRevokeClassObject(cookie)
            token = com.CoGetContextToken()
            with raises_hr(com.CO_E_NOT_SUPPORTED):
                com.CoRegisterMessageFilter(None)
            obj = Counted()
            assert com.CoLockObjectExternal(obj, True, True) == com.S_OK
            assert com.CoDisconnectObject(obj, 0) == com.S_OK
            return kind, token

        kind, token = in_thread(implicit)
        assert kind == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_IMPLICIT_MTA)
        assert token == com.CoGetContextToken()  # the same (default) context of the same MTA
    finally:
        com.CoUninitialize()
    with raises_hr(com.CO_E_NOTINITIALIZED):
        in_thread(com.CoGetApartmentType)


def test_mta_usage_cookies() -> None:
    """CoIncrementMTAUsage makes an implicit MTA for uninitialised threads and hands out distinct
    cookies; the MTA goes with the last CoDecrementMTAUsage [compobj.c test_mta_usage]."""
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetApartmentType()
    first = com.CoIncrementMTAUsage()
    second = com.CoIncrementMTAUsage()
    assert first and second and first != second
    assert com.CoGetApartmentType() == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_IMPLICIT_MTA)
    assert com.CoDecrementMTAUsage(first) == com.S_OK
    assert com.CoGetApartmentType() == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_IMPLICIT_MTA)
    com.CoDecrementMTAUsage(second)
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetApartmentType()
    assert not _init.facade_state()["runtime_open"]


def test_mta_usage_from_sta_keeps_sta() -> None:
    """CoIncrementMTAUsage on an STA thread leaves it in its STA (APTTYPE_MAINSTA) [compobj.c
    test_mta_usage]."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        cookie = com.CoIncrementMTAUsage()
        assert com.CoGetApartmentType() == (com.APTTYPE_MAINSTA, com.APTTYPEQUALIFIER_NONE)
        com.CoDecrementMTAUsage(cookie)
    finally:
        com.CoUninitialize()


def test_uninitialize_without_initialize_does_nothing() -> None:
    """An unbalanced CoUninitialize is ignored [W:apartment.c leave_apartment; compobj.c
    test_OleInitialize_InitCounting (extra uninitialisations leave the apartment as it was)]."""
    com.CoUninitialize()
    com.CoInitialize(None)
    com.CoUninitialize()
    com.CoUninitialize()
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetApartmentType()


def test_last_uninitialize_revokes_registrations() -> None:
    """The last CoUninitialize tears the apartment down: its class registrations go with it
    [compobj.c test_CoRegisterClassObject ("registered class becomes invalid when apartment is
    destroyed")]."""
    factory = Factory()
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    com.CoRegisterClassObject(CLSID_Init, factory, com.CLSCTX_INPROC_SERVER, com.REGCLS_SINGLEUSE)
    assert factory._com_refs == 1  # COM holds the registered class object
    com.CoUninitialize()
    assert factory._com_refs == 0
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        with raises_hr(com.REGDB_E_CLASSNOTREG):
            com.CoGetClassObject(CLSID_Init, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory)
    finally:
        com.CoUninitialize()


def test_mta_initialize_on_mta_worker_is_s_false() -> None:
    """A thread serving calls of the MTA is already in it: CoInitializeEx(COINIT_MULTITHREADED) there
    answers S_FALSE [marshal.c test_local_server (local_server_GetClassID)]."""

    class Probe(Counted):
        def Value(self) -> int:
            answer = com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
            com.CoUninitialize()
            return answer

    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        with ComThread(com.COINIT_MULTITHREADED) as mta:
            stream = mta.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Probe()))
            proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
            assert proxy.Value() == com.S_FALSE
            proxy.Release()
    finally:
        com.CoUninitialize()


def test_mta_lives_while_a_member_remains() -> None:
    """The MTA outlives the thread that created it while another thread is in it: objects it exported
    stay usable [marshal.c test_mta_creation_thread_change_apartment]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    started, stop = threading.Event(), threading.Event()
    box: dict[str, object] = {}

    def second() -> None:
        com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
        box["stream"] = com.CoMarshalInterThreadInterfaceInStream(ITest, Counted(7))
        started.set()
        wait(stop)
        com.CoUninitialize()

    thread = threading.Thread(target=second)
    thread.start()
    wait(started)
    com.CoUninitialize()  # the MTA's first thread leaves; the second keeps it alive
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        proxy = com.CoGetInterfaceAndReleaseStream(box["stream"], ITest)
        assert proxy.Value() == 7
        proxy.Release()
    finally:
        stop.set()
        thread.join()
        com.CoUninitialize()


def test_runtime_closes_with_the_last_apartment() -> None:
    """The last CoUninitialize of the process ends COM there (com-semantics.md §1.1: everything is
    released and unloaded at the process's last CoUninitialize): the facade's runtime closes."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    with ComThread(com.COINIT_MULTITHREADED):
        assert _init.facade_state()["threads"] == 2
    assert _init.facade_state()["runtime_open"]
    com.CoUninitialize()
    assert _init.facade_state() == {
        "runtime_open": False,
        "threads": 0,
        "mta_threads": 0,
        "cookies": 0,
        "hosts": [],
        "main_sta": None,
    }
    with pytest.raises(aptrt.NotInitializedError):
        aptrt.current_apartment()
