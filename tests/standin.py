"""Stand-in OpenAI-compatible servers on loopback, playing the vLLM Services in integration tests.

Each answers what vLLM 0.33 serves on its API port: `GET /health`, `GET /v1/models` (the served
name) and `POST /v1/chat/completions`. A guard stand-in answers like Llama Guard 3: `safe`, or
`unsafe\\nS1` when the conversation it is asked about contains the word "unsafe". Every request is recorded, so a
test can prove which stand-in a call was routed to.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UNSAFE_WORD = "unsafe"


@dataclass
class StandIn:
    served_name: str
    guard: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    fail_with: int | None = None
    """Answer every request with this HTTP status (a broken server)."""
    delay: float = 0.0
    """Seconds to wait before answering (a slow server)."""
    size_vram: int = 0
    """What an Ollama stand-in reports in /api/ps."""
    kv_usage: float = 0.0
    """What a vLLM stand-in reports as vllm:kv_cache_usage_perc."""
    api_key: str | None = None
    """Like vLLM with VLLM_API_KEY: `/v1/...` needs `Authorization: Bearer <key>` (401 otherwise); /health, /metrics stay open."""

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, body: dict[str, Any]) -> str:
        if not self.guard:
            return f"answer from {self.served_name}"
        text = json.dumps(body.get("messages", []))
        # Llama Stack's guard prompt lists the categories, then the conversation between these markers.
        if "<BEGIN CONVERSATION>" in text:
            text = text.split("<BEGIN CONVERSATION>", 1)[1].split("<END CONVERSATION>", 1)[0]
        return "unsafe\nS1" if UNSAFE_WORD in text.lower() else "safe"

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chunks: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()

            def _broken(self) -> bool:
                time.sleep(stand_in.delay)
                if stand_in.api_key and self.path.startswith("/v1") and \
                        self.headers.get("Authorization") != f"Bearer {stand_in.api_key}":
                    self._send(401, {"error": "Unauthorized"})  # vLLM 0.33 serve/middleware/authenticate.py
                    return True
                if stand_in.fail_with:
                    self._send(stand_in.fail_with, {"error": {"message": "stand-in failure"}})
                    return True
                return False

            def do_GET(self) -> None:
                stand_in.requests.append({"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")})
                if self._broken():
                    return
                if self.path in ("/health", "/v1/health"):
                    self._send(200, {})
                elif self.path == "/api/ps":  # Ollama: the loaded model and its VRAM
                    self._send(200, {"models": [{"name": stand_in.served_name, "size_vram": stand_in.size_vram}]})
                elif self.path == "/metrics":  # vLLM's Prometheus text
                    data = (f'vllm:kv_cache_usage_perc{{engine="0",model_name="{stand_in.served_name}"}} {stand_in.kv_usage}\n').encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": stand_in.served_name, "object": "model", "created": 0, "owned_by": "vllm"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stand_in.requests.append({"method": "POST", "path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self._broken():
                    return
                if self.path == "/api/generate":  # Ollama: NDJSON stream
                    words = stand_in.reply(body).split()
                    self._stream([json.dumps({"model": body.get("model"), "response": w + " ", "done": False}).encode() + b"\n"
                                  for w in words] + [json.dumps({"done": True}).encode() + b"\n"])
                    return
                if self.path == "/v1/safety/run-shield":
                    self._send(200, {"violation": None})
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if body.get("model") != stand_in.served_name:
                    self._send(404, {"error": {"message": f"model {body.get('model')!r} does not exist"}})
                    return
                if body.get("stream"):
                    self._stream([b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": w + " "}}]}).encode() + b"\n\n"
                                  for w in stand_in.reply(body).split()] + [b"data: [DONE]\n\n"])
                    return
                self._send(200, {
                    "id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                    "model": stand_in.served_name,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": stand_in.reply(body)}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def chat_models(self) -> list[str]:
        return [r["body"].get("model") for r in self.requests if r["path"] == "/v1/chat/completions"]
