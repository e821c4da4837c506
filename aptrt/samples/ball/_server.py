"""FRESERVE: the ball server. ``IBall``, the ``DllBall`` class (COBall), and the server's counts.

A :class:`Ball` is a mathematical ball bouncing in a rectangle. It has no picture. Any thread may
``Move`` it, and the ball remembers which thread moved it last by taking that thread's color. Because the
class is registered ``ThreadingModel=Both``, it lives in whichever apartment creates it. In the MTA,
several threads call it at once, so it guards its own state: this is the tutorial's ``CThreaded``
pattern, here :class:`aptrt.Guarded` with :func:`aptrt.guarded`.
"""

from __future__ import annotations

import colorsys
import math
import random
import threading
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import aptrt

#: CLSID_DllBall (BALLGUID.H in the tutorial used another GUID: this one belongs to aptrt's sample)
CLSID_DllBall = uuid.UUID("e2074c21-f29a-4923-830b-e591c6c1c84b")
#: the same ball with the free-threaded marshaler (see :class:`FreeThreadedBall`)
CLSID_DllBallFreeThreaded = uuid.UUID("29a0b65e-43c1-4d8c-9a1e-6f0d2c7b5e31")
IID_IBall = uuid.UUID("aa6dc082-7f4b-46eb-86aa-21d473f985ae")
IID_IBall2 = uuid.UUID("7ed13137-665c-4780-8ba2-0232eb32a9b3")

#: the public module name, which is the "server module" whose counts ``can_unload_now`` reads
SERVER_MODULE = "aptrt.samples.ball"

#: a Win32 POINT, ``(x, y)``
POINT = tuple[int, int]
#: a Win32 COLORREF, ``0x00BBGGRR``
COLORREF = int

#: the most threads that get a color of their own (MAX_BALLTHREADS in BALL.H)
MAX_BALLTHREADS = 64


def RGB(red: int, green: int, blue: int) -> COLORREF:
    """The Win32 ``RGB`` macro: a COLORREF ``0x00BBGGRR``."""
    return (red & 0xFF) | (green & 0xFF) << 8 | (blue & 0xFF) << 16


def rgb_of(color: COLORREF) -> tuple[int, int, int]:
    """``(red, green, blue)`` of a COLORREF (GetRValue, GetGValue, GetBValue)."""
    return color & 0xFF, (color >> 8) & 0xFF, (color >> 16) & 0xFF


def hex_of(color: COLORREF) -> str:
    """A COLORREF as ``#rrggbb`` (for SVG and terminals)."""
    red, green, blue = rgb_of(color)
    return f"#{red:02x}{green:02x}{blue:02x}"


