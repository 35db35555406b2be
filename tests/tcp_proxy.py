"""A TCP proxy on 127.0.0.1 that the tests can cut, to take a database away for real."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`.

        Every socket is shut down before any is closed: a pump woken by a shutdown
        closes the other socket of its pair, and a socket closed while another thread
        is blocked reading it stays open in the kernel, so its peer would never learn
        of the cut. Duplicates are shut down, which reaches the connection whoever
        closed its socket first."""
        self._cut.set()
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
            dups = []
            for s in sockets:
                with contextlib.suppress(OSError):
                    dups.append(s.dup())
        for d in dups:
            with contextlib.suppress(OSError):
                d.shutdown(socket.SHUT_RDWR)
        for s in [*dups, *sockets]:
            with contextlib.suppress(OSError):
                s.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._cut.is_set():  # cut while connecting: it must not outlive the cut
                    for s in (client, upstream):
                        s.close()
                    continue
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()
