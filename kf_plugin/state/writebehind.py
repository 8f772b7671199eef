"""One Redis round trip per push: the claim, carrying the writes queued since the previous one.

A push needs one answer from Redis before its handler may run: the claim
(nobody else is handling it). What follows — the finished reply kept for
WeChat's retries, the send rights the push gives its sender — only has to be
there before somebody reads it. Those writes are queued here and go out with
the next claim, in the same round trip; a background thread sends what a quiet
spell leaves queued for ``linger`` seconds. Reads that must see this
process's queued writes call :meth:`WriteBehind.flush` first; a retry handled
by another worker sees the reply once it is sent (it waits for a pending
claim anyway). While Redis is down, or when a round trip fails, each queued
write's fallback (the in-process store) runs instead, as for every other
operation under :class:`~.failover.Failover`. Queued writes are sent at exit;
a worker killed outright loses the few it held (a retry of such a push is then
answered with ``success`` when its claim expires, as if the worker had died
while handling the push).

The round trip goes over a connection of its own (:class:`RespConnection`,
hiredis's encoder and parser on a plain socket): redis-py spends about twice
the CPU per command on its connection pool, retries and instrumentation
(``bench/redis_client.py``), more than a push's whole routing costs.
"""
from __future__ import annotations

import atexit
import logging
import os
import select
import socket
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from .failover import Failover

__all__ = ["RespConnection", "WriteBehind"]

log = logging.getLogger(__name__)

Command = Tuple[Any, ...]
Fallback = Callable[[], None]


