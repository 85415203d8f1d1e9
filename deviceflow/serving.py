"""Waitress, guarded against slow clients.

Waitress keeps at most `connection_limit` connections open, and its
`channel_timeout` only closes a connection that has been silent that long: a
client sending one header line every few seconds (slowloris) keeps its slot for
ever, and a hundred of them locked everyone out. Here:

- the connection limit is sized to the file descriptors the process may open
  (waitress's default is 100), and waitress waits on poll() rather than
  select(), which cannot watch a descriptor numbered past 1023;
- a request must be received whole (headers and body) within `request_timeout`
  seconds of its first byte, or of the connection when it is the first one;
  else the connection is closed. A connection idle between two requests is
  `channel_timeout`'s, as before.

Against many addresses opening connections faster than they are closed, only
a reverse proxy in front helps (docs/operations.md, "Public servers").
"""

from __future__ import annotations

import logging
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("deviceflow.serving")

# Descriptors kept for everything but client connections: the store's files, the
# upstream sessions of every thread, the log, waitress's own trigger and sockets.
RESERVED_DESCRIPTORS = 64
MAX_DEFAULT_CONNECTIONS = 4096
# Maintenance runs this often (seconds): how late past `request_timeout` a slow request may be closed.
CLEANUP_INTERVAL = 1
# At most one WARNING per this many seconds about slow requests closed, however many.
WARN_EVERY = 60.0


def default_connection_limit(threads: int) -> int:
    """As many connections as the process has descriptors for, after its own, within a bound
    that keeps the memory of idle connections small (a few kilobytes each)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return MAX_DEFAULT_CONNECTIONS
    return max(100, min(MAX_DEFAULT_CONNECTIONS, soft - threads - RESERVED_DESCRIPTORS))


class GuardedChannel(HTTPChannel):
    """A connection that knows since when it has been receiving its current request."""

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map=map)
        # A connection is opened to send a request: the first one's clock starts now.
        self.request_started = self.creation_time

    def received(self, data):
        if self.request_started is None:
            self.request_started = time.time()
        result = super().received(data)
        if self.request is None:  # nothing partly received: an idle connection is channel_timeout's
            self.request_started = None
        return result


class GuardedServer(TcpWSGIServer):
    channel_class = GuardedChannel

    def __init__(self, *args, request_timeout: float, **kwargs):
        self.request_timeout = request_timeout
        self.closed_slow, self.next_warning = 0, 0.0
        super().__init__(*args, **kwargs)

    def maintenance(self, now):
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in self.active_channels.values():
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff and not channel.requests and not channel.will_close:
                channel.will_close = True
                self.closed_slow += 1
        if self.closed_slow and now >= self.next_warning:
            log.warning(
                "closed %d connection(s) whose request was not complete within %g s (REQUEST_TIMEOUT): "
                "slow or stalled clients",
                self.closed_slow,
                self.request_timeout,
            )
            self.closed_slow, self.next_warning = 0, now + WARN_EVERY


def create_server(
    app, host: str, port: int, threads: int, options: dict, connection_limit: int, request_timeout: float
):
    """What waitress.create_server makes, with guarded servers (one per address `host` resolves to)."""
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        connection_limit=connection_limit,
        cleanup_interval=CLEANUP_INTERVAL,
        asyncore_use_poll=True,
        **options,
    )
    socket_map, dispatcher = {}, ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    servers = [
        GuardedServer(
            app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, request_timeout=request_timeout
        )
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    return MultiSocketServer(
        socket_map,
        adj,
        [(s.effective_host, s.effective_port) for s in servers],
        dispatcher,
        log_info=servers[0].log_info,
    )
