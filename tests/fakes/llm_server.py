"""A loopback stand-in for the OpenAI and Anthropic HTTP APIs, for tests with the real clients.

    with FakeLLMServer() as srv:
        oa = openai.OpenAI(base_url=srv.openai_base_url, api_key="test", max_retries=0)
        an = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="test", max_retries=0)

Routes (request bodies are recorded in ``srv.requests``):

    POST /v1/chat/completions   chat.completion, or SSE chat.completion.chunk stream
                                (usage on a last chunk with empty choices when
                                stream_options.include_usage is true; then [DONE])
    POST /v1/responses          response, or SSE response.created ... response.completed
    POST /v1/embeddings         list of embeddings with usage
    POST /v1/messages           Anthropic message, or SSE message_start, content_block_*,
                                ping, message_delta (cumulative usage), message_stop

The usage a route reports is ``srv.usage[route]``, a dict in the vendor's own
shape (the defaults below carry cached and reasoning tokens). The model echoed
is ``srv.model_override[route]`` if set, else the request's model with a
snapshot suffix (as the vendors do: ``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``).
``srv.fail_next(status, n)`` makes the next n requests fail with that status.
``srv.delay`` sleeps before answering. Only 127.0.0.1 is ever bound.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Vendor-shaped usage, as the APIs document it.
OPENAI_CHAT_USAGE = {
    "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
}
OPENAI_RESPONSES_USAGE = {
    "input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1500},
    "output_tokens": 900, "output_tokens_details": {"reasoning_tokens": 600}, "total_tokens": 2900,
}
OPENAI_EMBEDDINGS_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
ANTHROPIC_USAGE = {       # cache writes: 1500 with the default 5-minute TTL, 500 with ttl "1h"
    "input_tokens": 50, "output_tokens": 400,
    "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 10000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},
}

SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "o4-mini": "o4-mini-2025-04-16",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}


class FakeLLMServer:
    def __init__(self, port: int = 0):
        self.usage = {"chat": copy.deepcopy(OPENAI_CHAT_USAGE), "responses": copy.deepcopy(OPENAI_RESPONSES_USAGE),
                      "embeddings": copy.deepcopy(OPENAI_EMBEDDINGS_USAGE), "messages": copy.deepcopy(ANTHROPIC_USAGE)}
        self.model_override: dict[str, str] = {}
        self.requests: list[tuple[str, dict]] = []
        self.delay = 0.0
        self._fail: list[int] = []
        self._lock = threading.Lock()
        srv = self

        class Handler(_Handler):
            server_state = srv

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.openai_base_url = self.url + "/v1"
        self.anthropic_base_url = self.url
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def fail_next(self, status: int, n: int = 1) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._fail.pop(0) if self._fail else None

    def model_for(self, route: str, requested: str | None) -> str:
        if route in self.model_override:
            return self.model_override[route]
        return SNAPSHOTS.get(requested or "", requested or "unknown")


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _json(self, status: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _sse(self, events: list[tuple[str | None, object]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in events:
            chunk = ""
            if name:
                chunk += f"event: {name}\n"
            chunk += "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n"
            try:
                self.wfile.write(chunk.encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
        self.close_connection = True

    def do_POST(self):  # noqa: N802
        st = self.server_state
        n = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(n) or b"{}")
        path = self.path.split("?")[0]
        st.requests.append((path, req))
        if st.delay:
            time.sleep(st.delay)
        fail = st._take_failure()
        if fail is not None:
            if path == "/v1/messages":
                return self._json(fail, {"type": "error", "error": {"type": "api_error", "message": "injected"}})
            return self._json(fail, {"error": {"message": "injected failure", "type": "server_error",
                                               "param": None, "code": None}})
        route = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/embeddings": "embeddings",
                 "/v1/messages": "messages"}.get(path)
        if route is None:
            return self._json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
        model = st.model_for(route, req.get("model"))
        usage = copy.deepcopy(st.usage[route])
        getattr(self, "_" + route)(req, model, usage)

    # ---- OpenAI ---------------------------------------------------------------------------------

    def _chat(self, req, model, usage):
        created = int(time.time())
        cid = "chatcmpl-fake123"
        if not req.get("stream"):
            return self._json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fake"})
        include = bool((req.get("stream_options") or {}).get("include_usage"))
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake"}
        events = []
        for i, piece in enumerate(["", "Hel", "lo", " there."]):
            delta = {"role": "assistant", "content": ""} if i == 0 else {"content": piece}
            ev = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
            if include:
                ev["usage"] = None
            events.append((None, ev))
        ev = dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include:
            ev["usage"] = None
        events.append((None, ev))
        if include:
            events.append((None, dict(base, choices=[], usage=usage)))
        events.append((None, "[DONE]"))
        self._sse(events)

    def _responses(self, req, model, usage):
        created = int(time.time())
        msg = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}]}
        resp = {"id": "resp_fake", "object": "response", "created_at": created, "status": "completed",
                "model": model, "output": [msg], "usage": usage, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
                "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}}
        if not req.get("stream"):
            return self._json(200, resp)
        early = dict(resp, status="in_progress", output=[], usage=None)
        seq = iter(range(100))
        events = [
            ("response.created", {"type": "response.created", "sequence_number": next(seq), "response": early}),
            ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": early}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": next(seq),
                                            "item_id": "msg_fake", "output_index": 0, "content_index": 0,
                                            "delta": "Hello there.", "logprobs": []}),
            ("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": resp}),
        ]
        self._sse(events)

    def _embeddings(self, req, model, usage):
        inputs = req.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        self._json(200, {"object": "list", "model": model, "usage": usage,
                         "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)]})

    # ---- Anthropic --------------------------------------------------------------------------------

    def _messages(self, req, model, usage):
        mid = "msg_01Fake"
        if not req.get("stream"):
            return self._json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                    "content": [{"type": "text", "text": "Hello there."}],
                                    "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
        start_usage["output_tokens"] = 1
        events = [
            ("message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Hello"}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": " there."}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": usage["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._sse(events)
