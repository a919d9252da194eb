"""A TCP forwarder a test can cut and restore: "the database is unreachable" without touching the
shared PostgreSQL server."""
from __future__ import annotations

import socket
import struct
import threading


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, bind_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((bind_host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Close every forwarded connection and refuse new ones until `restore`."""
        self.open.clear()
        with self._lock:
            for s in self._sockets:
                _reset(s)
            self._sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if not self.open.is_set():  # cut while this one was connecting: it would escape the cut
                    _reset(client)
                    _reset(upstream)
                    continue
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Shut down, not only close: the other direction's thread is blocked in recv() on one of these, and
            # on Linux close() neither wakes it nor releases the socket while it waits, so the connection to the
            # server stayed open with nobody behind it (Redis then handed a queued job to a vanished worker's
            # pending BLPOP).
            for s in (src, dst):
                _reset(s)


def _reset(s: socket.socket) -> None:
    """End a forwarded connection now: a reset, not a polite FIN (a server may not read a client it holds
    blocked), and a shutdown first, which wakes a thread blocked on the socket so the socket is released."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down or closed by the other direction
    try:
        s.close()
    except OSError:
        pass
