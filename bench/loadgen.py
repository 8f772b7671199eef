"""A small, bounded HTTP load generator for the benchmarks: loopback only, a fixed set of requests.

:func:`run_load` forks ``concurrency`` client processes. Each takes the next pre-built request (raw HTTP
bytes: request line, headers, body) from a shared counter, sends it and reads the whole answer, reusing its
connection when the server keeps it open and opening a new one when the server closes it (gunicorn's sync
worker closes after every response), until every request has been sent or the deadline has passed.
:func:`run_schedule` is the open-loop form: each request leaves at a set time whatever the server does
(paced load, WeChat's retries, a server stalled by a fault).
Nothing is signed, encrypted or checked on the timed path: that all happens before and after.
"""
from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["LoadResult", "Outcome", "build_request", "run_load", "run_schedule"]

HOST = "127.0.0.1"  # the only address this generator ever connects to


@dataclass(frozen=True)
class Outcome:
    index: int
    status: int  # 0: no HTTP answer (connection error, timeout)
    started: float  # time.perf_counter() (CLOCK_MONOTONIC: comparable across processes)
    finished: float
    body: bytes
    error: str = ""


@dataclass(frozen=True)
class LoadResult:
    outcomes: List[Outcome]
    elapsed: float  # first request sent → last answer read
    connections: int  # TCP connections opened, all clients together
    client_cpu: float = 0.0  # CPU seconds the client processes used while sending

    @property
    def rate(self) -> float:
        return len(self.outcomes) / self.elapsed if self.elapsed > 0 else 0.0


def build_request(port: int, target: str, body: bytes, method: str = "POST") -> bytes:
    """The raw bytes of one HTTP/1.1 request to 127.0.0.1:``port`` (asking for keep-alive)."""
    head = (f"{method} {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: kf-bench\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode("ascii") + body


class _Connection:
    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None
        self.buffer = b""
        self.opened = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""

    def exchange(self, request: bytes) -> Tuple[int, bytes]:
        """Send one request and read its answer: (status, body)."""
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.opened += 1
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        close = headers.get("connection") == "close" or lines[0].startswith("HTTP/1.0")
        if "transfer-encoding" in headers:
            raise ValueError(f"unexpected Transfer-Encoding: {headers['transfer-encoding']}")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        else:  # no length: the body runs to the end of the connection
            while self._fill(eof_ok=True):
                pass
            body, close = self.buffer, True
        if close:
            self.close()
        return status, body

    def _fill(self, eof_ok: bool = False) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            if eof_ok:
                return False
            raise ConnectionError("the server closed the connection before the answer was complete")
        self.buffer += chunk
        return True


def _client(requests: Sequence[bytes], port: int, counter, lock, start, deadline: float, timeout: float,
            results) -> None:
    # Ctrl-C and SIGTERM are the parent's business: it stops the clients itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    outcomes: List[Outcome] = []
    connection = _Connection(port, timeout)
    start.wait()
    cpu_before = time.process_time()
    clock = time.perf_counter
    while True:
        with lock:
            index = counter.value
            counter.value += 1
        if index >= len(requests) or clock() > deadline:
            break
        started = clock()
        try:
            status, body = connection.exchange(requests[index])
            error = ""
        except (OSError, ValueError) as exc:
            status, body, error = 0, b"", f"{type(exc).__name__}: {exc}"
            connection.close()
        outcomes.append(Outcome(index, status, started, clock(), body, error))
    connection.close()
    results.put((outcomes, connection.opened, time.process_time() - cpu_before))


def run_load(requests: Sequence[bytes], port: int, concurrency: int = 2, time_limit: float = 120.0,
             timeout: float = 10.0) -> LoadResult:
    """Send every request in ``requests`` to 127.0.0.1:``port`` from ``concurrency`` processes.

    Stops by itself after ``time_limit`` seconds even if requests remain (they are then missing from the
    outcomes); each request gives up after ``timeout`` seconds.
    """
    context = multiprocessing.get_context("fork")  # the requests reach the clients without pickling
    counter = context.Value("l", 0, lock=False)
    lock = context.Lock()
    start = context.Event()
    results = context.Queue()
    deadline = time.perf_counter() + time_limit
    clients = [context.Process(target=_client, args=(requests, port, counter, lock, start, deadline, timeout,
                                                     results), daemon=True) for _ in range(concurrency)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.05)  # let every client reach start.wait()
        start.set()
        outcomes: List[Outcome] = []
        opened = 0
        cpu = 0.0
        for _ in clients:
            part, count, used = results.get(timeout=time_limit + timeout + 30)
            outcomes.extend(part)
            opened += count
            cpu += used
        for client in clients:
            client.join(timeout=10)
    finally:
        for client in clients:
            if client.is_alive():
                client.kill()
                client.join(timeout=5)
    outcomes.sort(key=lambda o: o.index)
    elapsed = (max(o.finished for o in outcomes) - min(o.started for o in outcomes)) if outcomes else 0.0
    return LoadResult(outcomes, elapsed, opened, cpu)


# -- open loop: requests sent at set times, whatever the answers ---------------------------------------------

def run_schedule(schedule: Sequence[Tuple[float, bytes]], port: int, timeout: float = 10.0,
                 on_start=None) -> LoadResult:
    """Send each ``(offset seconds, request)`` of ``schedule`` at its offset from now, each on a connection of its own.

    Open loop (as WeChat sends): a request leaves at its time even while earlier ones are unanswered, so a
    stalled server builds a queue instead of slowing the sender down. ``on_start(loop, t0)``: called once
    the clock starts (e.g. to schedule faults on the same loop; ``t0`` is ``loop.time()`` at offset 0).
    Outcome indices are positions in ``schedule``. Runs in this process (asyncio); bounded by the schedule
    and ``timeout`` per request.
    """
    import asyncio

    async def exchange(index: int, request: bytes) -> Outcome:
        started = time.perf_counter()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
            return Outcome(index, status, started, time.perf_counter(), body)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            return Outcome(index, 0, started, time.perf_counter(), b"", f"{type(exc).__name__}: {exc}")
        finally:
            if writer is not None:
                writer.close()

    async def send_all() -> List[Outcome]:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        if on_start is not None:
            on_start(loop, t0)
        tasks = []
        for index, (offset, request) in sorted(enumerate(schedule), key=lambda item: item[1][0]):
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(exchange(index, request)))
        return list(await asyncio.gather(*tasks))

    cpu = time.process_time()
    outcomes = sorted(asyncio.run(send_all()), key=lambda o: o.index)
    elapsed = (max(o.finished for o in outcomes) - min(o.started for o in outcomes)) if outcomes else 0.0
    return LoadResult(outcomes, elapsed, len(outcomes), time.process_time() - cpu)
