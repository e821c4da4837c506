"""Samples: lessons of Microsoft's COM tutorial, rebuilt on aptrt.

* :mod:`aptrt.samples.ball`: FRESERVE and FRECLIEN. A free-threaded ball (``IBall``, class ``DllBall``,
  ``ThreadingModel=Both``) that several threads in several apartments move at once while a painter
  apartment draws it (``aptrt demo ball``).
* :mod:`aptrt.samples.disconnect_context`: the seed's ``CoDisconnectContext`` example, through the
  ``aptrt.com`` facade (``python -m aptrt.samples.disconnect_context``).

Importing a sample registers its classes, just as running ``regsvr32`` on the tutorial's DLL would.
"""

from __future__ import annotations

__all__ = ()
