"""Class registration: CLSIDs, ProgIDs and threading models (the registry's HKCR\\CLSID, in-process).

``@aptrt.coclass(...)`` registers a class when its module is imported; a package can also declare its
classes in the entry point group ``aptrt.classes`` (the analog of ``DllRegisterServer``): each entry point
names a module (imported, so its decorators run) or a callable (called with the registry).
"""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from ._exceptions import ClassNotRegisteredError, InvalidArgumentError
from ._interface import to_uuid
from ._validate import check_optional_str

T = TypeVar("T", bound=type)

ENTRY_POINT_GROUP = "aptrt.classes"

logger = logging.getLogger("aptrt")


class ThreadingModel(enum.Enum):
    """Where a class's objects live (InprocServer32's ``ThreadingModel``)."""

    #: no ThreadingModel value: legacy, always in the main STA
    NONE = "none"
    #: in the creating STA; from the MTA, in a host STA the runtime starts
    APARTMENT = "Apartment"
    #: in the MTA
    FREE = "Free"
    #: in the creator's apartment, whichever it is
    BOTH = "Both"
    #: in the neutral apartment: runs on the caller's thread
    NEUTRAL = "Neutral"


@dataclass(frozen=True)
class ClassRegistration:
    """One registered class."""

    clsid: uuid.UUID
    cls: Callable[..., Any]
    threading_model: ThreadingModel
    progid: str | None = None
    version_independent_progid: str | None = None
    description: str = ""

    @property
    def module(self) -> str:
        """The module that implements the class (its "server")."""
        return getattr(self.cls, "__module__", "") or ""


