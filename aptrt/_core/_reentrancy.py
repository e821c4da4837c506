"""Reentrancy policies and deadlock detection for single-threaded apartments.

An STA serves one call at a time on its thread, but an *async* method awaits, and while it waits other
calls could run on the same thread. Whether they may is the apartment's reentrancy policy (overridable
per class with a ``__reentrancy__`` class attribute):

* ``ALLOW``: COM's classic behaviour: any call runs while a method awaits.
* ``CALL_CHAIN``: only calls of the same causality chain (nested callbacks: A → B → A) interleave;
  other calls wait until the apartment is free.
* ``NONE``: strict turns: a call waits until the running one has finished.

A call held at a gate waits for the calls that hold it. If those are, directly or through other gates,
waiting for the held call's own chain, the wait would never end: that call fails at once with
:class:`WouldDeadlockError` naming the cycle, instead of hanging.

Threads: a gate belongs to one STA and is touched only on its thread; the wait-for graph (which chain
waits at which gate) spans apartments and is guarded by ``WaitForGraph._lock``.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._exceptions import WouldDeadlockError

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._call import Call


class Reentrancy(enum.Enum):
    """Which calls may run while a method of an STA awaits."""

    ALLOW = "allow"
    CALL_CHAIN = "call_chain"
    NONE = "none"


class Gate:
    """Admission of calls under a non-ALLOW policy, for one apartment or one object."""

    __slots__ = ("apartment", "holders", "label", "pending", "policy")

    def __init__(self, apartment: Apartment, policy: Reentrancy, label: str) -> None:
        self.apartment = apartment
        self.policy = policy
        self.label = label
        #: causality id → how many admitted calls of that chain run now
        self.holders: dict[int, int] = {}
        #: calls waiting their turn, with the callable each will run
        self.pending: deque[tuple[Call, Any]] = deque()

    def __repr__(self) -> str:
        return f"<Gate {self.label} {self.policy.value} holders={list(self.holders)} pending={len(self.pending)}>"

    def admits(self, call: Call) -> bool:
        if not self.holders:
            return True
        return self.policy is Reentrancy.CALL_CHAIN and call.causality in self.holders

    def take(self, call: Call) -> None:
        self.holders[call.causality] = self.holders.get(call.causality, 0) + 1

    def give_back(self, call: Call) -> None:
        count = self.holders.get(call.causality, 0) - 1
        if count > 0:
            self.holders[call.causality] = count
        else:
            self.holders.pop(call.causality, None)


class WaitForGraph:
    """Which chain waits at which gate, across the apartments of one runtime."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: causality id → the gates where calls of that chain wait
        self._waiting: dict[int, list[Gate]] = {}
        #: causality id → the gates its calls hold, in the order the chain entered them (to name cycles)
        self._paths: dict[int, list[Gate]] = {}

    def entered(self, chain: int, gate: Gate) -> None:
        with self._lock:
            self._paths.setdefault(chain, []).append(gate)

    def left(self, chain: int, gate: Gate) -> None:
        with self._lock:
            path = self._paths.get(chain)
            if path is not None:
                for index in range(len(path) - 1, -1, -1):
                    if path[index] is gate:
                        del path[index]
                        break
                if not path:
                    del self._paths[chain]

    def check_and_wait(self, call: Call, gate: Gate) -> None:
        """Record that *call* waits at *gate*, or raise if that wait closes a cycle."""
        with self._lock:
            cycle = self._cycle(call.causality, gate)
            if cycle is not None:
                if len(cycle) == 1:  # held by the call's own chain: name the gates the chain went through
                    path = self._paths.get(call.causality, [])
                    start = next((i for i, g in enumerate(path) if g is gate), 0)
                    cycle = path[start:] or cycle
                names = [g.label for g in cycle] + [gate.label]
                raise WouldDeadlockError(
                    f"{call.name!r} would wait at {gate.label} for a call that waits for it: " + " → ".join(names),
                    cycle=names,
                )
            self._waiting.setdefault(call.causality, []).append(gate)

    def done_waiting(self, call: Call, gate: Gate) -> None:
        with self._lock:
            gates = self._waiting.get(call.causality)
            if gates is not None:
                try:
                    gates.remove(gate)
                except ValueError:
                    pass
                if not gates:
                    del self._waiting[call.causality]

    def _cycle(self, chain: int, gate: Gate) -> list[Gate] | None:
        # The gates from *gate* round to a gate held by *chain* itself, or None.
        # Depth-first through "gate is held by chain h, and h waits at gate g2": reaching `chain` again
        # means the wait never ends. Caller holds the lock. Gates' holders are read from other threads:
        # a dict snapshot is atomic under the GIL (and locked on free-threaded builds).
        seen: set[int] = set()
        path: list[Gate] = [gate]

        def visit(current: Gate) -> bool:
            for holder in list(current.holders):
                if holder == chain:
                    return True
                if holder in seen:
                    continue
                seen.add(holder)
                for next_gate in self._waiting.get(holder, ()):
                    path.append(next_gate)
                    if visit(next_gate):
                        return True
                    path.pop()
            return False

        return path if visit(gate) else None

    def edges(self) -> list[tuple[int, str, list[int]]]:
        """(waiting chain, gate, chains holding that gate) for :func:`aptrt.dump`."""
        with self._lock:
            return [(chain, gate.label, list(gate.holders)) for chain, gates in self._waiting.items() for gate in gates]


def class_policy(cls: type) -> Reentrancy | None:
    policy: Any = getattr(cls, "__reentrancy__", None)
    if policy is None:
        return None
    return policy if isinstance(policy, Reentrancy) else Reentrancy(policy)


def gate_for(
    call: Call,
    apartment_gate: Gate | None,
    object_gates: dict[int, Gate],
    apartment: Apartment,
    make_label: Callable[[Any], str],
) -> Gate | None:
    """The gate a call must pass: its object's (class override), else its apartment's (None: ALLOW)."""
    stub = call.stub
    if stub is not None:
        policy = stub.info.reentrancy
        if policy is not None:
            if policy is Reentrancy.ALLOW:
                return None
            gate = object_gates.get(stub.key)
            if gate is None:
                gate = object_gates[stub.key] = Gate(apartment, policy, make_label(stub))
            return gate
    return apartment_gate
