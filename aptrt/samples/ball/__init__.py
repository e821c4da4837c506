"""FRESERVE and FRECLIEN: one free-threaded ball, many threads moving it, one painter drawing it.

The server side (FRESERVE)::

    from aptrt.samples.ball import IBall, RECT

    with aptrt.Runtime() as rt:                      # this plain thread is in the MTA
        ball = rt.create_instance_blocking("DllBall", IBall)   # ThreadingModel=Both: lives here
        ball.Reset(RECT(0, 0, 640, 480), 48)
        ball.Move(True)                              # now in this thread's color
        origin, extent, color = ball.GetBall()
        ball.Move(False)                             # dead: later moves raise COMError(E_FAIL)

The client side (FRECLIEN) is :func:`run`. It starts mover threads in the MTA and mover STAs on
asyncio and trio, has them all move one ball, paints it from the main STA, then kills the ball and
shuts everything down. ``aptrt demo ball`` shows it live in the terminal.
"""

from __future__ import annotations

from ._client import DemoConfig as DemoConfig
from ._client import DemoResult as DemoResult
from ._client import MoverReport as MoverReport
from ._client import PathPoint as PathPoint
from ._client import Snapshot as Snapshot
from ._client import run as run
from ._client import run_async as run_async
from ._picture import png_bytes as png_bytes
from ._picture import save_picture as save_picture
from ._picture import svg_text as svg_text
from ._render import frame_text as frame_text
from ._render import render_frame as render_frame
from ._server import COLORREF as COLORREF
from ._server import MAX_BALLTHREADS as MAX_BALLTHREADS
from ._server import OVERFLOW_COLOR as OVERFLOW_COLOR
from ._server import PALETTE as PALETTE
from ._server import POINT as POINT
from ._server import RECT as RECT
from ._server import RGB as RGB
from ._server import UNMOVED_COLOR as UNMOVED_COLOR
from ._server import Ball as Ball
from ._server import BallState as BallState
from ._server import BallThread as BallThread
from ._server import CLSID_DllBall as CLSID_DllBall
from ._server import CLSID_DllBallFreeThreaded as CLSID_DllBallFreeThreaded
from ._server import DllCanUnloadNow as DllCanUnloadNow
from ._server import FreeThreadedBall as FreeThreadedBall
from ._server import IBall as IBall
from ._server import IBall2 as IBall2
from ._server import IID_IBall as IID_IBall
from ._server import IID_IBall2 as IID_IBall2
from ._server import can_unload_now as can_unload_now
from ._server import hex_of as hex_of
from ._server import rgb_of as rgb_of
from ._server import server as server

__all__ = (
    "COLORREF",
    "MAX_BALLTHREADS",
    "OVERFLOW_COLOR",
    "PALETTE",
    "POINT",
    "RECT",
    "RGB",
    "UNMOVED_COLOR",
    "Ball",
    "BallState",
    "BallThread",
    "CLSID_DllBall",
    "CLSID_DllBallFreeThreaded",
    "DemoConfig",
    "DemoResult",
    "DllCanUnloadNow",
    "FreeThreadedBall",
    "IBall",
    "IBall2",
    "IID_IBall",
    "IID_IBall2",
    "MoverReport",
    "PathPoint",
    "Snapshot",
    "can_unload_now",
    "frame_text",
    "hex_of",
    "png_bytes",
    "render_frame",
    "rgb_of",
    "run",
    "run_async",
    "save_picture",
    "server",
    "svg_text",
)


def _fixup_module_metadata() -> None:
    # Public objects live in ``aptrt.samples.ball``. That name is also the server module whose object
    # counts the class factory keeps (ClassRegistration.module is the class's __module__).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(__name__ + "._"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):
                pass


_fixup_module_metadata()
del _fixup_module_metadata
