"""The options of a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Config:
    seconds: float = 60.0
    #: apartments in all: the main STA, the MTA, the directory's STA and the service STAs
    apartments: int = 16
    seed: int = 1
    #: caller tasks per caller apartment
    callers: int = 4
    #: a call with no outcome after this long counts as lost
    call_bound: float = 10.0
    #: one service replaced (and its old context disconnected) this often
    churn_every: float = 0.05
    json_path: Path | None = None
