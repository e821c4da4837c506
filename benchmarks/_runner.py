"""The suite: choose mechanisms, run them interleaved over several reps, aggregate, check the targets."""

from __future__ import annotations

import datetime
import faulthandler
import fnmatch
import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from . import _aptrt, _peers, _sc_calls, _sc_costs, _sc_ray
from ._harness import Mechanism, configure_placement
from ._scenarios import FULL_SIZES, QUICK_SIZES, Scenario, Sizes, Skipped
from ._targets import BEST_PEER, REFERENCE, TARGETS, Target, best_peer, evaluate

#: every mechanism, in table order
MECHANISMS: tuple[type[Mechanism], ...] = (*_aptrt.MECHANISMS, *_peers.MECHANISMS)

#: every scenario, in report order
SCENARIOS: tuple[type[Scenario], ...] = (*_sc_calls.SCENARIOS, *_sc_costs.SCENARIOS, *_sc_ray.SCENARIOS)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"

#: one mechanism's rep (set-up, latency, every throughput point, tear-down) taking longer than this is a hang
STEP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Config:
    """How much to measure."""

    reps: int = 3
    #: sequential timed calls per latency measurement
    latency_calls: int = 20_000
    #: untimed calls before each latency measurement
    warmup_calls: int = 500
    #: calls in flight for the throughput points
    inflight: tuple[int, ...] = (1, 64, 1024)
    #: each throughput point is sized (once, in the first rep) to take about this long
    tput_seconds: float = 0.3
    #: the calibration run that sizes a throughput point makes about this many calls
    calibration_calls: int = 1024
    #: the sizes of the scenarios
    scenario: Sizes = FULL_SIZES
    #: heavy scenarios (memory: a subprocess; steady figures; Ray: a cluster) run in this many reps only
    heavy_reps: int = 3


FULL = Config()
QUICK = Config(
    reps=3,
    latency_calls=1_000,
    warmup_calls=100,
    tput_seconds=0.08,
    calibration_calls=512,
    scenario=QUICK_SIZES,
    heavy_reps=1,
)


@dataclass
class RepResult:
    latency_median_us: float | None = None
    latency_p99_us: float | None = None
    #: calls/s by calls in flight
    throughput: dict[int, float] = field(default_factory=dict)
    error: str | None = None

    def figures(self) -> dict[str, float | None] | None:
        """Every figure by metric name (None for a failed rep)."""
        if self.error is not None:
            return None
        out: dict[str, float | None] = {"latency_median": self.latency_median_us, "latency_p99": self.latency_p99_us}
        out.update({f"throughput@{w}": rate for w, rate in self.throughput.items()})
        return out

    def metric(self, name: str) -> float | None:
        if name == "latency_median":
            return self.latency_median_us
        if name == "latency_p99":
            return self.latency_p99_us
        if name.startswith("throughput@"):
            return self.throughput.get(int(name.partition("@")[2]))
        raise ValueError(name)


@dataclass
class ScenarioRep:
    #: figures by metric key (None: the scenario did not run in this rep)
    figures: dict[str, float | None] | None = None
    error: str | None = None


# -- selection -----------------------------------------------------------------------------------------------


def available(cls: type[Mechanism | Scenario]) -> str | None:
    """Why *cls* cannot run here, or None."""
    for module in cls.requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def select(only: Sequence[str] | None = None, everything: bool = False) -> list[type[Mechanism]]:
    """The mechanisms to run: glob patterns on keys (``aptrt/*``, ``4?``), else the defaults (or all).

    The reference mechanism is always included: every ratio needs it. ``["none"]`` selects nothing.
    """
    if only == ["none"]:
        return []
    if only:
        chosen = [cls for cls in MECHANISMS if any(fnmatch.fnmatchcase(cls.key, pattern) for pattern in only)]
        unknown = [p for p in only if not any(fnmatch.fnmatchcase(cls.key, p) for cls in MECHANISMS)]
        if unknown:
            raise ValueError(f"no mechanism matches {', '.join(unknown)}; see --list")
    else:
        chosen = [cls for cls in MECHANISMS if everything or cls.default]
    if not any(cls.key == REFERENCE for cls in chosen):
        chosen.insert(0, next(cls for cls in MECHANISMS if cls.key == REFERENCE))
    return chosen


