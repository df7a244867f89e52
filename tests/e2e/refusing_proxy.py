"""An HTTP proxy on 127.0.0.1 that refuses every request and records where it was going.

The deploy cycle hands it to the CDK CLI and bloomctl as HTTP_PROXY and HTTPS_PROXY, with NO_PROXY set to
127.0.0.1 and localhost. Calls to moto_server go straight through. A call to any other host (CDK notices,
telemetry, a real AWS endpoint) reaches this proxy instead, fails, and is recorded in ``requests``.
"""

import socket
import threading

HOST = "127.0.0.1"
FIRST_LINE_BYTES = 512


class RefusingProxy:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self._socket = socket.create_server((HOST, 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="refusing-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._socket.getsockname()[1]}"

    def __enter__(self) -> "RefusingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    first_line = connection.recv(FIRST_LINE_BYTES).split(b"\r\n", 1)[0]
                except OSError:
                    first_line = b"<no request line>"
                self.requests.append(first_line.decode("latin-1"))
