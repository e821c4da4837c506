"""aptrt.com conformance: CoCreateInstance, CoGetClassObject, CoRegisterClassObject, threading models."""

from __future__ import annotations

import threading

import aptrt
from aptrt import com

from .com_support import ComThread, Counted, Factory, IOther, ITest, com_clean, raises_hr, sta

__all__ = ["com_clean", "sta"]

CLSID_Missing = "{3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e00}"
CLSID_Registered = "{3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e01}"


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e10", progid="ComTest.Apartment.1", threading_model="Apartment")
class ApartmentModel(Counted):
    pass


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e11", threading_model="Free")
class FreeModel(Counted):
    pass


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e12", threading_model="Both")
class BothModel(Counted):
    pass


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e13", threading_model="none")
class LegacyModel(Counted):
    pass


@aptrt.coclass(clsid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2e14", threading_model="Neutral")
class NeutralModel(Counted):
    pass


def create(cls: type, iid: object = ITest) -> object:
    return com.CoCreateInstance(cls.__clsid__, None, com.CLSCTX_INPROC_SERVER, iid)  # type: ignore[attr-defined]


def test_not_registered() -> None:
    """An unknown CLSID is REGDB_E_CLASSNOTREG for every CLSCTX; before initialisation
    CO_E_NOTINITIALIZED [compobj.c test_CoCreateInstance, test_CoGetClassObject]."""
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoCreateInstance(CLSID_Missing, None, com.CLSCTX_INPROC_SERVER, ITest)
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetClassObject(CLSID_Missing, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory)
    com.CoInitialize(None)
    try:
        for clsctx in (
            com.CLSCTX_INPROC_SERVER,
            com.CLSCTX_INPROC_HANDLER,
            com.CLSCTX_LOCAL_SERVER,
            com.CLSCTX_REMOTE_SERVER,
        ):
            with raises_hr(com.REGDB_E_CLASSNOTREG):
                com.CoCreateInstance(CLSID_Missing, None, clsctx, com.IID_IUnknown)
    finally:
        com.CoUninitialize()


def test_apartment_model_from_sta_is_direct(sta: None) -> None:
    """An Apartment-model object created in an STA lives there: the caller gets the object itself, with
    one reference [com-semantics.md §1.2; D: InprocServer32]."""
    obj = create(ApartmentModel)
    assert isinstance(obj, ApartmentModel)
    assert obj.locks == 1
    assert obj.Where() == (threading.current_thread().name, (com.APTTYPE_MAINSTA, 0))


def test_apartment_model_from_mta_goes_to_a_host_sta() -> None:
    """Created from the MTA, an Apartment-model object lives in a host STA that COM creates; the
    caller gets a proxy [com-semantics.md §1.2; W:apartment.c apartment_get_inproc_class_object]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        proxy = create(ApartmentModel)
        assert isinstance(proxy, com.ComProxy)
        thread, kind = proxy.Where()
        assert thread.startswith("aptrt-sta-host") and kind[0] == com.APTTYPE_STA
        proxy.Release()
    finally:
        com.CoUninitialize()


def test_free_and_both_models(sta: None) -> None:
    """From an STA, a Free object lives in the MTA (proxy), a Both object in the caller's STA (direct)
    [com-semantics.md §1.2]."""
    free = create(FreeModel)
    assert isinstance(free, com.ComProxy)
    assert free.Where()[1] == (com.APTTYPE_MTA, com.APTTYPEQUALIFIER_NONE)
    both = create(BothModel)
    assert isinstance(both, BothModel)
    free.Release()


def test_both_model_in_the_mta_is_direct() -> None:
    """From the MTA, a Both object lives in the MTA too: the caller gets the object itself
    [com-semantics.md §1.2]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        assert isinstance(create(BothModel), BothModel)
        assert isinstance(create(FreeModel), FreeModel)
    finally:
        com.CoUninitialize()


def test_legacy_model_lives_in_the_main_sta(sta: None) -> None:
    """A class without ThreadingModel lives in the main STA: another STA gets a proxy, and its calls run
    on the main STA's thread, which serves them while it waits [com-semantics.md §1.2]."""
    with ComThread() as other:

        def use() -> str:
            proxy = create(LegacyModel)
            assert isinstance(proxy, com.ComProxy)
            where = proxy.Where()
            proxy.Release()
            return where

        assert other.run(use) == (threading.current_thread().name, (com.APTTYPE_MAINSTA, 0))


def test_legacy_model_without_main_sta() -> None:
    """With no STA at all, COM makes a host STA that plays the main STA for legacy classes
    [com-semantics.md §1.2; W:apartment.c]."""
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        proxy = create(LegacyModel)
        assert proxy.Where()[1] == (com.APTTYPE_MAINSTA, 0)
        proxy.Release()
    finally:
        com.CoUninitialize()


def test_neutral_model_runs_on_the_callers_thread(sta: None) -> None:
    """A Neutral object is reached through a light proxy and runs on the calling thread, with no thread
    switch [com-semantics.md §1.2]."""
    proxy = create(NeutralModel)
    assert isinstance(proxy, com.ComProxy)
    assert proxy.Where()[0] == threading.current_thread().name
    proxy.Release()


def test_cross_apartment_creation_counts(sta: None) -> None:
    """An object made in another apartment is held by its stub only (one reference) while the caller's
    proxy lives, and released with it [com-semantics.md §1.4; marshal.c test_interthread_marshal_and_unmarshal]."""
    factory = Factory()
    with ComThread(com.COINIT_MULTITHREADED) as mta:
        cookie = mta.run(
            com.CoRegisterClassObject, CLSID_Registered, factory, com.CLSCTX_LOCAL_SERVER, com.REGCLS_MULTIPLEUSE
        )
        proxy = com.CoCreateInstance(CLSID_Registered, None, com.CLSCTX_LOCAL_SERVER, ITest)
        (obj,) = factory.created
        assert obj.locks == 1
        assert proxy.Value() == 42
        proxy.Release()
        assert obj.locks == 0
        mta.run(com.CoRevokeClassObject, cookie)


def test_create_instance_gets_the_iid(sta: None) -> None:
    """CoCreateInstance hands its riid to IClassFactory::CreateInstance and returns the factory's
    E_NOINTERFACE [compobj.c test_CoCreateInstanceEx]."""
    factory = Factory()
    cookie = com.CoRegisterClassObject(CLSID_Registered, factory, com.CLSCTX_INPROC_SERVER, com.REGCLS_MULTIPLEUSE)
    assert isinstance(com.CoCreateInstance(CLSID_Registered, None, com.CLSCTX_INPROC_SERVER, ITest), Counted)
    with raises_hr(com.E_NOINTERFACE):
        com.CoCreateInstance(CLSID_Registered, None, com.CLSCTX_INPROC_SERVER, IOther)
    assert factory.iids == [ITest, IOther]
    com.CoRevokeClassObject(cookie)


def test_no_aggregation(sta: None) -> None:
    """A class that cannot be aggregated answers an outer object with CLASS_E_NOAGGREGATION
    [D: IClassFactory::CreateInstance; compobj.c Test_IClassFactory_CreateInstance]."""
    with raises_hr(com.CLASS_E_NOAGGREGATION):
        com.CoCreateInstance(ApartmentModel.__clsid__, Counted(), com.CLSCTX_INPROC_SERVER, ITest)  # type: ignore[attr-defined]


def test_inproc_registration_is_per_apartment(sta: None) -> None:
    """A CLSCTX_INPROC_SERVER registration is seen only by its own apartment: another STA gets
    REGDB_E_CLASSNOTREG and may register the same CLSID itself [compobj.c
    test_registered_object_thread_affinity]."""
    cookie = com.CoRegisterClassObject(CLSID_Registered, Factory(), com.CLSCTX_INPROC_SERVER, com.REGCLS_SINGLEUSE)
    with ComThread() as other:
        with raises_hr(com.REGDB_E_CLASSNOTREG):
            other.run(com.CoGetClassObject, CLSID_Registered, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory)
        theirs = other.run(
            com.CoRegisterClassObject, CLSID_Registered, Factory(), com.CLSCTX_INPROC_SERVER, com.REGCLS_SINGLEUSE
        )
        assert theirs != cookie
    cf = com.CoGetClassObject(CLSID_Registered, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory)
    assert isinstance(cf, Factory)
    com.CoRevokeClassObject(cookie)


def test_local_server_registration_is_seen_everywhere(sta: None) -> None:
    """A CLSCTX_LOCAL_SERVER registration is seen by every apartment (as a proxy elsewhere), and only
    its own apartment may revoke it: RPC_E_WRONG_THREAD elsewhere [compobj.c
    test_registered_object_thread_affinity]."""
    cookie = com.CoRegisterClassObject(CLSID_Registered, Factory(), com.CLSCTX_LOCAL_SERVER, com.REGCLS_MULTIPLEUSE)
    with ComThread() as other:

        def use() -> int:
            cf = com.CoGetClassObject(CLSID_Registered, com.CLSCTX_LOCAL_SERVER, None, com.IID_IClassFactory)
            assert isinstance(cf, com.ComProxy)
            obj = cf.CreateInstance(None, ITest)
            value = obj.Value()
            cf.Release()
            with raises_hr(com.RPC_E_WRONG_THREAD):
                com.CoRevokeClassObject(cookie)
            return value

        assert other.run(use) == 42
    assert com.CoRevokeClassObject(cookie) == com.S_OK
    with raises_hr(com.CO_E_OBJNOTREG):
        com.CoRevokeClassObject(cookie)


def test_suspended_until_resumed(sta: None) -> None:
    """REGCLS_SUSPENDED hides a registration until CoResumeClassObjects; REGCLS_MULTIPLEUSE with
    CLSCTX_LOCAL_SERVER also registers in-process [marshal.c test_local_server; D: REGCLS]."""
    cookie = com.CoRegisterClassObject(
        CLSID_Registered, Factory(), com.CLSCTX_LOCAL_SERVER, com.REGCLS_MULTIPLEUSE | com.REGCLS_SUSPENDED
    )
    with raises_hr(com.REGDB_E_CLASSNOTREG):
        com.CoGetClassObject(CLSID_Registered, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory)
    assert com.CoResumeClassObjects() == com.S_OK
    assert isinstance(
        com.CoGetClassObject(CLSID_Registered, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory), Factory
    )
    com.CoRevokeClassObject(cookie)


def test_single_use(sta: None) -> None:
    """A REGCLS_SINGLEUSE class object serves one connection; the next CoCreateInstance fails with
    REGDB_E_CLASSNOTREG [marshal.c test_local_server]."""
    cookie = com.CoRegisterClassObject(CLSID_Registered, Factory(), com.CLSCTX_LOCAL_SERVER, com.REGCLS_SINGLEUSE)
    com.CoCreateInstance(CLSID_Registered, None, com.CLSCTX_LOCAL_SERVER, ITest)
    with raises_hr(com.REGDB_E_CLASSNOTREG):
        com.CoCreateInstance(CLSID_Registered, None, com.CLSCTX_LOCAL_SERVER, ITest)
    com.CoRevokeClassObject(cookie)


def test_progids(sta: None) -> None:
    """ProgIDs name classes; an unknown one is CO_E_CLASSSTRING, an unknown CLSID has no ProgID
    (REGDB_E_CLASSNOTREG) [compobj.c test_CLSIDFromProgID, test_ProgIDFromCLSID]."""
    assert com.CLSIDFromProgID("ComTest.Apartment.1") == ApartmentModel.__clsid__  # type: ignore[attr-defined]
    assert com.ProgIDFromCLSID(ApartmentModel.__clsid__) == "ComTest.Apartment.1"  # type: ignore[attr-defined]
    assert isinstance(
        com.CoCreateInstance("ComTest.Apartment.1", None, com.CLSCTX_INPROC_SERVER, ITest), ApartmentModel
    )
    with raises_hr(com.CO_E_CLASSSTRING):
        com.CLSIDFromProgID("ComTest.NonExistent")
    with raises_hr(com.REGDB_E_CLASSNOTREG):
        com.ProgIDFromCLSID(CLSID_Missing)


def test_builtin_class_objects(sta: None) -> None:
    """The free-threaded marshaler and the GIT have class objects too [compobj.c test_CoGetClassObject;
    marshal.c test_globalinterfacetable]."""
    cf = com.CoGetClassObject(com.CLSID_InProcFreeMarshaler, com.CLSCTX_INPROC_SERVER, None, com.IID_IUnknown)
    assert cf is not None
    git_cf = com.CoGetClassObject(
        com.CLSID_StdGlobalInterfaceTable, com.CLSCTX_INPROC_SERVER, None, com.IID_IClassFactory
    )
    with raises_hr(com.E_NOINTERFACE):
        git_cf.QueryInterface(com.IID_IGlobalInterfaceTable)
