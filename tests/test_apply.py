"""``knowfree apply`` (batch inference, local and Ray engines) and ``knowfree
extend --engine ray``.

A tiny knowfree pipeline is trained once per session and applied to the
embedded sample. Ray runs as a local cluster of 2 CPUs with a small object
store, started once for the module and shut down at the end.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_knowfree.scaling import apply_model
from spacy_knowfree.scaling.inputs import MANIFEST_NAME

from _chat_server import ChatServer, extend_config, reply_body
from _cli import quiet, run  # noqa: F401  (quiet: autouse fixture)
from _examples import EXTENSION, FLAT, make_examples, make_nlp, train

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "assets" / "sample"
ray = pytest.importorskip("ray", reason="the ray extra is not installed")


def sample_texts(split: str) -> List[str]:
    return ["".join(json.loads(line)["text"]) for line in (SAMPLE / f"{split}.jsonl").open(encoding="utf8")]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny trained knowfree pipeline on disk."""
    nlp = make_nlp()
    train(nlp, make_examples(nlp, FLAT, extension=EXTENSION), max_steps=100)
    path = tmp_path_factory.mktemp("apply") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A directory with the sample as text (train), JSONL (dev) and a DocBin (test)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "train.txt").write_text("\n".join(sample_texts("train")) + "\n", encoding="utf8")
    srsly.write_jsonl(root / "dev.jsonl", [{"id": i, "text": t} for i, t in enumerate(sample_texts("dev"))])
    nlp = spacy.blank("zh")
    DocBin(docs=[nlp(t) for t in sample_texts("test")], store_user_data=True).to_disk(root / "test.spacy")
    return root


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs for the tests of this module."""
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        logging_level="WARNING",
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()


def shard_contents(output: Path) -> Dict[str, List[Tuple[str, list, list]]]:
    """Per shard file: (text, spans, scores) of each doc."""
    vocab = Vocab()
    contents = {}
    for path in sorted(output.glob("*.spacy")):
        docs = list(DocBin().from_disk(path).get_docs(vocab))
        contents[path.name] = [
            (
                doc.text,
                [(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]],
                [float(x) for x in doc.spans["sc"].attrs["scores"]],
            )
            for doc in docs
        ]
    return contents


def apply_args(model: Path, source: Path, output: Path, *more: str) -> List[str]:
    return ["apply", str(model), str(source), str(output), "--shard-size", "30", "--batch-size", "8", *more]


def test_local_and_ray_engines_write_identical_shards(capsys, model_dir, corpus, tmp_path, ray_cluster):
    code, out = run(capsys, *apply_args(model_dir, corpus, tmp_path / "local"))
    assert code == 0, out
    code, out_ray = run(
        capsys, *apply_args(model_dir, corpus, tmp_path / "ray", "--engine", "ray", "--num-actors", "2")
    )
    assert code == 0, out_ray
    local, remote = shard_contents(tmp_path / "local"), shard_contents(tmp_path / "ray")
    # dev (40 docs) -> 2 shards, test (40) -> 2, train (160) -> 6; files in sorted order
    assert [name[:5] for name in local] == ["00000"] * 2 + ["00001"] * 2 + ["00002"] * 6
    assert local == remote
    texts = [text for shard in local.values() for text, _, _ in shard]
    assert texts == sample_texts("dev") + sample_texts("test") + sample_texts("train")
    assert sum(len(spans) for shard in local.values() for _, spans, _ in shard) > 0
    for said in (out, out_ray):
        words = " ".join(said.split())
        assert "Wrote 10 shard(s)" in words and "docs 240" in words and "chars/s" in words


def test_jsonl_output_is_byte_identical_across_engines(model_dir, corpus, tmp_path, ray_cluster):
    source = corpus / "dev.jsonl"
    local = apply_model(
        model_dir, source, tmp_path / "local", fmt="jsonl", shard_size=16, batch_size=4, n_process=2, progress=False
    )
    remote = apply_model(
        model_dir,
        source,
        tmp_path / "ray",
        fmt="jsonl",
        shard_size=16,
        batch_size=4,
        engine="ray",
        num_actors=2,
        progress=False,
    )
    assert local.docs == remote.docs == 40 and local.shards_written == remote.shards_written == 3
    names = sorted(p.name for p in (tmp_path / "local").glob("*.jsonl"))
    assert names == sorted(p.name for p in (tmp_path / "ray").glob("*.jsonl"))
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    records = [json.loads(line) for name in names for line in (tmp_path / "local" / name).open(encoding="utf8")]
    assert ["".join(r["text"]) for r in records] == sample_texts("dev")
    entities = [e for r in records for e in r["entities"]]
    assert entities and all(0.0 <= e["score"] <= 1.0 and e["entity"] in {"PER", "LOC", "ORG"} for e in entities)


def test_a_killed_run_resumes_without_redoing_finished_shards(capsys, model_dir, tmp_path):
    texts = [f"{t}{i}" for i in range(12) for t in sample_texts("train")]  # 1,920 docs
    source = tmp_path / "big.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf8")
    output = tmp_path / "out"
    args = apply_args(model_dir, source, output, "--shard-size", "20")
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_knowfree", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while not list(output.glob("*.spacy")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in output.glob("*.spacy"))
    assert 1 <= len(done_before) < 96, "the run was not killed half-way"
    mtimes = {name: (output / name).stat().st_mtime_ns for name in done_before}
    code, out = run(capsys, *args)
    assert code == 0, out
    assert f"({len(done_before)} already written, skipped)" in " ".join(out.split())
    assert all((output / name).stat().st_mtime_ns == mtimes[name] for name in done_before)
    assert not list(output.glob("*.partial"))
    contents = shard_contents(output)
    assert len(contents) == 96 and all(len(docs) == 20 for docs in contents.values())
    assert [text for docs in contents.values() for text, _, _ in docs] == texts
    code, out = run(capsys, *args)  # everything written: nothing to do
    assert code == 0 and "Wrote 0 shard(s)" in out and "(96 already written, skipped)" in " ".join(out.split())


def test_the_ray_engine_resumes_a_local_run(model_dir, corpus, tmp_path, ray_cluster):
    output = tmp_path / "out"
    apply_model(model_dir, corpus / "train.txt", output, shard_size=50, batch_size=8, progress=False)
    expected = shard_contents(output)
    (output / "00000-train-00002.spacy").unlink()
    summary = apply_model(
        model_dir, corpus / "train.txt", output, shard_size=50, batch_size=8, engine="ray", num_actors=1, progress=False
    )
    assert (summary.shards_written, summary.shards_skipped, summary.docs) == (1, 3, 50)
    assert shard_contents(output) == expected


def test_a_rerun_with_other_settings_or_inputs_is_refused(capsys, model_dir, corpus, tmp_path):
    output = tmp_path / "out"
    code, out = run(capsys, *apply_args(model_dir, corpus / "dev.jsonl", output))
    assert code == 0, out
    code, out = run(capsys, *apply_args(model_dir, corpus / "dev.jsonl", output, "--shard-size", "10"))
    assert code == 1 and "[KF701]" in out and "shard_size" in out and "new OUTPUT" in " ".join(out.split())
    code, out = run(capsys, *apply_args(model_dir, corpus / "test.spacy", output))
    assert code == 1 and "[KF701]" in out and "test.spacy" in out
    assert json.loads((output / MANIFEST_NAME).read_text())["settings"]["shard_size"] == 30


@pytest.mark.parametrize("case", ["missing", "empty_dir", "glob", "output_file", "shard_size", "model"])
def test_bad_input_gets_a_clear_error(capsys, model_dir, corpus, tmp_path, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken").write_text("x", encoding="utf8")
    model, source, output, more = model_dir, corpus, tmp_path / "out", []
    if case == "missing":
        source = tmp_path / "nope.txt"
    elif case == "empty_dir":
        source = tmp_path / "empty"
    elif case == "glob":
        source = tmp_path / "*.jsonl"
    elif case == "output_file":
        output = tmp_path / "taken"
    elif case == "shard_size":
        more = ["--shard-size", "0"]
    else:
        model = tmp_path / "no_model"
    code, out = run(capsys, *apply_args(model, source, output), *more)
    said = " ".join(out.split())
    expected = {
        "missing": ("[KF700]", "nope.txt"),
        "empty_dir": ("[KF700]", "holds no"),
        "glob": ("[KF700]", "no file matches"),
        "output_file": ("[KF702]", "is a file"),
        "shard_size": ("[KF703]", "--shard-size must be a positive integer"),
        "model": ("[KF705]", "no_model"),
    }[case]
    assert code == 1 and all(part in said for part in expected), said


def test_the_ray_engine_without_ray_names_the_extra(capsys, model_dir, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as without the extra
    code, out = run(capsys, *apply_args(model_dir, corpus / "dev.jsonl", tmp_path / "out", "--engine", "ray"))
    said = " ".join(out.split())
    assert code == 1 and "[KF600]" in said and 'pip install "spacy-knowfree[ray]"' in said
    assert not list((tmp_path / "out").glob("*.spacy"))


# ============================================================================= extend --engine ray
EXTEND_CONFIG = extend_config(4, cache='"cache/llm_replies.jsonl"', api_key_env="null")
_SENTENCE_RE = re.compile(r"(?:句子：|Sentence: )(.*)\n(?:输出：|Output:)\s*$")
FAIL_ON = {"text": None}  # the server answers 401 for the sentence holding this text


def entity_reply(request: Dict, n: int):
    """Every run of two Han characters after 在/去/到 is a place (deterministic, enough spans)."""
    sentence = _SENTENCE_RE.search(request["messages"][-1]["content"]).group(1)
    if FAIL_ON["text"] is not None and FAIL_ON["text"] in sentence:
        return 401, {}, {"error": {"message": "key revoked"}}, 0.0
    items = [
        {"entity": sentence[i + 1 : i + 3], "type": "地名"} for i, ch in enumerate(sentence[:-2]) if ch in "在去到"
    ]
    return 200, {}, reply_body(json.dumps(items, ensure_ascii=False)), 0.0


@pytest.fixture
def chat_server(only_localhost):
    FAIL_ON["text"] = None
    server = ChatServer(entity_reply)
    yield server
    server.close()
    FAIL_ON["text"] = None


def extend_args(tmp_path: Path, url: str, output: str, cache: Path, *more: str) -> List[str]:
    (tmp_path / "kb.cfg").write_text(EXTEND_CONFIG, encoding="utf8")
    return [
        "extend",
        str(tmp_path / "train.spacy"),
        str(tmp_path / output),
        "-c",
        str(tmp_path / "kb.cfg"),
        "--vars.endpoint",
        url,
        "--paths.cache",
        str(cache),
        *more,
    ]


def fused(path: Path) -> List[Tuple[str, list, dict]]:
    return [
        (doc.text, [(s.start_char, s.end_char, s.label_) for s in doc.spans["knowfree_ext"]], dict(doc.user_data))
        for doc in DocBin().from_disk(path).get_docs(Vocab())
    ]


def write_train(tmp_path: Path, texts: List[str]) -> None:
    nlp = spacy.blank("zh")
    DocBin(docs=[nlp(t) for t in texts], store_user_data=True).to_disk(tmp_path / "train.spacy")


def test_extend_on_ray_matches_local_and_reruns_from_the_cache(capsys, chat_server, tmp_path, ray_cluster):
    texts = sample_texts("dev")
    write_train(tmp_path, texts)
    code, out = run(capsys, *extend_args(tmp_path, chat_server.url, "local.spacy", tmp_path / "local.jsonl"))
    assert code == 0, out
    asked_local = len(chat_server.requests)
    assert asked_local == len(texts)
    ray_args = extend_args(
        tmp_path,
        chat_server.url,
        "ray.spacy",
        tmp_path / "c" / "replies.jsonl",
        "--engine",
        "ray",
        "--num-actors",
        "2",
        "--shard-size",
        "15",
    )
    code, out = run(capsys, *ray_args)
    said = " ".join(out.split())
    assert code == 0, out
    assert len(chat_server.requests) - asked_local == len(texts)
    assert f"LLM calls: {len(texts)} made, 0 answered from cache" in said and "3 shard(s) run" in said
    assert fused(tmp_path / "ray.spacy") == fused(tmp_path / "local.spacy")
    assert sum(len(spans) for _, spans, _ in fused(tmp_path / "ray.spacy")) > 10
    caches = sorted(p.name for p in (tmp_path / "c" / "replies.shards").glob("*.jsonl"))
    assert caches == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]
    assert not (tmp_path / "ray.spacy.parts").exists()
    asked = len(chat_server.requests)
    code, out = run(capsys, *ray_args)  # everything is in the shard caches
    assert code == 0, out
    assert len(chat_server.requests) == asked
    assert f"LLM calls: 0 made, {len(texts)} answered from cache" in " ".join(out.split())
    assert fused(tmp_path / "ray.spacy") == fused(tmp_path / "local.spacy")


def test_a_failed_ray_extension_resumes_without_asking_again(capsys, chat_server, tmp_path, ray_cluster):
    texts = sample_texts("dev")
    write_train(tmp_path, texts)
    FAIL_ON["text"] = texts[35]  # in the last of 3 shards
    args = extend_args(
        tmp_path,
        chat_server.url,
        "ray.spacy",
        tmp_path / "replies.jsonl",
        "--engine",
        "ray",
        "--num-actors",
        "2",
        "--shard-size",
        "15",
        "--unlabeled",
    )
    code, out = run(capsys, *args)
    said = " ".join(out.split())
    assert code == 1 and "[KF704]" in said and "key revoked" in said and "run the same command again" in said
    assert not (tmp_path / "ray.spacy").exists()
    answered = {
        r["json"]["messages"][-1]["content"]
        for r in chat_server.requests
        if texts[35] not in r["json"]["messages"][-1]["content"]
    }
    assert answered
    first = len(chat_server.requests)
    FAIL_ON["text"] = None
    code, out = run(capsys, *args)
    assert code == 0, out
    again = [r["json"]["messages"][-1]["content"] for r in chat_server.requests[first:]]
    assert not answered & set(again), "a prompt answered before the failure was sent again"
    assert len(answered) + len(again) == len(texts)
    docs = fused(tmp_path / "ray.spacy")
    assert [text for text, _, _ in docs] == texts
    assert all(user_data.get("knowfree_unlabeled") is True for _, _, user_data in docs)


def test_extend_on_ray_refuses_a_cache_shared_by_all_shards(capsys, tmp_path):
    write_train(tmp_path, ["张三在北京工作。"])
    config = EXTEND_CONFIG.replace("path = ${paths.cache}", 'path = "fixed.jsonl"')
    (tmp_path / "fixed.cfg").write_text(config, encoding="utf8")
    code, out = run(
        capsys,
        "extend",
        tmp_path / "train.spacy",
        tmp_path / "out.spacy",
        "-c",
        tmp_path / "fixed.cfg",
        "--engine",
        "ray",
    )
    said = " ".join(out.split())
    assert code == 1 and "[KF706]" in said and "components.llm_ent.model.cache" in said and "fixed.jsonl" in said


def test_extend_with_the_lexicon_on_ray_matches_local(capsys, tmp_path, ray_cluster):
    write_train(tmp_path, sample_texts("test")[:12])
    common = [tmp_path / "train.spacy"]
    code, out = run(capsys, "extend", *common, tmp_path / "local.spacy")
    assert code == 0, out
    code, out = run(
        capsys, "extend", *common, tmp_path / "ray.spacy", "--engine", "ray", "--shard-size", "5", "--num-actors", "2"
    )
    assert code == 0, out
    assert fused(tmp_path / "ray.spacy") == fused(tmp_path / "local.spacy")
    assert any(spans for _, spans, _ in fused(tmp_path / "ray.spacy"))
