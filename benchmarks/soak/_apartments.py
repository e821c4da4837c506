"""The apartments of a run: opened, and their statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import aptrt

from ._config import Config


@dataclass
class Layout:
    """The apartments of the run."""

    directory_sta: aptrt.STA
    services: list[aptrt.Apartment]  # the service STAs, then the MTA
    callers: list[aptrt.Apartment]  # the main STA, the MTA and half the service STAs
    backends: dict[str, str] = field(default_factory=dict)


async def open_apartments(rt: aptrt.Runtime, cfg: Config) -> Layout:
    assert rt.main_sta is not None
    stas = cfg.apartments - 3
    backends = {"main": "asyncio", "MTA": f"{rt.mta.max_workers} workers", "directory": "trio"}
    directory_sta = await rt.start_sta("directory", backend="trio")
    services: list[aptrt.Apartment] = []
    callers: list[aptrt.Apartment] = [rt.main_sta, rt.mta]
    for i in range(stas):
        backend = ("asyncio", "trio")[i % 2]
        sta = await rt.start_sta(f"svc{i:02d}-{backend}", backend=backend)
        backends[sta.name] = backend
        if i % 3 == 2:  # some inboxes are bounded: their callers wait for room, under their deadlines
            sta.configure(max_queued=32, overflow="wait")
            backends[sta.name] += ", max_queued=32"
        services.append(sta)
        if i % 4 in (0, 1):
            callers.append(sta)
            backends[sta.name] += ", callers"
    services.append(rt.mta)
    return Layout(directory_sta, services, callers, backends)


def apartment_stats(rt: aptrt.Runtime) -> dict[str, aptrt.ApartmentStatistics]:
    return {a.name: a.statistics() for a in rt.apartments}
