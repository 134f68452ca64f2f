"""A local stand-in for the Anthropic Messages API, so the judge's real SDK code runs in tests.

It is a real HTTP server on 127.0.0.1 (free port, one thread per request) that answers
``POST /v1/messages`` in the API's JSON shape, records every request, can be scripted to fail
the first N requests with 429/529/5xx (API error JSON plus ``retry-after``), and picks its
verdict from the request text, so tests can observe position swaps and the mapping back.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = "EXCELLENT"
DEFAULT_CRITERIA = ("engagement", "relevance", "creativity", "naturalness")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class RecordedRequest:
    """One request as the stub received it: path, headers (lower-case names) and JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def text(self) -> str:
        """The text of all user-message content, concatenated (what the judge model would read)."""
        parts: list[str] = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(b.get("text", "") for b in content if isinstance(b, dict))
        return "\n".join(parts)

    def shown(self) -> tuple[str, str]:
        """The two answers in the order the judge prompt shows them (``<response_1>``, ``_2``)."""
        return extract_response(self.text, 1), extract_response(self.text, 2)


def extract_response(text: str, position: int) -> str:
    """The content of ``<response_{position}>`` in a judge prompt ('' when absent)."""
    m = re.search(rf"<response_{position}>\n?(.*?)\n?</response_{position}>", text, re.DOTALL)
    return m.group(1) if m else ""


def marker_responder(
    marker: str = MARKER, criteria: Sequence[str] = DEFAULT_CRITERIA
) -> Callable[[RecordedRequest], str]:
    """A verdict rule: the shown answer containing ``marker`` wins every criterion.

    Both or neither containing it is a tie. The reply is the strict JSON the judge asks for,
    with positions ("1"/"2"), so a correct judge must map it back through its own swap.
    """

    def respond(req: RecordedRequest) -> str:
        first, second = req.shown()
        has1, has2 = marker in first, marker in second
        verdict = "1" if has1 and not has2 else "2" if has2 and not has1 else "tie"
        return json.dumps({c: verdict for c in criteria})

    return respond


@dataclass
class StubAnthropic:
    """The stub server; use as a context manager, point the client at ``url``.

    ``fail_first`` requests are answered with ``fail_status`` (429 by default) and the API's
    error body, with a ``retry-after: {retry_after}`` header; later ones get a 200 message
    whose text ``responder`` builds from the request.
    """

    responder: Callable[[RecordedRequest], str] = field(default_factory=marker_responder)
    fail_first: int = 0
    fail_status: int = 429
    retry_after: str | None = "0"
    output_tokens: int | None = None  # overrides the reported usage.output_tokens
    requests: list[RecordedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for ``Anthropic(base_url=...)``."""
        assert self._server is not None, "stub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StubAnthropic:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = RecordedRequest(path=self.path, headers=headers, body=body)
                with stub._lock:
                    stub.requests.append(req)
                    n = len(stub.requests)
                if self.path.split("?")[0] != "/v1/messages":
                    self._send_error(404, "Not found", {})
                elif n <= stub.fail_first:
                    extra = {} if stub.retry_after is None else {"retry-after": stub.retry_after}
                    self._send_error(stub.fail_status, "Stub: scripted failure", extra)
                else:
                    self._send_message(req, n)

            def _send(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                with stub._lock:
                    stub.statuses.append(status)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_stub_{len(stub.statuses)}")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _send_error(self, status: int, message: str, extra: dict[str, str]) -> None:
                err_type = _ERROR_TYPES.get(status, "api_error")
                payload = {"type": "error", "error": {"type": err_type, "message": message}}
                self._send(status, payload, extra)

            def _send_message(self, req: RecordedRequest, n: int) -> None:
                text = stub.responder(req)
                payload = {
                    "id": f"msg_stub_{n}",
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}],
                    "model": req.body.get("model", "stub"),
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": max(1, len(req.text) // 4),
                        "output_tokens": stub.output_tokens or max(1, len(text) // 4),
                    },
                }
                self._send(200, payload, {})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
