"""The seed's CoDisconnectContext example, runnable: ``python -m aptrt.samples.disconnect_context``.

A service host (here the MTA, so that its objects' calls run on the MTA's threads while the host waits)
creates a context with the context switcher, registers its class factory *inside* that context, and
lets a client apartment create objects, which therefore live in the new context. To unload, it enters
the context again, revokes the class factory and calls ``CoDisconnectContext``, retrying until
``S_OK``: the first attempt times out (``RPC_E_TIMEOUT``) because a client call is still running; once
it ends the context finishes disconnecting, and the clients' proxies fail with ``RPC_E_DISCONNECTED``.

The shape follows the reference page of CoDisconnectContext::

    icc = CoCreateInstance(CLSID_ContextSwitcher, None, CLSCTX_INPROC_SERVER, IID_IContextCallback)
    icc.ContextCallback(enter_callback, data, IID_IContextCallback, 5, None)       # CoRegisterClassObject
    ...
    icc.ContextCallback(disconnect_callback, data, IID_IContextCallback, 5, None)  # revoke, disconnect
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aptrt
from aptrt import com

CLSID_Service = "{5E0C9D1A-3C1B-4D0E-9A57-2B7D6C0E4F11}"


class IService(com.IUnknown, iid="5E0C9D1A-3C1B-4D0E-9A57-2B7D6C0E4F12"):
    """What the service's objects offer their clients."""

    def Ping(self) -> str:
        raise NotImplementedError

    def Work(self) -> str:
        raise NotImplementedError


@dataclass
class _Shared:
    """Events and results shared by the host, the service's objects and the client."""

    work_started: threading.Event = field(default_factory=threading.Event)
    finish_work: threading.Event = field(default_factory=threading.Event)
    cookie: int = 0
    revoked: bool = False
    log: list[str] = field(default_factory=list)


class Service(IService):
    """One object of the service; it lives in the context its class factory was registered in."""

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared
        self.token = com.CoGetContextToken()

    def Ping(self) -> str:
        return f"pong from context {self.token}"

    def Work(self) -> str:
        self.shared.work_started.set()
        com.CoWaitForMultipleHandles(0, com.INFINITE, [self.shared.finish_work])
        return "work done"


class ServiceFactory(com.IClassFactory, com.IUnknown):
    """The service's class factory (registered inside the new context)."""

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        if outer is not None:
            raise com.COMError("no aggregation", hresult=com.CLASS_E_NOAGGREGATION)
        return Service(self.shared).QueryInterface(iid)

    def LockServer(self, lock: bool) -> None:
        return None


def enter_callback(shared: _Shared) -> int:
    """Inside the new context: register the class factory there (its objects will live there)."""
    shared.cookie = com.CoRegisterClassObject(
        CLSID_Service, ServiceFactory(shared), com.CLSCTX_LOCAL_SERVER, com.REGCLS_MULTIPLEUSE
    )
    shared.log.append(f"registered the class factory inside context {com.CoGetContextToken()}")
    return com.S_OK


def make_disconnect_callback(timeout_ms: int) -> Callable[[_Shared], int]:
    def disconnect_callback(shared: _Shared) -> int:
        """Inside the context again: revoke the class factory (once) and disconnect the context."""
        if not shared.revoked:
            com.CoRevokeClassObject(shared.cookie)
            shared.revoked = True
        return com.CoDisconnectContext(timeout_ms)

    return disconnect_callback


def _client(shared: _Shared, results: dict[str, Any]) -> None:
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        service = com.CoCreateInstance(CLSID_Service, None, com.CLSCTX_LOCAL_SERVER, IService)
        results["ping"] = service.Ping()
        results["work"] = service.Work()  # still running when the host first tries to disconnect
        try:
            service.Ping()
        except aptrt.DisconnectedError as exc:
            results["after"] = exc.hresult_name
        service.Release()
    finally:
        com.CoUninitialize()


def main(say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the example; returns what happened (the attempts' results, what the client saw)."""
    write = say or (lambda line: sys.stdout.write(line + "\n"))
    shared = _Shared()
    results: dict[str, Any] = {"attempts": []}
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        icc = com.CoCreateInstance(com.CLSID_ContextSwitcher, None, com.CLSCTX_INPROC_SERVER, com.IID_IContextCallback)
        icc.ContextCallback(enter_callback, shared, com.IID_IContextCallback, 5, None)
        for line in shared.log:
            write(line)

        client = threading.Thread(target=_client, args=(shared, results), name="client-sta")
        client.start()
        com.CoWaitForMultipleHandles(0, com.INFINITE, [shared.work_started])
        write(f"client: {results['ping']}; its Work() call is running")

        timeout_ms = 50
        while True:
            try:
                icc.ContextCallback(make_disconnect_callback(timeout_ms), shared, com.IID_IContextCallback, 5, None)
            except aptrt.RPCTimeoutError as exc:
                results["attempts"].append(exc.hresult_name)
                write(f"CoDisconnectContext({timeout_ms}) -> {exc.hresult_name}: a call is still running; retrying")
                shared.finish_work.set()  # let the outstanding call end
                timeout_ms = com.INFINITE
                continue
            results["attempts"].append("S_OK")
            write("CoDisconnectContext -> S_OK: every object of the context is disconnected")
            break
        client.join()
        write(f"client: Work() returned {results['work']!r}; a later call failed with {results.get('after')}")
        icc.Release()
    finally:
        com.CoUninitialize()
    return results


if __name__ == "__main__":
    main()