def _palette() -> tuple[COLORREF, ...]:
    # Hues a golden angle apart, so any first few colors are far apart, in three bands of lightness.
    colors = []
    for i in range(MAX_BALLTHREADS):
        hue = (0.61 + i * 0.381966) % 1.0
        value = (0.98, 0.80, 0.90)[i % 3]
        saturation = (0.78, 0.95, 0.55)[(i // 3) % 3]
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colors.append(RGB(round(red * 255), round(green * 255), round(blue * 255)))
    return tuple(colors)


#: the colors given to threads, in the order they first move the ball
PALETTE: tuple[COLORREF, ...] = _palette()
#: the color of a ball that no thread has moved yet
UNMOVED_COLOR: COLORREF = RGB(0xC0, 0xC0, 0xC0)
#: the color shared by threads that arrive after the first 64
OVERFLOW_COLOR: COLORREF = RGB(0x80, 0x80, 0x80)


@dataclass(frozen=True, slots=True)
class RECT:
    """A Win32 RECT. ``right`` and ``bottom`` are exclusive, so the width is ``right - left``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


class BallState(NamedTuple):
    """What ``GetBall`` returns: the ball's top-left corner, its size, and its current color."""

    origin: POINT
    extent: POINT
    color: COLORREF

    @property
    def center(self) -> tuple[float, float]:
        return self.origin[0] + self.extent[0] / 2, self.origin[1] + self.extent[1] / 2


class BallThread(NamedTuple):
    """One entry of the ball's thread table (``IBall2.GetThreads``)."""

    #: ``threading.get_ident()`` of the thread, or 0 for the entry shared by threads past the 64th
    thread_id: int
    #: the thread's name when it first moved the ball
    name: str
    color: COLORREF
    #: how many times the thread has moved the ball
    moves: int


class IBall(aptrt.Interface, iid=IID_IBall):
    """The tutorial's IBall interface (IBALL.H), with COM's method names.

    Out-parameters are return values, and a failing HRESULT raises :class:`aptrt.COMError`.
    """

    def Reset(self, rect: RECT | tuple[int, int, int, int], size: int) -> None:
        """Give the ball new bounds and diameter, and put it back in the middle.

        :raises InvalidArgumentError: the size is not positive, or the ball does not fit (``E_INVALIDARG``)
        :raises COMError: the ball is dead (``E_FAIL``)
        """
        raise NotImplementedError

    def GetBall(self) -> BallState:
        """The ball's origin (top-left), extent (width, height) and color. A dead ball still answers."""
        raise NotImplementedError

    def Move(self, alive: bool) -> None:
        """``Move(True)`` moves the ball one step, in the calling thread's color. ``Move(False)`` kills it.

        :raises COMError: ``Move(True)`` on a dead ball (``E_FAIL``)
        """
        raise NotImplementedError


class IBall2(IBall, iid=IID_IBall2):
    """IBall evolved, as the tutorial suggests: IBall's contract plus a look at the thread table."""

    def GetThreads(self) -> tuple[BallThread, ...]:
        """Every thread that has moved the ball, in order of first visit, with its color and move count."""
        raise NotImplementedError

    def IsAlive(self) -> bool:
        raise NotImplementedError


def _dead() -> aptrt.COMError:
    return aptrt.COMError("the ball is dead", hresult=aptrt.HRESULT.E_FAIL)


class _Visitor:
    __slots__ = ("color", "moves", "name", "thread_id")

    def __init__(self, thread_id: int, name: str, color: COLORREF) -> None:
        self.thread_id = thread_id
        self.name = name
        self.color = color
        self.moves = 0


DEFAULT_RECT = RECT(0, 0, 640, 480)
DEFAULT_SIZE = 48
#: how much a bounce may turn the ball (radians, either way) and change its speed (a fraction, either way)
ANGLE_SKEW = math.radians(12)
SPEED_SKEW = 0.15
#: the flattest a path may get against an edge, so the ball keeps crossing the whole rectangle
MIN_ANGLE = math.radians(15)


@aptrt.coclass(
    clsid=CLSID_DllBall,
    progid="DllBall.1",
    version_independent_progid="DllBall",
    threading_model=aptrt.ThreadingModel.BOTH,
    description="DllBall Component - FRESERVE Code Sample",
)
class Ball(aptrt.Guarded, IBall2):
    """COBall: a ball that bounces inside a rectangle, colored by the thread that moved it last.

    Each move advances the ball by its velocity. When the ball reaches an edge, it is reflected back
    inside and its direction and speed are skewed a little at random, which makes the motion look
    natural. Pass ``seed`` for a repeatable sequence; activation (``DllBall``) seeds from the system.
    The first 64 threads to move the ball get a color each, from :data:`PALETTE` in order of first
    visit, and keep it on every later visit. Threads after the 64th share :data:`OVERFLOW_COLOR`.

    Every method holds the object's lock (:func:`aptrt.guarded`). That is what lets the MTA's threads
    call the ball at once.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        # Everything below is read and written only while holding self.owned() (every method is guarded).
        self._rng = random.Random(seed)
        self._alive = True
        self._rect = DEFAULT_RECT
        self._size = DEFAULT_SIZE
        self._x = 0.0  # origin (top-left corner), in the rectangle's units
        self._y = 0.0
        self._vx = 0.0  # velocity, units per move
        self._vy = 0.0
        self._color: COLORREF = UNMOVED_COLOR
        self._visitors: dict[int, _Visitor] = {}  # thread ident -> entry, in order of first visit
        self._overflow = _Visitor(0, "(threads past the 64th)", OVERFLOW_COLOR)
        self._launch()

    def __repr__(self) -> str:
        state = "alive" if self._alive else "dead"
        return f"<{type(self).__name__} {state} at ({self._x:.0f}, {self._y:.0f}) in {self._rect}>"

    # -- IBall -----------------------------------------------------------------------------------------

    @aptrt.guarded
    def Reset(self, rect: RECT | tuple[int, int, int, int], size: int) -> None:
        if not self._alive:
            raise _dead()
        new_rect = _as_rect(rect)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise aptrt.InvalidArgumentError(f"the ball's size must be a positive int, not {size!r}")
        if size > new_rect.width or size > new_rect.height:
            raise aptrt.InvalidArgumentError(f"a ball of size {size} does not fit in {new_rect}")
        self._rect = new_rect
        self._size = size
        self._launch()

    @aptrt.guarded
    def GetBall(self) -> BallState:
        return BallState((round(self._x), round(self._y)), (self._size, self._size), self._color)

    @aptrt.guarded
    def Move(self, alive: bool) -> None:
        if not self._alive:
            if alive:
                raise _dead()
            return  # killing a dead ball is a no-op: two killers must not race into an error
        if not alive:
            self._alive = False
            return
        self._find_thread()
        self._step()

    # -- IBall2 ----------------------------------------------------------------------------------------

    @aptrt.guarded
    def GetThreads(self) -> tuple[BallThread, ...]:
        entries = [*self._visitors.values()]
        if self._overflow.moves:
            entries.append(self._overflow)
        return tuple(BallThread(v.thread_id, v.name, v.color, v.moves) for v in entries)

    @aptrt.guarded
    def IsAlive(self) -> bool:
        return self._alive

    # -- the motion (called with the lock held) --------------------------------------------------------

    def _launch(self) -> None:
        """Centre the ball and send it off in a random, not too flat, direction at its base speed."""
        rect, size = self._rect, self._size
        self._x = rect.left + (rect.width - size) / 2
        self._y = rect.top + (rect.height - size) / 2
        angle = self._rng.uniform(MIN_ANGLE, math.pi / 2 - MIN_ANGLE)
        speed = self._base_speed()
        self._vx = speed * math.cos(angle) * self._rng.choice((-1, 1))
        self._vy = speed * math.sin(angle) * self._rng.choice((-1, 1))

    def _base_speed(self) -> float:
        return max(1.0, self._size / 4)

    def _step(self) -> None:
        rect, size = self._rect, self._size
        x, y = self._x + self._vx, self._y + self._vy
        lo_x, hi_x = rect.left, rect.right - size
        lo_y, hi_y = rect.top, rect.bottom - size
        bounced = False
        # CheckBounce: reflect off each edge the move crossed; clamp if even the reflection overshoots
        if x < lo_x:
            x, self._vx, bounced = 2 * lo_x - x, abs(self._vx), True
        elif x > hi_x:
            x, self._vx, bounced = 2 * hi_x - x, -abs(self._vx), True
        if y < lo_y:
            y, self._vy, bounced = 2 * lo_y - y, abs(self._vy), True
        elif y > hi_y:
            y, self._vy, bounced = 2 * hi_y - y, -abs(self._vy), True
        self._x = min(max(x, lo_x), hi_x)
        self._y = min(max(y, lo_y), hi_y)
        if bounced:
            self._skew()

    def _skew(self) -> None:
        """Turn and speed the ball a little at random, keeping the direction the bounce gave it."""
        sign_x = 1.0 if self._vx >= 0 else -1.0
        sign_y = 1.0 if self._vy >= 0 else -1.0
        angle = math.atan2(abs(self._vy), abs(self._vx)) + self._rng.uniform(-ANGLE_SKEW, ANGLE_SKEW)
        angle = min(max(angle, MIN_ANGLE), math.pi / 2 - MIN_ANGLE)
        base = self._base_speed()
        speed = math.hypot(self._vx, self._vy) * self._rng.uniform(1 - SPEED_SKEW, 1 + SPEED_SKEW)
        speed = min(max(speed, base * 0.5), base * 2)
        self._vx = sign_x * speed * math.cos(angle)
        self._vy = sign_y * speed * math.sin(angle)

    def _find_thread(self) -> None:
        """FindThread: the calling thread's color, given on its first visit and kept for later ones."""
        ident = threading.get_ident()
        visitor = self._visitors.get(ident)
        if visitor is None:
            if len(self._visitors) < MAX_BALLTHREADS:
                name = threading.current_thread().name
                visitor = self._visitors[ident] = _Visitor(ident, name, PALETTE[len(self._visitors)])
            else:
                visitor = self._overflow
        visitor.moves += 1
        self._color = visitor.color


@aptrt.coclass(
    clsid=CLSID_DllBallFreeThreaded,
    progid="DllBall.FreeThreaded.1",
    version_independent_progid="DllBall.FreeThreaded",
    threading_model=aptrt.ThreadingModel.BOTH,
    description="DllBall Component with the free-threaded marshaler",
)
class FreeThreadedBall(aptrt.Agile, Ball):
    """The ball with the free-threaded marshaler (``CoCreateFreeThreadedMarshaler``, here :class:`aptrt.Agile`).

    Marshaling hands every apartment the object itself instead of a proxy. An STA then calls the ball
    directly, on its own thread, and each STA's moves show in that STA's own color. With plain
    :class:`Ball` in the MTA, an STA's calls run on MTA worker threads, as COM's calls from an STA into
    the MTA do. The ball may be agile because it is thread-safe and holds no proxies.
    """


def _as_rect(rect: RECT | tuple[int, int, int, int]) -> RECT:
    if isinstance(rect, RECT):
        return rect
    try:
        left, top, right, bottom = rect
    except (TypeError, ValueError):
        raise aptrt.InvalidArgumentError(f"a RECT is (left, top, right, bottom), not {rect!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, top, right, bottom)):
        raise aptrt.InvalidArgumentError(f"a RECT holds ints, not {rect!r}")
    return RECT(left, top, right, bottom)


# -- the server module (FRESERVE's CServer) ------------------------------------------------------------


def server() -> aptrt.ServerModule:
    """This server's object and lock counts (CServer's ``m_cObjects``/``m_cLocks``).

    The class factory counts every ball it makes until the ball is garbage collected.
    ``IClassFactory.LockServer`` counts locks.
    """
    return aptrt.server_module(SERVER_MODULE)


def can_unload_now() -> bool:
    """``DllCanUnloadNow``: True when no ball made by the class factory is alive and no lock is held."""
    return aptrt.can_unload_now(SERVER_MODULE)


def DllCanUnloadNow() -> int:
    """The COM spelling of :func:`can_unload_now`: ``S_OK`` (unload) or ``S_FALSE`` (keep loaded)."""
    return int(aptrt.HRESULT.S_OK if can_unload_now() else aptrt.HRESULT.S_FALSE)
