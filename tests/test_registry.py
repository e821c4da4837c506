"""The class registry: ``@aptrt.coclass``, ``aptrt.registry.register``, entry-point self-registration,
ProgID → CurVer → CLSID resolution, and ``ClassNotRegisteredError`` (design §5, COM §1.2)."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import aptrt

from .objects_activation import IWhere, Placement, Where, observe

M = aptrt.ThreadingModel


class Versioned1(Where):
    pass


class Versioned2(Where):
    pass


@aptrt.coclass(
    clsid="{08AD39A3-3B72-4AAA-A90F-91542DDEC0AD}",
    progid="AptrtTests.Decorated.1",
    version_independent_progid="AptrtTests.Decorated",
    threading_model="both",
    description="a decorated class",
)
class Decorated(Where):
    pass


class TestCoclass:
    def test_decorator_registers_and_marks_the_class(self) -> None:
        clsid = uuid.UUID("08ad39a3-3b72-4aaa-a90f-91542ddec0ad")
        assert Decorated.__clsid__ == clsid  # type: ignore[attr-defined]
        assert Decorated.__threading_model__ is M.BOTH  # type: ignore[attr-defined]
        registration = aptrt.registry.lookup(clsid)
        assert isinstance(registration, aptrt.ClassRegistration)
        assert registration.cls is Decorated
        assert registration.threading_model is M.BOTH
        assert registration.progid == "AptrtTests.Decorated.1"
        assert registration.version_independent_progid == "AptrtTests.Decorated"
        assert registration.description == "a decorated class"
        assert registration.module == __name__
        assert registration in aptrt.registry.registrations()
        assert aptrt.registry.progid_from_clsid(clsid) == "AptrtTests.Decorated.1"

    @pytest.mark.parametrize(
        "name",
        [
            uuid.UUID("08ad39a3-3b72-4aaa-a90f-91542ddec0ad"),
            "08ad39a3-3b72-4aaa-a90f-91542ddec0ad",
            "{08ad39a3-3b72-4aaa-a90f-91542ddec0ad}",
            " {08AD39A3-3B72-4AAA-A90F-91542DDEC0AD} ",
            "AptrtTests.Decorated.1",
            "AptrtTests.Decorated",
            "APTRTTESTS.DECORATED",
            Decorated,
        ],
        ids=["uuid", "str", "braced", "upper-spaced", "progid", "vi-progid", "vi-upper", "class"],
    )
    def test_lookup_by_every_name(self, name: object) -> None:
        assert aptrt.registry.lookup(name).cls is Decorated  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("spelling", "model"),
        [
            ("none", M.NONE),
            ("Apartment", M.APARTMENT),
            ("free", M.FREE),
            ("BOTH", M.BOTH),
            ("Neutral", M.NEUTRAL),
            (M.FREE, M.FREE),
        ],
    )
    def test_threading_model_spellings(self, spelling: object, model: aptrt.ThreadingModel) -> None:
        class Spelled(Where):
            pass

        clsid = "90d424b7-4c0a-46dd-a116-a62c67e4503e"
        try:
            aptrt.coclass(clsid=clsid, threading_model=spelling)(Spelled)  # type: ignore[arg-type]
            assert aptrt.registry.lookup(clsid).threading_model is model
            assert Spelled.__threading_model__ is model  # type: ignore[attr-defined]
        finally:
            aptrt.registry.unregister(clsid)

    def test_default_threading_model_is_apartment(self) -> None:
        class Default(Where):
            pass

        clsid = "39530f3c-cfac-4638-bacd-ec1142896afb"
        try:
            assert aptrt.registry.register(Default, clsid=clsid).threading_model is M.APARTMENT
        finally:
            aptrt.registry.unregister(clsid)

    def test_bad_registrations(self) -> None:
        class Bad(Where):
            pass

        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.coclass(clsid="91f7f324-3a99-4348-823c-b93c0acf4830", threading_model="Rental")(Bad)
        with pytest.raises(aptrt.InvalidArgumentError) as excinfo:
            aptrt.coclass(clsid="not-a-guid")(Bad)
        assert not hasattr(Bad, "__clsid__")
        assert excinfo.value.hresult == aptrt.HRESULT.E_INVALIDARG
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.registry.register(42, clsid="91f7f324-3a99-4348-823c-b93c0acf4830")  # type: ignore[arg-type]
        with pytest.raises(aptrt.ClassNotRegisteredError):
            aptrt.registry.lookup("91f7f324-3a99-4348-823c-b93c0acf4830")  # nothing half-registered


@pytest.fixture
def programmatic() -> Iterator[type[Where]]:
    class Programmatic(Where):
        pass

    clsid = "191e1f08-514b-48c8-969e-7042c248d000"
    aptrt.registry.register(
        Programmatic,
        clsid=clsid,
        progid="AptrtTests.Programmatic.3",
        version_independent_progid="AptrtTests.Programmatic",
        threading_model="Free",
    )
    yield Programmatic
    aptrt.registry.unregister(clsid)


class TestProgrammaticRegistration:
    def test_lookup(self, programmatic: type[Where]) -> None:
        clsid = uuid.UUID("191e1f08-514b-48c8-969e-7042c248d000")
        for name in (clsid, str(clsid), "AptrtTests.Programmatic.3", "AptrtTests.Programmatic"):
            registration = aptrt.registry.lookup(name)
            assert registration.cls is programmatic
            assert registration.threading_model is M.FREE
        assert aptrt.registry.clsid_from_progid("AptrtTests.Programmatic") == clsid

    def test_lookup_by_the_class_itself(self, programmatic: type[Where]) -> None:
        # "a registered class" names its registration, however it was registered
        assert aptrt.registry.lookup(programmatic).clsid == uuid.UUID("191e1f08-514b-48c8-969e-7042c248d000")

    async def test_create_by_progid_follows_its_model(self, rt: aptrt.Runtime, programmatic: type[Where]) -> None:
        seen = await observe(await rt.create_instance("AptrtTests.Programmatic", IWhere))
        assert seen.kind == "Programmatic"
        assert seen.lives_in == "MTA"

    async def test_create_by_class_follows_its_model(self, rt: aptrt.Runtime, programmatic: type[Where]) -> None:
        seen = await observe(await rt.create_instance(programmatic, IWhere))
        assert seen.kind == "Programmatic"
        assert seen.lives_in == "MTA"  # Free, as registered; not the Apartment default of unknown classes

    async def test_factory_function(self, rt: aptrt.Runtime) -> None:
        made: list[Where] = []

        def make() -> Where:
            made.append(Decorated())
            return made[-1]

        clsid = "77d2d69f-6a62-49d4-b0d3-af9a772cc6b0"
        aptrt.registry.register(make, clsid=clsid, progid="AptrtTests.FactoryFunction.1", threading_model="Both")
        try:
            obj = await rt.create_instance("AptrtTests.FactoryFunction.1")
            assert made == [obj]
        finally:
            aptrt.registry.unregister(clsid)

    def test_unregister_removes_every_name(self, programmatic: type[Where]) -> None:
        clsid = "191e1f08-514b-48c8-969e-7042c248d000"
        aptrt.registry.unregister(clsid)
        try:
            for name in (clsid, "AptrtTests.Programmatic.3", "AptrtTests.Programmatic"):
                with pytest.raises(aptrt.ClassNotRegisteredError):
                    aptrt.registry.lookup(name)
            with pytest.raises(aptrt.ClassNotRegisteredError):
                aptrt.registry.unregister(clsid)
        finally:
            aptrt.registry.register(programmatic, clsid=clsid)  # for the fixture's own unregister

    def test_reregistering_a_clsid_replaces_it(self, programmatic: type[Where]) -> None:
        class Replacement(Where):
            pass

        clsid = "191e1f08-514b-48c8-969e-7042c248d000"
        aptrt.registry.register(Replacement, clsid=clsid, threading_model="Neutral")
        registration = aptrt.registry.lookup(clsid)
        assert registration.cls is Replacement
        assert registration.threading_model is M.NEUTRAL


@pytest.fixture
def two_versions() -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
    v1 = uuid.UUID("40da45cd-9a24-49ab-ae30-a0f032265b3e")
    v2 = uuid.UUID("236fd4ef-a199-4134-9ef8-06503691c67f")
    aptrt.registry.register(
        Versioned1, clsid=v1, progid="AptrtTests.Ball.1", version_independent_progid="AptrtTests.Ball"
    )
    aptrt.registry.register(
        Versioned2, clsid=v2, progid="AptrtTests.Ball.2", version_independent_progid="AptrtTests.Ball"
    )
    yield v1, v2
    for clsid in (v1, v2):
        aptrt.registry.unregister(clsid)


class TestCurVer:
    def test_version_independent_progid_follows_curver(self, two_versions: tuple[uuid.UUID, uuid.UUID]) -> None:
        v1, v2 = two_versions
        assert aptrt.registry.clsid_from_progid("AptrtTests.Ball.1") == v1
        assert aptrt.registry.clsid_from_progid("AptrtTests.Ball.2") == v2
        assert aptrt.registry.clsid_from_progid("AptrtTests.Ball") == v2  # CurVer: the latest version
        assert aptrt.registry.clsid_from_progid("aptrttests.BALL") == v2
        assert aptrt.registry.resolve("AptrtTests.Ball") == v2

    async def test_create_by_version_independent_progid(
        self, rt: aptrt.Runtime, two_versions: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        current = await rt.create_instance("AptrtTests.Ball")
        old = await rt.create_instance("AptrtTests.Ball.1")
        assert type(current) is Versioned2  # Apartment model, created here: the object itself
        assert type(old) is Versioned1


class TestClassNotRegistered:
    @pytest.mark.parametrize(
        "name",
        [uuid.UUID("c0331fc1-cd13-4061-ae28-b798e6df811e"), "{c2d53a24-6f28-42d0-8d6e-150fef2fc58a}", "Nope.Nothing.1"],
        ids=["clsid", "clsid-str", "progid"],
    )
    def test_lookup(self, name: object) -> None:
        with pytest.raises(aptrt.ClassNotRegisteredError) as excinfo:
            aptrt.registry.lookup(name)  # type: ignore[arg-type]
        assert excinfo.value.hresult == aptrt.HRESULT.REGDB_E_CLASSNOTREG
        assert excinfo.value.hresult == -2147221164  # 0x80040154, signed
        assert isinstance(excinfo.value, LookupError)
        assert isinstance(excinfo.value, aptrt.COMError)

    def test_unknown_progid(self) -> None:
        with pytest.raises(aptrt.ClassNotRegisteredError) as excinfo:
            aptrt.registry.clsid_from_progid("Nope.Nothing")
        assert excinfo.value.hresult_name == "REGDB_E_CLASSNOTREG"

    def test_undecorated_class(self) -> None:
        class Loose(Where):
            pass

        with pytest.raises(aptrt.ClassNotRegisteredError):
            aptrt.registry.lookup(Loose)

    async def test_create_instance(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.ClassNotRegisteredError) as excinfo:
            await rt.create_instance("Nope.Nothing.2", IWhere)
        assert excinfo.value.hresult == aptrt.HRESULT.REGDB_E_CLASSNOTREG


# -- self-registration through the entry point group "aptrt.classes" ----------------------------------

PACKAGE = "aptrt_selfreg_pkg_1fc86c17"
DIST = "aptrt_selfreg_pkg_1fc86c17-1.0.dist-info"
DECORATED_CLSID = uuid.UUID("f96aeeea-4b55-4954-9ec9-5b5ac2013c9b")
CALLABLE_CLSID = uuid.UUID("4c6af21b-5dde-4eb5-89bb-b2af9cd0645e")

PACKAGE_INIT = f'''
import aptrt
from tests.objects_activation import Where

imported = []


@aptrt.coclass(
    clsid="{DECORATED_CLSID}",
    progid="AptrtSelfReg.Ball.1",
    version_independent_progid="AptrtSelfReg.Ball",
    threading_model="Free",
)
class SelfRegBall(Where):
    pass


imported.append("classes")
'''

PACKAGE_REGISTER = f'''
from tests.objects_activation import Where


class CallableRegistered(Where):
    pass


calls = []


def register(registry):
    """The package's DllRegisterServer: called with the registry to fill."""
    calls.append(registry)
    registry.register(
        CallableRegistered, clsid="{CALLABLE_CLSID}", progid="AptrtSelfReg.Callable.1", threading_model="Neutral"
    )
