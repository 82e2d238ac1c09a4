"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the
backend, extension, merging and augmentation tests."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Tuple

#: (request JSON, request number) -> (status, extra headers, payload, delay in s)
Behaviour = Callable[[Dict[str, Any], int], Tuple[int, Dict[str, str], Any, float]]


def extend_config(concurrency: int, cache: str = "null", api_key_env: str = "") -> str:
    """A ``knowfree extend -c`` config with one llm component (``llm_ent``,
    ExtensionEntities.v1) on an OpenAI-compatible server at ``${vars.endpoint}``,
    caching its replies at ``${paths.cache}``.

    concurrency (int): the default of ``${vars.concurrency}``.
    cache (str): the default of ``${paths.cache}``, as config text (``null``
        or a quoted path).
    api_key_env (str): the model's ``api_key_env`` as config text; "": not set.
    """
    key_line = f"api_key_env = {api_key_env}\n" if api_key_env else ""
    return f"""
[paths]
cache = {cache}

[vars]
endpoint = "http://127.0.0.1:9/v1/chat/completions"
concurrency = {concurrency}

[nlp]
lang = "zh"
pipeline = ["llm_ent"]

[components]

[components.llm_ent]
factory = "llm"
save_io = false

[components.llm_ent.task]
@llm_tasks = "spacy-knowfree.ExtensionEntities.v1"
lang = "zh"

[components.llm_ent.model]
@llm_models = "spacy-knowfree.OpenAICompatible.v1"
endpoint = ${{vars.endpoint}}
model = "test-model"
{key_line}concurrency = ${{vars.concurrency}}
timeout = 30
max_retries = 1
backoff = 0.01

[components.llm_ent.model.cache]
@llm_misc = "spacy-knowfree.ResponseCache.v1"
path = ${{paths.cache}}
"""


def reply_body(text: str, finish_reason: str = "stop") -> Dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
    }


def echo(request: Dict[str, Any], n: int) -> Tuple[int, Dict[str, str], Any, float]:
    """Default behaviour: reply 'R:' + the user prompt."""
    return 200, {}, reply_body("R:" + request["messages"][-1]["content"]), 0.0


def answering(answer: Callable[[str], str]) -> Behaviour:
    """Behaviour replying ``answer(user prompt)``."""
    return lambda request, n: (200, {}, reply_body(answer(request["messages"][-1]["content"])), 0.0)


class ChatServer:
    """A real HTTP server on 127.0.0.1 with a scriptable chat-completions route;
    ``requests`` records every request (path, headers, JSON body, time)."""

    def __init__(self, behaviour: Behaviour = echo):
        self.behaviour: Behaviour = behaviour
        self.requests: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf8"))
                with server.lock:
                    n = len(server.requests)
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": body, "time": time.monotonic()}
                    )
                status, headers, payload, delay = server.behaviour(body, n)
                if delay:
                    time.sleep(delay)
                data = payload.encode("utf8") if isinstance(payload, str) else json.dumps(payload).encode("utf8")
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def prompts(self) -> List[str]:
        return [r["json"]["messages"][-1]["content"] for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