class RespConnection:
    """One socket to the Redis that ``redis`` (a redis-py client) points at, for pipelined commands.

    Same host or Unix socket, database, user, password and socket timeout as
    ``redis``. Thread-safe (one round trip at a time); a forked child opens its
    own socket; a connection the server closed is noticed before it is used.
    Failures raise redis-py's ``ConnectionError`` / ``TimeoutError``, so they
    are handled as redis-py's are. Use :meth:`for_client`: TLS is not supported here.
    """

    def __init__(self, redis: Any):
        import hiredis
        from redis import exceptions
        pool = redis.connection_pool
        self._options = dict(pool.connection_kwargs)
        self._unix = "path" in self._options and not self._options.get("host")
        self._pack = hiredis.pack_command
        self._new_reader = lambda: hiredis.Reader(replyError=exceptions.ResponseError)
        self._errors = exceptions  # imported once here, not on every round trip
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._closed_by_server: Callable[[], bool] = lambda: False  # set with each new socket
        self._pid = os.getpid()

    @classmethod
    def for_client(cls, redis: Any) -> Optional["RespConnection"]:
        """A connection like ``redis``'s, or ``None`` where this one cannot make it (TLS, no hiredis)."""
        try:
            import hiredis  # noqa: F401
            from redis.connection import Connection, UnixDomainSocketConnection
        except ImportError:
            return None
        if redis.connection_pool.connection_class not in (Connection, UnixDomainSocketConnection):
            return None
        return cls(redis)

    def execute(self, commands: Sequence[Command]) -> List[Any]:
        """Send ``commands`` in one write and read their replies (an error reply is a ``ResponseError`` value)."""
        errors = self._errors
        with self._lock:
            try:
                sock = self._connected()
                sock.sendall(b"".join(self._pack(command) for command in commands))
                return [self._read_reply(sock) for _ in commands]
            except socket.timeout as exc:
                self._close()
                raise errors.TimeoutError(f"Redis did not answer in {self._options.get('socket_timeout')} s") from exc
            except OSError as exc:
                self._close()
                raise errors.ConnectionError(f"Redis connection failed: {exc}") from exc
            except errors.ConnectionError:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _connected(self) -> socket.socket:
        if self._pid != os.getpid():  # the parent's socket: leave it to the parent
            self._sock, self._pid = None, os.getpid()
        if self._sock is not None and self._closed_by_server():
            self._close()
        if self._sock is None:
            self._sock = self._connect()
            self._closed_by_server = _readable(self._sock)
        return self._sock

    def _connect(self) -> socket.socket:
        options = self._options
        timeout = options.get("socket_connect_timeout") or options.get("socket_timeout")
        if self._unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(options["path"])
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((options.get("host", "localhost"), options.get("port", 6379)), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._new_reader()
        setup: List[Command] = []
        if options.get("password"):
            setup.append(("AUTH", options["username"], options["password"]) if options.get("username")
                         else ("AUTH", options["password"]))
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        try:
            sock.settimeout(options.get("socket_timeout"))
            if setup:
                sock.sendall(b"".join(self._pack(command) for command in setup))
            for command in setup:
                reply = self._read_reply(sock)
                if isinstance(reply, Exception):
                    raise self._errors.ConnectionError(f"Redis refused {command[0]}: {reply}")
        except BaseException:  # not yet ours to close later: close it here
            sock.close()
            raise
        return sock

    def _read_reply(self, sock: socket.socket) -> Any:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise self._errors.ConnectionError("Redis closed the connection")
            self._reader.feed(data)

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


class WriteBehind:
    """Queued Redis writes, sent with the next :meth:`call` or after ``linger`` seconds of quiet.

    ``failover`` decides where queued writes go while Redis is down. Past
    ``max_queued`` waiting writes, :meth:`submit` sends them itself, so the
    queue stays bounded.
    """

    def __init__(self, connection: RespConnection, failover: Failover, *, linger: float = 0.01,
                 max_queued: int = 1000):
        self.connection = connection
        self.failover = failover
        self.linger = linger
        self.max_queued = max_queued
        self._reset()
        _open.add(self)

    def _reset(self) -> None:
        """A fresh queue and thread: at creation and in a forked child (the parent's thread is not there)."""
        self._pid = os.getpid()
        self._queue: Deque[Tuple[Command, Fallback, float]] = deque()
        self._ready = threading.Condition()
        self._sending = threading.Lock()  # one sender at a time keeps the writes in order
        self._thread: Optional[threading.Thread] = None
        self._idle = False  # the thread waits to be woken (rather than looking every ``linger`` seconds)
        self._last_submit = 0.0
        self._closed = False

    @property
    def queued(self) -> int:
        """Writes waiting to be sent."""
        return len(self._queue)

    def submit(self, command: Command, fallback: Fallback) -> None:
        """Queue ``command``; ``fallback`` runs instead if Redis cannot take it."""
        if self._pid != os.getpid():
            self._reset()
        with self._ready:
            self._last_submit = now = time.monotonic()
            self._queue.append((command, fallback, now))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="kf-write-behind", daemon=True)
                self._thread.start()
            if self._idle:  # only an idle thread needs waking: a lingering one looks again on its own
                self._ready.notify()
        if self._closed or len(self._queue) >= self.max_queued:
            self.flush()

    def call(self, command: Command) -> Any:
        """Run ``command`` now, sending the queued writes first in the same round trip; its reply.

        :raises redis.exceptions.ConnectionError: Redis cannot be reached (the queued writes have
            then gone to their fallbacks).
        :raises redis.exceptions.ResponseError: Redis refused ``command``.
        """
        if self._pid != os.getpid():
            self._reset()
        with self._sending:
            batch = self._take()
            try:
                reply = self._send(batch, command)
            except Exception:
                _fall_back(batch)
                raise
        if isinstance(reply, Exception):
            raise reply
        return reply

    def flush(self) -> None:
        """Send everything queued so far; returns once it is in Redis (or in the fallbacks)."""
        if not self._queue or self._pid != os.getpid():
            return
        with self._sending:
            batch = self._take()
            if not batch:
                return
            try:
                self.failover.run(lambda: self._send(batch, None), lambda: _fall_back(batch))
            except Exception:  # not a connection failure (those fall back above): keep the writes anyway
                _fall_back(batch)
                raise

    def close(self) -> None:
        """Send what is queued and stop the thread; later writes are sent at once."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self.flush()

    def _take(self) -> List[Tuple[Command, Fallback, float]]:
        batch = list(self._queue)
        for _ in batch:
            self._queue.popleft()
        return batch

    def _send(self, batch: List[Tuple[Command, Fallback, float]], command: Optional[Command]) -> Any:
        commands = [queued for queued, _, _ in batch] + ([command] if command is not None else [])
        if not commands:
            return None
        replies = self.connection.execute(commands)
        for queued, reply in zip(commands, replies[:len(batch)]):
            if isinstance(reply, Exception):
                log.error("Redis refused a queued %s: %s", queued[0], reply)
        return replies[-1] if command is not None else None

    def _run(self) -> None:
        # Under load every claim empties the queue, so waking the thread for each new write would cost a
        # thread switch per push: it looks every ``linger`` seconds instead, and waits to be woken only
        # after a quiet second.
        while True:
            with self._ready:
                if not self._queue and time.monotonic() - self._last_submit > 1.0 and not self._closed:
                    self._idle = True
                    self._ready.wait()
                    self._idle = False
                else:
                    self._ready.wait(self.linger)
                if self._closed:
                    return
                due = bool(self._queue) and time.monotonic() - self._queue[0][2] >= self.linger
            if due:
                try:
                    self.flush()
                except Exception:  # never let the sender die: later writes must still go out
                    log.exception("sending queued Redis writes failed")


def _readable(sock: socket.socket) -> Callable[[], bool]:
    """Whether ``sock`` has something to read; for an idle connection that means the server closed it
    (it has nothing else to say unasked)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return lambda: bool(poller.poll(0))
    return lambda: bool(select.select([sock], [], [], 0)[0])


def _fall_back(batch: List[Tuple[Command, Fallback, float]]) -> None:
    for _, fallback, _ in batch:
        fallback()


_open: "weakref.WeakSet[WriteBehind]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_open):
        try:
            writer.close()
        except Exception:  # exiting: report, do not raise
            log.exception("sending queued Redis writes at exit failed")