def select_scenarios(patterns: Sequence[str] | None = None, everything: bool = False) -> list[type[Scenario]]:
    """The scenarios to run: glob patterns on keys (``all``, ``none``), else the defaults (or all)."""
    if patterns == ["none"]:
        return []
    if patterns and patterns != ["all"]:
        unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(cls.key, p) for cls in SCENARIOS)]
        if unknown:
            raise ValueError(f"no scenario matches {', '.join(unknown)}; see --list")
        return [cls for cls in SCENARIOS if any(fnmatch.fnmatchcase(cls.key, p) for p in patterns)]
    return [cls for cls in SCENARIOS if everything or patterns == ["all"] or cls.default]


# -- measuring -----------------------------------------------------------------------------------------------


def _percentile(sorted_samples: Sequence[int], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q * len(sorted_samples)))
    return float(sorted_samples[rank - 1])


class _Watchdog:
    """Dump every thread's stack and exit if one step hangs (a benchmark must never hang CI)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if self.seconds > 0:
            faulthandler.dump_traceback_later(self.seconds, exit=True)

    def __exit__(self, *exc_info: object) -> None:
        if self.seconds > 0:
            faulthandler.cancel_dump_traceback_later()


def _measure_once(cls: type[Mechanism], config: Config, sizes: dict[tuple[str, int], int]) -> RepResult:
    """Open *cls*, measure its latency then each throughput point, close it."""
    result = RepResult()
    with cls() as mech:
        gc.collect()
        samples = mech.latency(config.latency_calls, config.warmup_calls)
        samples.sort()
        result.latency_median_us = statistics.median(samples) / 1000
        result.latency_p99_us = _percentile(samples, 0.99) / 1000
        for inflight in config.inflight:
            if not mech.supports(inflight):
                continue
            calls = sizes.get((cls.key, inflight))
            if calls is None:
                calls = sizes[(cls.key, inflight)] = _size(mech, inflight, config)
            gc.collect()
            result.throughput[inflight] = calls / mech.throughput(inflight, calls)
    return result


def _size(mech: Mechanism, inflight: int, config: Config) -> int:
    """How many calls make a throughput point last about ``config.tput_seconds`` (also warms up)."""
    calls = _round_up(max(config.calibration_calls, 2 * inflight), inflight)
    rate = calls / mech.throughput(inflight, calls)
    return max(_round_up(int(rate * config.tput_seconds), inflight), 2 * inflight)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _describe(result: RepResult) -> str:
    if result.error is not None:
        return f"ERROR {result.error}"
    parts = [f"lat {result.latency_median_us:7.1f} µs (p99 {result.latency_p99_us:6.1f})"]
    parts += [f"@{w} {rate / 1000:7.1f}k/s" for w, rate in result.throughput.items()]
    return "  ".join(parts)


def _describe_scenario(cls: type[Scenario], result: ScenarioRep) -> str:
    from ._report import fmt

    if result.error is not None:
        return result.error if result.error.startswith("skipped: ") else f"ERROR {result.error}"
    if result.figures is None:
        return "(not in this rep)"
    units = {m.key: m.unit for m in cls().metrics()}
    parts = [
        f"{key} {fmt(value, units.get(key, ''))}" for key, value in result.figures.items() if units.get(key) != "bool"
    ]
    text = ", ".join(parts)
    return text if len(text) <= 140 else text[:137] + "..."


def _run_scenario(cls: type[Scenario], config: Config, rep: int) -> ScenarioRep:
    if cls.heavy and rep >= config.heavy_reps:
        return ScenarioRep()
    gc.collect()
    try:
        return ScenarioRep(figures=cls().run(config.scenario, rep))
    except Skipped as exc:
        return ScenarioRep(error=f"skipped: {exc}")


def _last_rep(cls: type[Scenario], config: Config) -> int:
    """The last rep (from 0) in which *cls* runs."""
    return min(config.reps, config.heavy_reps) - 1 if cls.heavy else config.reps - 1


def _finish(cls: type[Scenario], progress: TextIO | None) -> None:
    """``cls.finish()``; a failure is reported, not raised (the figures are already taken)."""
    try:
        cls.finish()
    except Exception as exc:  # noqa: BLE001 - tear-down must not stop the suite
        if progress is not None:
            print(f"warning: {cls.key}: finish() failed: {type(exc).__name__}: {exc}", file=progress)


def measure(
    classes: Sequence[type[Mechanism]],
    config: Config,
    *,
    scenarios: Sequence[type[Scenario]] = (),
    progress: TextIO | None = sys.stderr,
) -> tuple[dict[str, list[RepResult]], dict[str, list[ScenarioRep]]]:
    """Run every mechanism and scenario once per rep, rotating their order each rep so drift hits all of
    them alike."""
    reps: dict[str, list[RepResult]] = {cls.key: [] for cls in classes}
    sc_reps: dict[str, list[ScenarioRep]] = {cls.key: [] for cls in scenarios}
    sizes: dict[tuple[str, int], int] = {}
    watchdog = _Watchdog(STEP_TIMEOUT_S)
    units: list[type[Mechanism | Scenario]] = []
    candidates: list[type[Mechanism | Scenario]] = [*classes, *scenarios]
    for cls in candidates:
        reason = available(cls)
        if reason is None:
            units.append(cls)
        elif issubclass(cls, Scenario):
            sc_reps[cls.key].append(ScenarioRep(error=f"skipped: {reason}"))
        else:
            reps[cls.key].append(RepResult(error=f"skipped: {reason}"))
    unfinished = [unit for unit in units if issubclass(unit, Scenario)]
    try:
        for rep in range(config.reps):
            shift = rep % max(1, len(units))
            for unit in units[shift:] + units[:shift]:
                t0 = time.perf_counter()
                if issubclass(unit, Scenario):
                    try:
                        with watchdog:
                            outcome = _run_scenario(unit, config, rep)
                    except Exception as exc:  # noqa: BLE001 - one broken scenario must not stop the suite
                        outcome = ScenarioRep(error=f"{type(exc).__name__}: {exc}")
                    if rep == _last_rep(unit, config):  # release what its reps shared (a Ray instance)
                        unfinished.remove(unit)
                        with watchdog:
                            _finish(unit, progress)
                    sc_reps[unit.key].append(outcome)
                    text = _describe_scenario(unit, outcome)
                else:
                    try:
                        with watchdog:
                            result = _measure_once(unit, config, sizes)
                    except Exception as exc:  # noqa: BLE001 - one broken mechanism must not stop the suite
                        result = RepResult(error=f"{type(exc).__name__}: {exc}")
                    reps[unit.key].append(result)
                    text = _describe(result)
                if progress is not None:
                    elapsed = time.perf_counter() - t0
                    print(f"  rep {rep + 1}/{config.reps} {unit.key:<14} {text}  [{elapsed:.1f} s]", file=progress)
                    progress.flush()
    finally:
        for unit in unfinished:  # the suite stopped early (an interrupt)
            _finish(unit, progress)
    return reps, sc_reps


# -- aggregating ---------------------------------------------------------------------------------------------


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _spread(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return (max(present) - min(present)) / statistics.median(present)


def _ratio(reps: list[RepResult], ref: list[RepResult], metric: str) -> float | None:
    """The median over reps of (this mechanism / the reference), each ratio taken within one rep."""
    ratios = []
    for mine, theirs in zip(reps, ref, strict=False):
        a, b = mine.metric(metric), theirs.metric(metric)
        if a is not None and b:
            ratios.append(a / b)
    return statistics.median(ratios) if ratios else None


def aggregate(
    classes: Sequence[type[Mechanism]], reps: dict[str, list[RepResult]], config: Config
) -> list[dict[str, Any]]:
    ref = reps.get(REFERENCE, [])
    rows = []
    for cls in classes:
        mine = reps[cls.key]
        ok = [r for r in mine if r.error is None]
        errors = sorted({r.error for r in mine if r.error is not None})
        throughput = {
            str(w): _median(r.throughput.get(w) for r in ok)
            for w in config.inflight
            if any(w in r.throughput for r in ok)
        }
        rows.append(
            {
                "key": cls.key,
                "label": cls.label,
                "family": cls.family,
                "ok_reps": len(ok),
                "errors": errors,
                "latency_us": {
                    "median": _median(r.latency_median_us for r in ok),
                    "p99": _median(r.latency_p99_us for r in ok),
                },
                "throughput_per_s": throughput,
                # (max - min) / median over the reps: how much the reps disagree
                "spread": {
                    "latency_median": _spread(r.latency_median_us for r in ok),
                    **{f"throughput@{w}": _spread(r.throughput.get(int(w)) for r in ok) for w in throughput},
                },
                # this mechanism's figure divided by the reference's, per rep, median over reps
                "vs_reference": {
                    "latency_median": _ratio(mine, ref, "latency_median"),
                    "latency_p99": _ratio(mine, ref, "latency_p99"),
                    **{f"throughput@{w}": _ratio(mine, ref, f"throughput@{w}") for w in throughput},
                },
                "reps": [asdict(r) for r in mine],
            }
        )
    return rows


def aggregate_scenarios(
    scenarios: Sequence[type[Scenario]], sc_reps: dict[str, list[ScenarioRep]]
) -> list[dict[str, Any]]:
    out = []
    for cls in scenarios:
        mine = sc_reps[cls.key]
        ran = [r.figures for r in mine if r.figures is not None]
        metrics = []
        for metric in cls().metrics():
            values = [figures.get(metric.key) for figures in ran]
            ratios: list[float | None] = []
            if metric.versus is not None:
                for figures in ran:
                    a, b = figures.get(metric.key), figures.get(metric.versus)
                    ratios.append(a / b if a is not None and b else None)
            metrics.append(
                {
                    "key": metric.key,
                    "label": metric.label,
                    "unit": metric.unit,
                    "median": _median(values),
                    "spread": _spread(values),
                    "versus": metric.versus,
                    # this figure divided by its baseline, per rep, median over reps
                    "ratio": _median(ratios) if metric.versus is not None else None,
                    "reps": values,
                }
            )
        out.append(
            {
                "key": cls.key,
                "title": cls.title,
                "description": " ".join((cls.__doc__ or "").split()),
                "ok_reps": len(ran),
                "errors": sorted({r.error for r in mine if r.error is not None}),
                "metrics": metrics,
            }
        )
    return out


def rep_figures(
    classes: Sequence[type[Mechanism]],
    reps: dict[str, list[RepResult]],
    sc_reps: dict[str, list[ScenarioRep]],
) -> tuple[dict[str, list[dict[str, float | None] | None]], list[str]]:
    """Every figure of the run, by source and rep (what targets are evaluated on), and the best peer of
    each rep."""
    figures: dict[str, list[dict[str, float | None] | None]] = {
        key: [r.figures() for r in results] for key, results in reps.items()
    }
    figures.update({key: [r.figures for r in results] for key, results in sc_reps.items()})
    peers = [cls.key for cls in classes if cls.family == "peer"]
    figures[BEST_PEER], keys = best_peer(figures, peers)
    return figures, keys


def check_targets(
    figures: dict[str, list[dict[str, float | None] | None]], targets: Sequence[Target] = TARGETS
) -> list[dict[str, Any]]:
    return evaluate(targets, figures)


# -- the environment -----------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("aptrt", "anyio", "trio", "uvloop", "janus", "culsans", "pykka", "ray"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "switch_interval": sys.getswitchinterval(),
        "load_average": _load_average(),
        "git_revision": _git_revision(),
        "versions": versions,
    }


def _warn_if_busy(progress: TextIO, seconds: float = 0.5) -> None:
    """Warn when other processes are using the CPUs right now (sampled for *seconds*)."""
    before = _cpu_seconds()
    time.sleep(seconds)
    after = _cpu_seconds()
    if before is None or after is None:
        return
    other = (after[0] - before[0]) - (after[1] - before[1])
    if other > 0.1 * seconds:
        print(
            f"warning: other processes are using {other / seconds:.0%} of a CPU: expect noisy figures",
            file=progress,
        )


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    own = os.times()  # with the subprocesses it waited for (the memory scenario's)
    mine = own.user + own.system + own.children_user + own.children_system
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), mine


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# -- the suite -----------------------------------------------------------------------------------------------


def run(
    quick: bool = False,
    json_path: str | os.PathLike[str] | None = None,
    *,
    reps: int | None = None,
    only: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    everything: bool = False,
    inflight: Sequence[int] | None = None,
    placement: str = "split",
    plot: bool = True,
    out: TextIO | None = sys.stdout,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Run the suite, print the tables and the target checks to *out*, save JSON to *json_path* (if given)
    and a plot next to it (``.svg``, and ``.png`` when matplotlib is importable).

    :param quick: the smoke-test sizes (under a minute) instead of the full ones (about 3.5 minutes)
    :param reps: override the number of interleaved reps
    :param only: glob patterns on mechanism keys (``aptrt/*``, ``4a``); the reference always runs.
        Given alone (no *scenarios*), no scenario runs
    :param scenarios: glob patterns on scenario keys (``marshal``, ``mem*``), ``["all"]`` or ``["none"]``.
        Given alone (no *only*), no mechanism runs
    :param everything: every mechanism and scenario, not only the default sets (in the categories that
        *only* / *scenarios* leave unrestricted)
    :param inflight: override the throughput points (calls in flight) of the mechanisms
    :param placement: "split" (callers on one CPU, callees on another), "same" (everything on one CPU) or
        "auto" (no pinning: the scheduler decides, and co-locates some runs but not others)
    :param plot: write the plot next to the JSON file
    :returns: the result, as saved in the JSON file
    """
    from . import _plot, _report

    config = QUICK if quick else FULL
    if reps is not None:
        config = replace(config, reps=reps)
    if inflight is not None:
        config = replace(config, inflight=tuple(inflight))
    if only is not None and scenarios is None:
        scenarios = ["none"]
    elif scenarios is not None and only is None:
        only = ["none"]
    classes = select(only, everything)
    scenario_classes = select_scenarios(scenarios, everything)
    if not classes and not scenario_classes:
        raise ValueError("nothing to run")
    env = environment()  # before measuring: its load average is other processes' load
    original_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        where = configure_placement(placement)
        if progress is not None:
            keys = ", ".join([cls.key for cls in classes] + [sc.key for sc in scenario_classes])
            print(
                f"aptrt benchmarks ({'quick' if quick else 'full'}, {config.reps} reps, placement {where}): {keys}",
                file=progress,
            )
            _warn_if_busy(progress)
        t0 = time.perf_counter()
        cpu0 = _cpu_seconds()
        reps_by_key, sc_reps = measure(classes, config, scenarios=scenario_classes, progress=progress)
        cpu1 = _cpu_seconds()
    finally:
        configure_placement("auto")
        if original_cpus is not None:
            os.sched_setaffinity(0, original_cpus)
    figures, best_peers = rep_figures(classes, reps_by_key, sc_reps)
    result: dict[str, Any] = {
        "schema": 2,
        "quick": quick,
        "reference": REFERENCE,
        "environment": env,
        "config": asdict(config),
        "placement": where,
        "mechanisms": aggregate(classes, reps_by_key, config) if classes else [],
        "scenarios": aggregate_scenarios(scenario_classes, sc_reps),
        # per rep: the peer mechanism with the lowest median latency (the "best peer" of the targets)
        "best_peer": best_peers,
        "targets": check_targets(figures),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        # CPU time other processes used while the suite ran (they perturb it): None where unknown
        "other_processes_cpu_s": round((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]), 1) if cpu0 and cpu1 else None,
    }
    if out is not None:
        print(
            f"\naptrt {env['versions']['aptrt']} ({env['git_revision']}), Python {env['python']}, "
            f"{env['cpus']} CPUs, {env['platform']}; {result['elapsed_s']} s\n",
            file=out,
        )
        if classes:
            print(_report.table(result), file=out)
            print(file=out)
        for text in _report.scenario_tables(result):
            print(text, file=out)
            print(file=out)
        print(_report.targets(result), file=out)
        other = result["other_processes_cpu_s"]
        if other is not None and other > 0.05 * result["elapsed_s"]:
            print(
                f"\nwarning: other processes used {other} CPU-seconds during this {result['elapsed_s']} s run; "
                "the figures are perturbed",
                file=out,
            )
    if json_path is not None:
        path = _report.save_json(result, json_path)
        saved = [path]
        if plot:
            saved += _plot.save(result, path.with_suffix(""))
        if out is not None:
            print(f"\nsaved {', '.join(str(p) for p in saved)}", file=out)
    return result
