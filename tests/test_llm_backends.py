"""LLM backends: the OpenAI-compatible client against a real local HTTP
server, the reply cache (including a run killed mid-way), and the cheap parts
of the local transformers backend. No address other than 127.0.0.1 is ever
contacted: an autouse fixture makes any other connection fail the test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest

from spacy_knowfree.llm.cache import ResponseCache, cache_key
from spacy_knowfree.llm.models.local_causal_lm import (
    CACHE_ENV,
    DEFAULT_GGUF_FILE,
    cache_root,
    converted_dir,
    default_model_path,
    make_local_causal_lm,
)
from spacy_knowfree.llm.models.openai_compatible import BackendRequestError, OpenAICompatibleModel

from _chat_server import ChatServer, echo, reply_body

REPO_ROOT = Path(__file__).resolve().parents[1]
Behaviour = Callable[[Dict[str, Any], int], Tuple[int, Dict[str, str], Any, float]]


pytestmark = pytest.mark.usefixtures("only_localhost")


@pytest.fixture
def server():
    srv = ChatServer()
    yield srv
    srv.close()


def make_model(server: ChatServer, **kwargs) -> OpenAICompatibleModel:
    settings = {"backoff": 0.01, "timeout": 5.0, "max_retries": 3}
    settings.update(kwargs)
    return OpenAICompatibleModel(server.url, "test-model", **settings)


# ----------------------------------------------------------------------------- happy path
def test_happy_path_order_body_and_no_auth_header(server):
    model = make_model(
        server, concurrency=3, temperature=0.2, max_tokens=77, system_prompt="SYS", extra_params={"seed": 7}
    )
    replies = model([["a", "b"], ["c"], ["a"]])
    assert [list(r) for r in replies] == [["R:a", "R:b"], ["R:c"], ["R:a"]]
    assert sorted(server.prompts()) == ["a", "b", "c"]  # the duplicate prompt is asked once
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert "Authorization" not in first["headers"]
    body = first["json"]
    assert body["model"] == "test-model" and body["temperature"] == 0.2 and body["max_tokens"] == 77
    assert body["seed"] == 7
    assert body["messages"][0] == {"role": "system", "content": "SYS"}


def test_requests_run_concurrently(server):
    # Each request waits (at most 10 s) until all four are in flight: with
    # concurrency 4 they all get there; sent one at a time, none would.
    in_flight = {"now": 0, "peak": 0}
    all_in = threading.Event()
    lock = threading.Lock()

    def behaviour(req, n):
        with lock:
            in_flight["now"] += 1
            in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
            if in_flight["now"] == 4:
                all_in.set()
        all_in.wait(10.0)
        with lock:
            in_flight["now"] -= 1
        return 200, {}, reply_body("ok"), 0.0

    server.behaviour = behaviour
    model = make_model(server, concurrency=4, timeout=30.0)
    model([["p1"], ["p2"], ["p3"], ["p4"]])
    assert len(server.requests) == 4
    assert in_flight["peak"] == 4, f"at most {in_flight['peak']} of 4 requests were in flight at once"


def test_api_key_from_named_env_var(server, monkeypatch):
    monkeypatch.setenv("KF_TEST_KEY", "sekrit")
    make_model(server, api_key_env="KF_TEST_KEY")([["x"]])
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sekrit"


def test_missing_key_warns_and_sends_no_header(server, monkeypatch):
    monkeypatch.delenv("KF_TEST_KEY", raising=False)
    with pytest.warns(UserWarning, match="KW200"):
        model = make_model(server, api_key_env="KF_TEST_KEY")
    model([["x"]])
    assert "Authorization" not in server.requests[-1]["headers"]


def test_context_length_leaves_room_for_the_reply(server):
    assert make_model(server).context_length is None
    assert make_model(server, context_length=4096, max_tokens=96).context_length == 4000


@pytest.mark.parametrize("arg,value", [("concurrency", 0), ("max_retries", -1), ("timeout", 0), ("max_tokens", 0)])
def test_invalid_arguments(server, arg, value):
    with pytest.raises(ValueError, match="KF204"):
        make_model(server, **{arg: value})
    with pytest.raises(ValueError, match="KF204"):
        OpenAICompatibleModel("localhost:8000", "m")


# ----------------------------------------------------------------------------- retries
def test_429_then_success_honours_retry_after(server):
    def behaviour(req, n):
        if n == 0:
            return 429, {"Retry-After": "0.3"}, {"error": "slow down"}, 0.0
        return echo(req, n)

    server.behaviour = behaviour
    model = make_model(server, backoff=30.0)  # Retry-After must win over the long backoff
    start = time.monotonic()
    assert list(model([["hi"]])[0]) == ["R:hi"]
    elapsed = time.monotonic() - start
    assert len(server.requests) == 2
    gap = server.requests[1]["time"] - server.requests[0]["time"]
    # waited for Retry-After (0.3 s), not for the 30 s backoff (generous bound for a loaded machine)
    assert 0.25 <= gap and elapsed < 20.0


def test_slow_reply_times_out_then_retry_succeeds(server):
    # The first reply is held back until the client has given up on it and
    # asked again, whatever the load; the retry is answered at once.
    retried = threading.Event()

    def behaviour(req, n):
        if n == 0:
            retried.wait(30.0)
            return 200, {}, reply_body("late"), 0.0
        retried.set()
        return 200, {}, reply_body("fast"), 0.0

    server.behaviour = behaviour
    model = make_model(server, timeout=2.0)
    assert list(model([["q"]])[0]) == ["fast"]
    assert len(server.requests) == 2


def test_backoff_grows_exponentially(server):
    server.behaviour = lambda req, n: (503, {}, {"error": "busy"}, 0.0) if n < 3 else echo(req, n)
    model = make_model(server, backoff=0.1, max_retries=3)
    assert list(model([["q"]])[0]) == ["R:q"]
    times = [r["time"] for r in server.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39


def test_500_forever_clear_error_and_finished_replies_kept(server, tmp_path):
    server.behaviour = lambda req, n: (
        (500, {}, {"error": "boom"}, 0.0) if "FAIL" in req["messages"][-1]["content"] else echo(req, n)
    )
    cache_path = tmp_path / "replies.jsonl"
    model = make_model(server, concurrency=1, max_retries=2, cache=ResponseCache(cache_path))
    with pytest.raises(BackendRequestError) as info:
        model([["ok1"], ["FAIL"], ["ok2"]])
    err = info.value
    message = str(err)
    assert "KF202" in message and server.url in message and "HTTP 500" in message
    assert "3 attempt(s)" in message and "1 of 3" in message and str(cache_path) in message
    assert err.status == 500 and err.done == 1 and err.total == 3
    # concurrency 1: ok1 finished, FAIL failed 3 times, ok2 was never started
    assert server.prompts() == ["ok1", "FAIL", "FAIL", "FAIL"]
    assert len(ResponseCache(cache_path)) == 1

    # the server recovers: a rerun asks only for what is missing
    server.behaviour = echo
    before = len(server.requests)
    rerun = make_model(server, concurrency=1, cache=ResponseCache(cache_path))
    assert [list(r) for r in rerun([["ok1"], ["FAIL"], ["ok2"]])] == [["R:ok1"], ["R:FAIL"], ["R:ok2"]]
    assert server.prompts()[before:] == ["FAIL", "ok2"]


def test_client_error_is_not_retried(server):
    server.behaviour = lambda req, n: (400, {}, {"error": "bad prompt"}, 0.0)
    model = make_model(server)
    with pytest.warns(UserWarning, match="KW204"):
        assert [list(r) for r in model([["q"]])] == [[""]]  # dropped, the run goes on
    assert len(server.requests) == 1
    assert model.dropped == [
        {"doc": 0, "reason": "http_400", "message": "HTTP 400 Bad Request: bad prompt", "cached": False}
    ]
    server.behaviour = lambda req, n: (404, {}, {"error": {"message": "no model x"}}, 0.0)
    with pytest.raises(BackendRequestError, match="HTTP 404 Not Found: no model x"):
        make_model(server)([["q2"]])
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_reported(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    model = OpenAICompatibleModel(f"http://127.0.0.1:{port}/v1/chat/completions", "m", backoff=0.01, max_retries=2)
    with pytest.raises(BackendRequestError, match="connection error") as info:
        model([["q"]])
    assert f"127.0.0.1:{port}" in str(info.value) and info.value.status is None


def test_unreadable_reply_is_reported(server):
    server.behaviour = lambda req, n: (200, {}, {"unexpected": True}, 0.0)
    with pytest.raises(BackendRequestError, match="KF203"):
        make_model(server)([["q"]])


def test_cut_replies_warn(server):
    server.behaviour = lambda req, n: (200, {}, reply_body("[{", finish_reason="length"), 0.0)
    with pytest.warns(UserWarning, match="KW201"):
        make_model(server)([["q"]])


# ----------------------------------------------------------------------------- reply cache
def test_cache_key_depends_on_every_part():
    base = cache_key("b", "m", "p", {"t": 0})
    assert base == cache_key("b", "m", "p", {"t": 0})
    assert (
        len(
            {
                base,
                cache_key("b2", "m", "p", {"t": 0}),
                cache_key("b", "m2", "p", {"t": 0}),
                cache_key("b", "m", "p2", {"t": 0}),
                cache_key("b", "m", "p", {"t": 1}),
            }
        )
        == 5
    )


def test_cache_hits_skip_the_server(server, tmp_path):
    path = tmp_path / "c.jsonl"
    make_model(server, cache=ResponseCache(path))([["a"], ["b"]])
    assert len(server.requests) == 2
    cache = ResponseCache(path)
    again = make_model(server, cache=cache)([["b"], ["a"]])
    assert [list(r) for r in again] == [["R:b"], ["R:a"]]
    assert len(server.requests) == 2 and cache.hits == 2
    make_model(server, cache=ResponseCache(path), temperature=0.5)([["a"]])  # new params: new key
    assert len(server.requests) == 3


def test_cache_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = ResponseCache(path)
    cache.put("k1", "one")
    with path.open("ab") as handle:
        handle.write(b'{"key": "k2", "respo')  # killed while writing
    with pytest.warns(UserWarning, match="KW202"):
        reopened = ResponseCache(path)
    assert reopened.get("k1") == "one" and reopened.get("k2") is None
    reopened.put("k3", "three")  # must not be glued onto the torn line
    with pytest.warns(UserWarning, match="KW202"):
        final = ResponseCache(path)
    assert final.get("k1") == "one" and final.get("k3") == "three"


def test_cache_path_must_not_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="KF207"):
        ResponseCache(tmp_path)


_KILLED_RUN_SCRIPT = """
import sys
from spacy_knowfree.llm.models.openai_compatible import OpenAICompatibleModel
from spacy_knowfree.llm.cache import ResponseCache
url, path = sys.argv[1], sys.argv[2]
model = OpenAICompatibleModel(url, "test-model", concurrency=1, timeout=120, cache=ResponseCache(path))
model([["p%d" % i] for i in range(6)])
print("finished")
"""


def test_cache_resumes_after_a_killed_run(server, tmp_path):
    """A subprocess is SIGKILLed while waiting for its 4th reply; the rerun asks only for p3..p5."""
    reached_fourth = threading.Event()
    release = threading.Event()

    def behaviour(req, n):
        if n == 3:
            reached_fourth.set()
            release.wait(60)
        return echo(req, n)

    server.behaviour = behaviour
    cache_path = tmp_path / "replies.jsonl"
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN_SCRIPT, encoding="utf8")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), server.url, str(cache_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert reached_fourth.wait(90), "the subprocess never sent its 4th request"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    lines = [json.loads(line) for line in cache_path.read_text(encoding="utf8").splitlines()]
    assert sorted(rec["response"] for rec in lines) == ["R:p0", "R:p1", "R:p2"]

    server.behaviour = echo
    before = len(server.requests)
    model = OpenAICompatibleModel(server.url, "test-model", concurrency=1, cache=ResponseCache(cache_path))
    replies = model([["p%d" % i] for i in range(6)])
    assert [list(r)[0] for r in replies] == ["R:p%d" % i for i in range(6)]
    assert server.prompts()[before:] == ["p3", "p4", "p5"]


# ----------------------------------------------------------------------------- local backend (cheap parts)
def test_default_model_is_the_smollm2_gguf():
    path = default_model_path()
    assert path.name == DEFAULT_GGUF_FILE and path.stat().st_size > 10_000_000


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == Path.home() / ".cache" / "spacy-knowfree"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(str(tmp_path / "arg")) == tmp_path / "arg"


def test_converted_dir_follows_file_content(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    first = converted_dir(gguf, str(tmp_path))
    assert first.parent == tmp_path / "gguf" and first.name.startswith("tiny-")
    assert converted_dir(gguf, str(tmp_path)) == first
    gguf.write_bytes(b"GGUF" + b"\1" * 100)
    assert converted_dir(gguf, str(tmp_path)) != first


def test_local_model_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="KF205"):
        make_local_causal_lm(model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="KF204"):
        make_local_causal_lm(model=str(tmp_path), batch_size=0)