class ClassRegistry:
    """The process-wide table of registered classes. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_clsid: dict[uuid.UUID, ClassRegistration] = {}
        self._progids: dict[str, uuid.UUID] = {}
        #: registered class (or factory) → its CLSID, for lookups by class
        self._by_class: dict[object, uuid.UUID] = {}
        #: version-independent ProgID → its CurVer (the versioned ProgID)
        self._curver: dict[str, str] = {}
        self._entry_points_loaded = False

    def register(
        self,
        cls: Callable[..., Any],
        *,
        clsid: uuid.UUID | str,
        progid: str | None = None,
        version_independent_progid: str | None = None,
        threading_model: ThreadingModel | str = ThreadingModel.APARTMENT,
        description: str = "",
    ) -> ClassRegistration:
        """Register *cls* under *clsid* (replacing an earlier registration of the same CLSID)."""
        if not callable(cls):
            raise InvalidArgumentError(f"{cls!r} is not a class or factory")
        check_optional_str(progid, "progid")
        check_optional_str(version_independent_progid, "version_independent_progid")
        check_optional_str(description, "description")
        model = threading_model if isinstance(threading_model, ThreadingModel) else _model(threading_model)
        registration = ClassRegistration(
            to_uuid(clsid, "CLSID"), cls, model, progid, version_independent_progid, description
        )
        with self._lock:
            self._by_clsid[registration.clsid] = registration
            self._by_class[cls] = registration.clsid
            if progid:
                self._progids[progid.lower()] = registration.clsid
            if version_independent_progid:
                self._progids[version_independent_progid.lower()] = registration.clsid
                if progid:
                    self._curver[version_independent_progid.lower()] = progid
        return registration

    def unregister(self, clsid: uuid.UUID | str) -> None:
        """Remove a registration (DllUnregisterServer)."""
        key = to_uuid(clsid, "CLSID")
        with self._lock:
            registration = self._by_clsid.pop(key, None)
            if registration is None:
                raise ClassNotRegisteredError(f"no class is registered under {key}")
            if self._by_class.get(registration.cls) == key:
                del self._by_class[registration.cls]
            for name in (registration.progid, registration.version_independent_progid):
                if name and self._progids.get(name.lower()) == key:
                    del self._progids[name.lower()]
                    self._curver.pop(name.lower(), None)

    def clsid_from_progid(self, progid: str) -> uuid.UUID:
        """CLSIDFromProgID: a ProgID (versioned, or version-independent through CurVer) to its CLSID."""
        if not isinstance(progid, str):
            raise InvalidArgumentError(f"a ProgID must be a str, not {type(progid).__name__}")
        self.load_entry_points()
        key = progid.lower()
        with self._lock:
            curver = self._curver.get(key)
            if curver is not None and curver.lower() in self._progids:
                return self._progids[curver.lower()]
            if key in self._progids:
                return self._progids[key]
        raise ClassNotRegisteredError(f"no class is registered under ProgID {progid!r}")

    def progid_from_clsid(self, clsid: uuid.UUID | str) -> str | None:
        return self.lookup(clsid).progid

    def resolve(self, what: uuid.UUID | str | type) -> uuid.UUID:
        """A CLSID from a CLSID, a GUID string, a ProgID or a registered class."""
        if isinstance(what, uuid.UUID):
            return what
        if isinstance(what, type) or callable(what):
            # the class's own registration only: a subclass of a registered class is not registered
            with self._lock:
                clsid = self._by_class.get(what)
            if clsid is None:
                raise ClassNotRegisteredError(f"{what!r} is not a registered class (use @aptrt.coclass)")
            return clsid
        if isinstance(what, str):
            text = what.strip()
            if text.startswith("{") or _looks_like_guid(text):
                return to_uuid(text, "CLSID")
            return self.clsid_from_progid(text)
        raise InvalidArgumentError(f"a CLSID must be a uuid.UUID, a GUID string or a ProgID, not {what!r}")

    def lookup(self, what: uuid.UUID | str | type) -> ClassRegistration:
        """The registration of a class named by CLSID, ProgID or class object."""
        clsid = self.resolve(what)
        with self._lock:
            registration = self._by_clsid.get(clsid)
        if registration is None and not self._entry_points_loaded:
            self.load_entry_points()
            with self._lock:
                registration = self._by_clsid.get(clsid)
        if registration is None:
            raise ClassNotRegisteredError(f"class {clsid} is not registered")
        return registration

    def registrations(self) -> list[ClassRegistration]:
        with self._lock:
            return list(self._by_clsid.values())

    def load_entry_points(self, *, force: bool = False) -> int:
        """Import every entry point of the group ``aptrt.classes`` once; returns how many were loaded."""
        with self._lock:
            if self._entry_points_loaded and not force:
                return 0
            self._entry_points_loaded = True
        count = 0
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = entry_point.load()
                if callable(loaded) and not isinstance(loaded, type):
                    loaded(self)
            except Exception:  # one broken package must not hide every other package's classes
                logger.exception("aptrt: could not load the classes of entry point %r", entry_point.name)
                continue
            count += 1
        return count


def _looks_like_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _model(name: str) -> ThreadingModel:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"threading_model must be a ThreadingModel or its name, not {name!r}")
    for model in ThreadingModel:
        if model.value.lower() == name.lower() or model.name.lower() == name.lower():
            return model
    raise InvalidArgumentError(f"unknown threading model {name!r}")


#: the process-wide registry
registry = ClassRegistry()


def coclass(
    *,
    clsid: uuid.UUID | str,
    progid: str | None = None,
    version_independent_progid: str | None = None,
    threading_model: ThreadingModel | str = ThreadingModel.APARTMENT,
    description: str = "",
) -> Callable[[T], T]:
    """Class decorator: register the class under *clsid* (and ProgIDs) with its threading model.

    The class gets ``__clsid__`` and ``__threading_model__`` attributes.
    """

    def decorate(cls: T) -> T:
        registration = registry.register(
            cls,
            clsid=clsid,
            progid=progid,
            version_independent_progid=version_independent_progid,
            threading_model=threading_model,
            description=description,
        )
        cls.__clsid__ = registration.clsid  # type: ignore[attr-defined]
        cls.__threading_model__ = registration.threading_model  # type: ignore[attr-defined]
        return cls

    return decorate
