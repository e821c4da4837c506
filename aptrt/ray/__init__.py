"""Apartments in other processes and on other machines, on Ray (``pip install 'aptrt[ray]'``).

``sta = await rt.start_sta("name", host=aptrt.ray.RayHost())`` starts a Ray actor that runs an aptrt STA, and
gives back a :class:`RemoteApartment`: create objects there, call them through the same typed proxies, with
the same deadlines, cancellation, errors and contexts as a local STA.
"""

from ._host import RayHost
from ._local import init_local
from ._remote import RemoteApartment, RemoteClassFactory, RemoteContext
from ._wire import RemoteError

__all__ = ["RayHost", "RemoteApartment", "RemoteClassFactory", "RemoteContext", "RemoteError", "init_local"]
