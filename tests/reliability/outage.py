"""A TCP proxy in front of the S3 server that can cut the network and bring it back.

The job talks to the real SeaweedFS through this proxy. ``cut()`` closes the listening port (new
connections are refused, as with a server that is down) and drops every open connection in the
middle of whatever request it carries; ``start()`` listens on the same port again. Unlike
killing and restarting SeaweedFS (13-25 s to take writes again on a loaded machine), the outage
lasts exactly as long as the test says, so it can be made shorter or longer than the retry budget.

The proxy runs in a process of its own: delta-rs (the statistics table's writer) keeps the GIL of
the process that calls it while it waits on the network, so a proxy thread inside the test's
process (where an in-process job's driver opens the table) would never get to forward the bytes.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import socket
import struct
import threading

from infra.local.services import LOOPBACK, free_port


class TcpProxy:
    """The proxy, driven from the test's process: `start`, `cut`, and the counts of the serving process."""

    def __init__(self, target_host: str, target_port: int):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        context = multiprocessing.get_context("spawn")
        self._commands, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(target_host, target_port, self.port, theirs),
                                        daemon=True, name="tcp-proxy")
        self._process.start()

    def _ask(self, command: str) -> dict[str, int]:
        self._commands.send(command)
        return self._commands.recv()

    def start(self) -> TcpProxy:
        """Listen on ``self.port``; after `cut`, this restores the network (a no-op while listening)."""
        self._ask("start")
        return self

    def cut(self) -> None:
        """Refuse new connections and drop the open ones, until `start` is called again."""
        self._ask("cut")

    @property
    def connections(self) -> int:
        return self._ask("counts")["connections"]

    @property
    def dropped(self) -> int:
        return self._ask("counts")["dropped"]

    def close(self) -> None:
        """Cut and end the serving process."""
        with contextlib.suppress(OSError, EOFError):
            self._ask("cut")
        self._process.kill()
        self._process.join(timeout=10)


def _serve(target_host: str, target_port: int, port: int, commands) -> None:
    """The serving process: carry out the test's commands on a `_Proxy` until the pipe closes."""
    proxy = _Proxy(target_host, target_port, port)
    while True:
        try:
            command = commands.recv()
        except EOFError:
            proxy.cut()
            return
        {"start": proxy.start, "cut": proxy.cut, "counts": lambda: None}[command]()
        commands.send({"connections": proxy.connections, "dropped": proxy.dropped})


class _Proxy:
    def __init__(self, target_host: str, target_port: int, port: int):
        self.target = (target_host, target_port)
        self.port = port
        self.connections = 0  # accepted so far
        self.dropped = 0  # open connections cut in the middle by `cut`
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> _Proxy:
        if self._listener is not None:
            return self
        listener = socket.create_server((LOOPBACK, self.port), backlog=128)  # sets SO_REUSEADDR
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()
        return self

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            victims, self._open = self._open, set()
            self.dropped += len(victims) // 2  # two sockets per connection
        for sock in victims:
            with contextlib.suppress(OSError):  # a pump may have closed it meanwhile
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by `cut`
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._open |= {client, upstream}
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open -= {source, sink}
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    """Close ``sock``, first waking any thread blocked on it (``close`` alone does not, on Linux)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
