"""HRESULT codes, as signed 32-bit integers (the convention of pywin32 and comtypes)."""

from __future__ import annotations

import enum


def _signed(value: int) -> int:
    """Turn an unsigned 32-bit HRESULT literal into the signed value COM code compares against."""
    return value - (1 << 32) if value & 0x80000000 else value


class HRESULT(enum.IntEnum):
    """Every HRESULT aptrt raises or returns.

    Members are signed 32-bit integers; ``HRESULT.E_FAIL.hex`` gives the familiar ``0x80004005`` spelling.
    """

    S_OK = 0x00000000
    S_FALSE = 0x00000001
    CO_S_NOTALLINTERFACES = 0x00080012
    E_NOTIMPL = _signed(0x80004001)
    E_NOINTERFACE = _signed(0x80004002)
    E_POINTER = _signed(0x80004003)
    E_FAIL = _signed(0x80004005)
    E_UNEXPECTED = _signed(0x8000FFFF)
    E_INVALIDARG = _signed(0x80070057)
    E_OUTOFMEMORY = _signed(0x8007000E)
    CO_E_NOT_SUPPORTED = _signed(0x80004021)
    CO_E_NOTINITIALIZED = _signed(0x800401F0)
    CO_E_ALREADYINITIALIZED = _signed(0x800401F1)
    CO_E_CLASSSTRING = _signed(0x800401F3)
    CO_E_OBJNOTREG = _signed(0x800401FB)
    CO_E_OBJISREG = _signed(0x800401FC)
    CO_E_OBJNOTCONNECTED = _signed(0x800401FD)
    CO_E_RELEASED = _signed(0x800401FF)
    CO_E_SERVER_STOPPING = _signed(0x80080008)
    CO_E_CANCEL_DISABLED = _signed(0x80010140)
    REGDB_E_CLASSNOTREG = _signed(0x80040154)
    REGDB_E_IIDNOTREG = _signed(0x80040155)
    CLASS_E_NOAGGREGATION = _signed(0x80040110)
    CLASS_E_CLASSNOTAVAILABLE = _signed(0x80040111)
    RPC_E_CALL_REJECTED = _signed(0x80010001)
    RPC_E_CALL_CANCELED = _signed(0x80010002)
    RPC_E_SERVERFAULT = _signed(0x80010105)
    RPC_E_CHANGED_MODE = _signed(0x80010106)
    RPC_E_DISCONNECTED = _signed(0x80010108)
    RPC_E_RETRY = _signed(0x80010109)
    RPC_E_SERVERCALL_RETRYLATER = _signed(0x8001010A)
    RPC_E_SERVERCALL_REJECTED = _signed(0x8001010B)
    RPC_E_CANTCALLOUT_ININPUTSYNCCALL = _signed(0x8001010D)
    RPC_E_WRONG_THREAD = _signed(0x8001010E)
    RPC_E_THREAD_NOT_INIT = _signed(0x8001010F)
    RPC_S_CALLPENDING = _signed(0x80010115)
    RPC_E_CALL_COMPLETE = _signed(0x80010117)
    RPC_E_INVALID_OBJREF = _signed(0x8001011D)
    RPC_E_TIMEOUT = _signed(0x8001011F)
    RPC_E_NO_SYNC = _signed(0x80010120)
    STG_E_READFAULT = _signed(0x8003001E)
    CONTEXT_E_WOULD_DEADLOCK = _signed(0x8004E005)
    RPC_S_CALL_CANCELED = _signed(0x8007071A)

    # The CoDisconnectContext documentation spells it this way; winerror.h has CO_E_NOT_SUPPORTED.
    CO_E_NOTSUPPORTED = CO_E_NOT_SUPPORTED

    @property
    def hex(self) -> str:
        """The unsigned hexadecimal spelling, as winerror.h writes it (``0x80004005``)."""
        return f"0x{self.value & 0xFFFFFFFF:08X}"

    @property
    def failed(self) -> bool:
        """True for failure codes (the FAILED() macro)."""
        return self.value < 0


def hresult_name(hresult: int) -> str:
    """The symbolic name of *hresult*, or its hexadecimal spelling when aptrt does not know it."""
    try:
        return HRESULT(hresult).name
    except ValueError:
        return f"0x{hresult & 0xFFFFFFFF:08X}"
