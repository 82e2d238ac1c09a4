"""Robustness of the LLM side under faults: a fault-injecting chat server on
127.0.0.1 (cut-off bodies, resets, lone surrogates, huge, filtered and empty
replies, 401 with a message, HTML with status 200, 400 for one prompt, a slow
server plus SIGINT), a cache path pointing at data, two processes on one
cache, credentials in the URL. No address other than 127.0.0.1 is contacted.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_knowfree.cli import app
from spacy_knowfree.llm.cache import ResponseCache, lock_path, shared_response_cache
from spacy_knowfree.llm.models.openai_compatible import BackendRequestError, OpenAICompatibleModel

from _chat_server import extend_config

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("only_localhost")

#: (prompt, request number) -> action: ("json", status, payload[, delay]), ("raw", status, bytes,
#: content type), ("cut", payload), ("reset",), ("hang",)
Action = Tuple[Any, ...]


def chat(content: Optional[str], finish: str = "stop") -> Dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]}


class FaultServer:
    """A chat-completions server on 127.0.0.1 whose replies are scripted per
    request; ``completed`` lists the prompts whose reply was sent in full."""

    def __init__(self, behaviour: Callable[[str, int], Action]):
        self.behaviour = behaviour
        self.prompts: List[str] = []
        self.completed: List[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with server.lock:
                    n = len(server.prompts)
                    server.prompts.append(prompt)
                action = server.behaviour(prompt, n)
                try:
                    self._act(action, prompt)
                except OSError:
                    pass

            def _send(
                self, status: int, data: bytes, ctype: str = "application/json", length: Optional[int] = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def _act(self, action: Action, prompt: str) -> None:
                kind = action[0]
                if kind == "hang":
                    server.release.wait(60)
                    self.close_connection = True
                    return
                if kind == "reset":  # RST instead of a reply
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if kind == "cut":  # announce the full body, send half, close
                    data = json.dumps(action[1]).encode("utf8")
                    self._send(200, data[: len(data) // 2], length=len(data))
                    self.close_connection = True
                    return
                if kind == "raw":
                    self._send(action[1], action[2], action[3])
                else:
                    if len(action) > 3 and action[3]:
                        time.sleep(action[3])
                    self._send(action[1], json.dumps(action[2]).encode("utf8"))
                with server.lock:
                    server.completed.append(prompt)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: List[FaultServer] = []

    def start(behaviour: Callable[[str, int], Action]) -> FaultServer:
        servers.append(FaultServer(behaviour))
        return servers[-1]

    yield start
    for srv in servers:
        srv.close()


def echo(prompt: str, n: int) -> Action:
    return ("json", 200, chat("R:" + prompt))


def make_model(url: str, **kwargs: Any) -> OpenAICompatibleModel:
    settings = {"backoff": 0.01, "timeout": 5.0, "max_retries": 3}
    settings.update(kwargs)
    return OpenAICompatibleModel(url, "test-model", **settings)


def records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- network faults
@pytest.mark.parametrize("fault", ["cut", "reset"])
def test_cut_off_bodies_and_resets_are_retried(serve, tmp_path, fault):
    def behaviour(prompt: str, n: int) -> Action:
        if n < 2:
            return ("cut", chat("R:" + prompt * 50)) if fault == "cut" else ("reset",)
        return echo(prompt, n)

    srv = serve(behaviour)
    cache = ResponseCache(tmp_path / "c.jsonl")
    replies = make_model(srv.url, cache=cache, concurrency=1)([["a"], ["b"]])
    assert [list(r) for r in replies] == [["R:a"], ["R:b"]]
    assert srv.prompts == ["a", "a", "a", "b"]  # two faults, then the retry succeeded
    assert sorted(r["response"] for r in records(cache.path)) == ["R:a", "R:b"]


def test_lone_surrogates_are_stored_and_read_back(serve, tmp_path):
    body = b'{"choices": [{"message": {"content": "x\\udc80y\\ud800"}, "finish_reason": "stop"}]}'
    srv = serve(lambda prompt, n: ("raw", 200, body, "application/json"))
    path = tmp_path / "c.jsonl"
    model = make_model(srv.url, cache=ResponseCache(path), concurrency=4)
    replies = model([[f"p{i}"] for i in range(8)])
    assert [list(r) for r in replies] == [["x\ufffdy\ufffd"]] * 8  # safe for spaCy
    assert len(records(path)) == 8  # every reply reached the (ASCII) cache file
    del model
    reopened = ResponseCache(path)
    assert {reopened.get(r["key"]) for r in records(path)} == {"x\udc80y\ud800"}  # stored as sent


def test_html_with_status_200_is_retried_then_reported(serve):
    page = b"<html><body><h1>Welcome to the web UI</h1></body></html>"
    srv = serve(lambda prompt, n: ("raw", 200, page, "text/html"))
    with pytest.raises(BackendRequestError) as info:
        make_model(srv.url, max_retries=2)([["q"]])
    assert len(srv.prompts) == 3
    assert "KF203" in str(info.value) and "Welcome to the web UI" in str(info.value)


def test_401_shows_the_server_message_and_is_not_retried(serve, monkeypatch):
    monkeypatch.setenv("KF_ROBUST_KEY", "sk-test-abcdefghijklmnop")
    srv = serve(lambda prompt, n: ("json", 401, {"error": {"message": "Invalid API key for project kf-7"}}))
    with pytest.raises(BackendRequestError) as info:
        make_model(srv.url, api_key_env="KF_ROBUST_KEY")([["q"]])
    message = str(info.value)
    assert "HTTP 401" in message and "Invalid API key for project kf-7" in message
    assert "api_key_env" in message and "sk-test-abcdefghijklmnop" not in message
    assert info.value.status == 401 and len(srv.prompts) == 1


# ----------------------------------------------------------------------------- bounds
def test_huge_replies_are_cut_and_recorded_too_long(serve, tmp_path):
    def behaviour(prompt: str, n: int) -> Action:
        size = 50_000 if prompt == "long" else 3_000_000  # the second one is over the body cap
        return ("json", 200, chat("字" * size))

    srv = serve(behaviour)
    path = tmp_path / "c.jsonl"
    model = make_model(srv.url, cache=ResponseCache(path), max_reply_chars=1000, concurrency=1)
    replies = model([["long"], ["huge"]])
    assert [list(r) for r in replies] == [["字" * 1000], ["字" * 1000]]
    assert [r.get("issue") for r in records(path)] == ["too_long", "too_long"]
    assert path.stat().st_size < 20_000  # bounded, not 3 MB of reply
    assert [d["reason"] for d in model.dropped] == ["too_long", "too_long"]


def test_the_cache_keeps_only_its_index_in_memory(tmp_path):
    path = tmp_path / "c.jsonl"
    writer = ResponseCache(path)
    for i in range(40):
        writer.put(f"k{i}", chr(0x4E00 + i) * 50_000)  # 40 replies of 300 KB on disk
    writer.close()
    tracemalloc.start()
    cache = ResponseCache(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert path.stat().st_size > 10_000_000
    assert peak < 2_000_000, f"reading a {path.stat().st_size} B cache took {peak} B"
    assert len(cache) == 40 and cache.get("k7") == chr(0x4E07) * 50_000


def test_one_cache_object_per_file_for_all_components(tmp_path):
    config = spacy.util.load_config(
        REPO_ROOT / "configs" / "extend_openai.cfg",
        interpolate=True,
        overrides={
            "paths.cache": str(tmp_path / "c.jsonl"),
            "vars.api_key_env": None,
            "vars.endpoint": "http://127.0.0.1:9/v1/chat/completions",
        },
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    caches = {id(nlp.get_pipe(name)._model.cache) for name in nlp.pipe_names}
    assert len(caches) == 1
    assert nlp.get_pipe("llm_seg")._model.cache is shared_response_cache(tmp_path / "c.jsonl")


# ----------------------------------------------------------------------------- dropped prompts
def test_filtered_and_empty_replies_are_dropped_and_retried_on_request(serve, tmp_path):
    asked: Dict[str, int] = {}

    def behaviour(prompt: str, n: int) -> Action:
        asked[prompt] = asked.get(prompt, 0) + 1
        if prompt == "FILTER":
            return ("json", 200, chat(None, "content_filter"))
        if prompt == "EMPTY" and asked[prompt] == 1:
            return ("json", 200, chat(None))
        if prompt == "LONGCTX":
            return ("json", 400, {"error": {"message": "This model's maximum context length is 4096 tokens"}})
        return echo(prompt, n)

    srv = serve(behaviour)
    path = tmp_path / "c.jsonl"
    model = make_model(srv.url, cache=ResponseCache(path), concurrency=2)
    with pytest.warns(UserWarning, match="KW204"):
        replies = model([["ok"], ["FILTER"], ["EMPTY"], ["LONGCTX"]])
    assert [list(r) for r in replies] == [["R:ok"], [""], [""], [""]]
    assert sorted((d["doc"], d["reason"]) for d in model.dropped) == [
        (1, "content_filter"),
        (2, "empty_reply"),
        (3, "context_length"),
    ]
    assert "maximum context length is 4096" in next(d["message"] for d in model.dropped if d["doc"] == 3)
    assert model.calls.dropped == 3
    del model
    # a rerun answers them from the cache (no call), --retry-failed asks them again
    before = len(srv.prompts)
    make_model(srv.url, cache=ResponseCache(path))([["ok"], ["FILTER"], ["EMPTY"], ["LONGCTX"]])
    assert len(srv.prompts) == before
    cache = ResponseCache(path)
    cache.retry_failed = True
    again = make_model(srv.url, cache=cache, concurrency=1)([["ok"], ["FILTER"], ["EMPTY"], ["LONGCTX"]])
    assert sorted(srv.prompts[before:]) == ["EMPTY", "FILTER", "LONGCTX"]
    assert list(again[2]) == ["R:EMPTY"]  # answered this time


def test_a_server_refusing_every_prompt_stops_the_run(serve):
    srv = serve(lambda prompt, n: ("json", 400, {"error": {"message": "unknown field 'sead'"}}))
    with pytest.raises(BackendRequestError) as info:
        make_model(srv.url, concurrency=1)([[f"p{i}"] for i in range(10)])
    assert "KF212" in str(info.value) and "unknown field 'sead'" in str(info.value)
    assert len(srv.prompts) == 3  # not all 10


def test_retry_failed_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "c.jsonl"
    writer = ResponseCache(path)
    writer.put("k1", "", issue="http_400", message="HTTP 400: no")
    writer.put("k2", "fine")
    writer.close()
    assert ResponseCache(path).lookup("k1").issue == "http_400"
    monkeypatch.setenv("KNOWFREE_RETRY_FAILED", "1")
    cache = ResponseCache(path)
    assert cache.retry_failed and cache.get("k1") is None and cache.get("k2") == "fine"


EXTEND_CONFIG = extend_config(2)
TEXTS = ["张三在北京工作。", "这句话不好。", "李四去了上海。", "今天天气很好。"]


def entity_server(prompt: str, n: int) -> Action:
    if "不好" in prompt:
        return ("json", 400, {"error": {"message": "prompt rejected by the content policy"}})
    found = [{"entity": name, "type": "人名"} for name in ("张三", "李四") if name in prompt]
    return ("json", 200, chat(json.dumps(found, ensure_ascii=False)))


def write_corpus(path: Path, texts: List[str]) -> None:
    nlp = spacy.blank("zh")
    DocBin(docs=[nlp(t) for t in texts]).to_disk(path)


def extend_args(tmp_path: Path, url: str, cache: Path, *more: str) -> List[str]:
    (tmp_path / "kb.cfg").write_text(EXTEND_CONFIG, encoding="utf8")
    return [
        "extend",
        str(tmp_path / "train.spacy"),
        str(tmp_path / "fused.spacy"),
        "-c",
        str(tmp_path / "kb.cfg"),
        "--vars.endpoint",
        url,
        "--paths.cache",
        str(cache),
        *more,
    ]


def test_a_400_for_one_prompt_is_dropped_listed_and_retried(serve, tmp_path):
    srv = serve(entity_server)
    write_corpus(tmp_path / "train.spacy", TEXTS)
    cache = tmp_path / "c.jsonl"
    first = runner.invoke(app, extend_args(tmp_path, srv.url, cache))
    assert first.exit_code == 0, first.output
    said = " ".join(first.output.split())
    assert "http_400" in said and "prompt rejected by the content policy" in said
    assert "1 (这句话不好。)" in said and "--retry-failed" in said
    assert len(srv.prompts) == 4 and (tmp_path / "fused.spacy").exists()
    fused = list(DocBin().from_disk(tmp_path / "fused.spacy").get_docs(spacy.blank("zh").vocab))
    assert [[s.text for s in d.spans["knowfree_ext"]] for d in fused] == [["张三"], [], ["李四"], []]

    rerun = runner.invoke(app, extend_args(tmp_path, srv.url, cache))
    assert rerun.exit_code == 0 and len(srv.prompts) == 4  # the refusal is not paid again
    assert "http_400" in rerun.output

    retried = runner.invoke(app, extend_args(tmp_path, srv.url, cache, "--retry-failed"))
    assert retried.exit_code == 0, retried.output
    assert len(srv.prompts) == 5 and "不好" in srv.prompts[-1]


@pytest.mark.parametrize("kind", ["jsonl", "spacy"])
def test_a_cache_path_pointing_to_data_is_refused(serve, tmp_path, kind):
    srv = serve(entity_server)
    write_corpus(tmp_path / "train.spacy", TEXTS)
    if kind == "jsonl":
        data = tmp_path / "train.jsonl"
        data.write_text(
            "".join(json.dumps({"text": t, "spans": []}, ensure_ascii=False) + "\n" for t in TEXTS), encoding="utf8"
        )
    else:
        data = tmp_path / "dev.spacy"
        write_corpus(data, TEXTS)
    before = data.read_bytes()
    result = runner.invoke(app, extend_args(tmp_path, srv.url, data))
    assert result.exit_code == 1 and "KF208" in result.output and "Traceback" not in result.output
    assert srv.prompts == [] and data.read_bytes() == before
    assert not lock_path(data).exists()


def test_unknown_vars_are_refused(serve, tmp_path):
    srv = serve(entity_server)
    write_corpus(tmp_path / "train.spacy", TEXTS)
    args = extend_args(tmp_path, srv.url, tmp_path / "c.jsonl")
    args[args.index("--vars.endpoint")] = "--vars.endpont"
    result = runner.invoke(app, args)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "KF211" in said and "--vars.endpont" in said and "--vars.endpoint" in said
    assert srv.prompts == []


# ----------------------------------------------------------------------------- URLs and credentials
@pytest.mark.parametrize(
    "url",
    ["http://", "http://127.0.0.1:99999/v1/chat/completions", "ftp://127.0.0.1/x", "http://127.0.0.1:8000/v1 chat"],
)
def test_invalid_urls_are_refused_when_the_model_is_built(url):
    with pytest.raises(ValueError, match="KF204"):
        OpenAICompatibleModel(url, "m")


def test_uppercase_scheme_is_accepted(serve):
    srv = serve(echo)
    upper = srv.url.replace("http://", "HTTP://")
    assert [list(r) for r in make_model(upper)([["q"]])] == [["R:q"]]


def test_credentials_never_reach_the_cache_or_messages(serve, tmp_path):
    srv = serve(lambda prompt, n: echo(prompt, n) if prompt != "FAIL" else ("json", 500, {"error": "x"}))
    secret_url = srv.url.replace("127.0.0.1", "alice:pw-s3cret@127.0.0.1") + "?key=q-s3cret"
    path = tmp_path / "c.jsonl"
    model = make_model(secret_url, cache=ResponseCache(path), max_retries=0)
    model([["a"]])
    with pytest.raises(BackendRequestError) as info:
        model([["FAIL"]])
    text = path.read_text(encoding="ascii") + str(info.value) + model.display_endpoint + model.backend_id
    assert "s3cret" not in text and "alice" not in text
    assert "***@127.0.0.1" in str(info.value)
    del model
    # the key holds the endpoint without credentials: the plain URL hits the same records
    before = len(srv.prompts)
    assert [list(r) for r in make_model(srv.url, cache=ResponseCache(path))([["a"]])] == [["R:a"]]
    assert len(srv.prompts) == before


def test_config_errors_do_not_echo_credentials(serve, tmp_path):
    srv = serve(entity_server)
    write_corpus(tmp_path / "train.spacy", TEXTS)
    secret_url = srv.url.replace("127.0.0.1", "bob:pw-s3cret@127.0.0.1") + "?key=q-s3cret"
    for value, expected in (("abc", "***@127.0.0.1"), ("0", "KF204")):  # a config error echoes the block
        result = runner.invoke(
            app, extend_args(tmp_path, secret_url, tmp_path / "c.jsonl", "--vars.concurrency", value)
        )
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "Traceback" not in said and expected in said
        assert "s3cret" not in said
    key = "sk-live-s3cretABCDEFGHIJKLMNOPQRSTUV"
    result = runner.invoke(
        app, extend_args(tmp_path, srv.url, tmp_path / "c.jsonl", "--components.llm_ent.model.api_key_env", key)
    )
    assert result.exit_code == 1 and "KF209" in result.output and "s3cret" not in result.output
    assert srv.prompts == []


@pytest.mark.parametrize(
    "value",
    ["sk-proj-abcdefghijklmnopqrstuvwx", "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI", "gsk_8fj3kLm92Qx7Zt0aPvR4wYbN6cDe"],
)
def test_a_key_given_as_api_key_env_is_refused_without_echo(serve, value):
    srv = serve(echo)
    with pytest.raises(ValueError) as info:
        make_model(srv.url, api_key_env=value)
    assert "KF209" in str(info.value) and value not in str(info.value)
    make_model(srv.url, api_key_env="MY_SERVER_API_KEY_2")  # a variable name is fine (warns: unset)


# ----------------------------------------------------------------------------- processes
_HOLD_SCRIPT = """
import sys, time
from spacy_knowfree.llm.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
print("ready", flush=True)
time.sleep(60)
"""


def _env() -> Dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(REPO_ROOT)}


def test_two_processes_on_one_cache_are_detected(tmp_path):
    path = tmp_path / "c.jsonl"
    script = tmp_path / "hold.py"
    script.write_text(_HOLD_SCRIPT, encoding="utf8")
    proc = subprocess.Popen([sys.executable, str(script), str(path)], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(ValueError) as info:
            ResponseCache(path)
        message = str(info.value)
        assert "KF210" in message and str(proc.pid) in message and "--paths.cache" in message
    finally:
        proc.kill()
        proc.wait(30)
    ResponseCache(path).put("k", "v")  # free again once the other process is gone


# `knowfree` as a terminal's Ctrl-C reaches it. A process started as a shell's
# background job without job control (`cmd &` in a script, as CI runners and
# `nohup ... &` do) has SIGINT ignored, its children inherit that, and Python
# then installs no KeyboardInterrupt handler: the SIGINT below would be lost.
CLI_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'knowfree'; from spacy_knowfree.cli import main; main()"
)


def test_sigint_exits_fast_and_keeps_every_finished_reply(serve, tmp_path):
    """30 docs, 4 requests in flight: 4 replies come fast, 2 more are slow
    (they finish during the grace period), the rest hang. SIGINT after the
    fast ones: the run exits within seconds, with every finished reply cached."""

    def behaviour(prompt: str, n: int) -> Action:
        if n < 4:
            return ("json", 200, chat("[]"), 0.05)
        if n < 6:
            return ("json", 200, chat("[]"), 1.0)
        return ("hang",)

    srv = serve(behaviour)
    texts = [f"第{i}句话在这里。" for i in range(30)]
    write_corpus(tmp_path / "train.spacy", texts)
    cache = tmp_path / "c.jsonl"
    args = extend_args(tmp_path, srv.url, cache, "--vars.concurrency", "4")
    # unbuffered, so nothing it printed is lost if it has to be killed; with
    # faulthandler, SIGABRT makes it print where every thread stands
    env = {**_env(), "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_WITH_CTRL_C, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(srv.prompts) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(srv.prompts) >= 8, proc.communicate(timeout=5)[0] if proc.poll() is not None else srv.prompts
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            alive = proc.poll() is None  # False: it exited, and a child of it holds the output pipe
            if alive:
                proc.send_signal(signal.SIGABRT)
            try:
                output, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired as err:
                output = err.output.decode("utf8", "replace") if isinstance(err.output, bytes) else str(err.output)
            # faulthandler's list of extension modules says nothing here and would push the stacks out
            shown = "\n".join(line for line in output.splitlines() if not line.startswith("Extension modules:"))
            pytest.fail(f"no exit 15 s after SIGINT (process alive: {alive}); its output and stacks:\n{shown[-20000:]}")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert took < 8, f"exit took {took:.1f} s after SIGINT"
    assert len(srv.completed) == 6 and len(srv.prompts) == 8  # no request started after SIGINT
    cached = records(cache)
    assert len(cached) == 6 and "Traceback" not in output