'''


@pytest.fixture
def installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real distribution on sys.path (a dist-info with entry_points.txt) that declares two entry points
    in the group ``aptrt.classes``: a module (imported: its decorators register) and a callable."""
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE_INIT))
    (package / "registration.py").write_text(textwrap.dedent(PACKAGE_REGISTER))
    dist = tmp_path / DIST
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[aptrt.classes]\nballs = {PACKAGE}\nregister = {PACKAGE}.registration:register\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield PACKAGE
    for name in list(sys.modules):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            del sys.modules[name]
    for clsid in (DECORATED_CLSID, CALLABLE_CLSID):
        try:
            aptrt.registry.unregister(clsid)
        except aptrt.ClassNotRegisteredError:
            pass


class TestEntryPoints:
    def test_the_distribution_is_visible_to_importlib_metadata(self, installed_package: str) -> None:
        names = {ep.name for ep in importlib.metadata.entry_points(group="aptrt.classes")}
        assert {"balls", "register"} <= names

    def test_load_on_a_fresh_registry(self, installed_package: str) -> None:
        fresh = aptrt.ClassRegistry()
        assert fresh.load_entry_points() == 2
        assert fresh.load_entry_points() == 0  # once
        registration = fresh.lookup("AptrtSelfReg.Callable.1")
        assert registration.clsid == CALLABLE_CLSID
        assert registration.threading_model is M.NEUTRAL
        module = sys.modules[f"{installed_package}.registration"]
        assert module.calls == [fresh]  # the callable got the registry it fills
        assert sys.modules[installed_package].imported == ["classes"]  # the module entry point was imported
        assert fresh.load_entry_points(force=True) == 2
        assert module.calls == [fresh, fresh]

    def test_lookup_loads_entry_points_lazily(self, installed_package: str) -> None:
        fresh = aptrt.ClassRegistry()
        assert installed_package not in sys.modules
        assert fresh.lookup(CALLABLE_CLSID).cls.__name__ == "CallableRegistered"
        assert installed_package in sys.modules  # the module entry point ran too

    async def test_activation_by_progid_imports_the_package(
        self, rt: aptrt.Runtime, installed_package: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(aptrt.registry, "_entry_points_loaded", False)  # as in a fresh process
        assert installed_package not in sys.modules

        seen: Placement = await observe(await rt.create_instance("AptrtSelfReg.Ball", IWhere))
        assert installed_package in sys.modules
        assert seen.kind == "SelfRegBall"
        assert seen.lives_in == "MTA"  # its registered threading model (Free)

        neutral: Placement = await observe(await rt.create_instance(CALLABLE_CLSID, IWhere))
        assert neutral.kind == "CallableRegistered"
        assert neutral.lives_in == "NA"
        assert neutral.runs == neutral.caller

    def test_monkeypatched_entry_points(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # the same through a fake importlib.metadata.entry_points, as _registry.py calls it
        calls: list[object] = []

        def register(registry: aptrt.ClassRegistry) -> None:
            calls.append(registry)
            registry.register(Versioned1, clsid="1f8f799e-5823-4f95-bd85-298de163d334", progid="AptrtFake.One.1")

        entry_point = importlib.metadata.EntryPoint(
            name="fake", value=f"{__name__}:_fake_register", group="aptrt.classes"
        )
        groups: list[str] = []

        def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
            groups.append(group)
            return [entry_point]

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        monkeypatch.setattr(sys.modules[__name__], "_fake_register", register, raising=False)
        fresh = aptrt.ClassRegistry()
        assert fresh.clsid_from_progid("AptrtFake.One.1") == uuid.UUID("1f8f799e-5823-4f95-bd85-298de163d334")
        assert groups == ["aptrt.classes"]
        assert calls == [fresh]
