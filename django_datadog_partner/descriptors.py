"""How many sockets a worker may hold: its descriptor limit, and what running out means.

Past the soft ``RLIMIT_NOFILE`` (often 1,024 under systemd) every new socket fails with
``EMFILE``, which the seam would read as a site that does not answer (a retry, and a count
towards the site's breaker, for every tenant on it). Delivery keeps half the budget for
requests in flight and the transport half for idle connections; a socket that still finds
no descriptor is ``OutOfDescriptorsError``, not the site's fault.
"""

from __future__ import annotations

import errno
import socket

from .exceptions import OutOfDescriptorsError

try:
    import resource
except ImportError:  # pragma: no cover - not a Unix
    resource = None  # type: ignore[assignment]

#: Descriptors left for everything else a worker opens (database, broker, logs, pipes): at
#: least this many, and at least an eighth of the limit.
RESERVED_DESCRIPTORS = 64
#: Idle connections kept alive per origin (the most requests a delivery run has in flight).
POOL_SIZE = 2048


def socket_budget() -> int:
    """Sockets this process may hold to Datadog: its descriptor limit (the soft
    ``RLIMIT_NOFILE``, often 1,024 under systemd) less a reserve. Past the limit every new
    connection fails (``EMFILE``), which would read as a site that does not answer. Half
    of it is for requests in flight, half for idle connections kept alive."""
    if resource is None:  # not a Unix: no such limit to keep under
        return 2 * POOL_SIZE
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 2 * POOL_SIZE
    return max(2, soft - max(RESERVED_DESCRIPTORS, soft // 8))


def out_of_descriptors(exc: OSError) -> OutOfDescriptorsError | None:
    """The package's error when connecting failed for want of a descriptor: ``exc`` says
    so, or a socket cannot be made right now (a name lookup that found none answers with
    another error, such as ``EBUSY``)."""
    if exc.errno not in (errno.EMFILE, errno.ENFILE):
        try:
            socket.socket().close()
        except OSError as probe:
            if probe.errno not in (errno.EMFILE, errno.ENFILE):
                return None
        else:
            return None
    return OutOfDescriptorsError(
        "This worker process has no file descriptor left for a connection to Datadog "
        "(its RLIMIT_NOFILE): nothing was sent. Raise the limit (LimitNOFILE for the "
        "qcluster service) or lower DELIVERY_CONCURRENCY."
    )
