"""``knowfree extend`` with LLM knowledge configs and ``knowfree merge-labels``.

The extension runs use a fake ``llm_models`` model (plumbing only: prompts,
the response cache, call counts, drop statistics); the P_merge call goes to
the real OpenAI-compatible backend talking to an ``http.server`` on
127.0.0.1. Only the sentence embeddings are faked (hand-placed vectors): the
merge decision (eq. 6-8) is the real one. No address other than 127.0.0.1 is
ever contacted.
"""

import json
import re
import socket
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy_llm.registry import registry
from typer.testing import CliRunner

import spacy_knowfree.llm  # noqa: F401  (registers the tasks and backends)
from spacy_knowfree.cli import app
from spacy_knowfree.knowledge.label_merging import embeddings as label_embeddings
from spacy_knowfree.knowledge.pipeline import build_knowledge_pipeline
from spacy_knowfree.llm.cache import LLMCallCounts, ResponseCache, cache_key
from spacy_knowfree.llm.models.local_causal_lm import LocalCausalLM
from spacy_knowfree.llm.models.openai_compatible import OpenAICompatibleModel

from _chat_server import ChatServer, answering

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = "knowfree_ext"
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("only_localhost")


# ============================================================================= extend
_SENTENCE_RE = re.compile(r"(?:句子：|Sentence: )(.*)\n(?:输出：|Output:)\s*$")
PEOPLE = ["张三", "李四", "王五"]
TEXTS = ["张三在北京工作。", "李四和王五去了上海。", "今天天气很好。"]
GENERATED: List[str] = []  # prompts the fake LLM answered, over all runs of a test
CRASH: Dict[str, Optional[int]] = {"after": None}  # crash once this many prompts were generated


def fake_reply(prompt: str) -> str:
    """Scripted answers; each entity reply has one mention not in the
    sentence (not_found) and one item without text (empty_text)."""
    text = _SENTENCE_RE.search(prompt).group(1)
    if '"entity"' in prompt:
        items = [{"entity": p, "type": "人名"} for p in PEOPLE if p in text]
        items += [{"entity": "火星基地", "type": "地名"}, {"entity": "", "type": "人名"}]
        return json.dumps(items, ensure_ascii=False)
    if '"pos"' in prompt:
        words = re.search(r"(\[\".*\"\])\n", prompt)
        items = srsly.json_loads(words.group(1)) if words else list(text)
        return json.dumps([{"word": w, "pos": "NOUN"} for w in items[:-1]], ensure_ascii=False)
    return json.dumps([text[i : i + 2] for i in range(0, len(text), 2)], ensure_ascii=False)


class FakeCachedLLM:
    """A spacy-llm model with the backends' cache and call-count protocol."""

    def __init__(self, cache: Optional[ResponseCache], context_length: Optional[int]):
        self.cache = cache
        self.calls = LLMCallCounts()
        self._context_length = context_length

    @property
    def context_length(self) -> Optional[int]:
        return self._context_length

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        out = []
        for batch in prompts:
            replies = []
            for prompt in batch:
                key = cache_key("fake", "fake-model", prompt, {})
                hit = self.cache.get(key) if self.cache is not None else None
                if hit is not None:
                    self.calls.cached += 1
                    replies.append(hit)
                    continue
                if CRASH["after"] is not None and len(GENERATED) >= CRASH["after"]:
                    raise RuntimeError("the fake LLM crashed")
                reply = fake_reply(prompt)
                GENERATED.append(prompt)
                self.calls.made += 1
                if self.cache is not None:
                    self.cache.put(key, reply)
                replies.append(reply)
            out.append(replies)
        return out


@registry.llm_models("knowfree-test.FakeCachedLLM.v1")
def make_fake_cached_llm(
    cache: Optional[ResponseCache] = None, context_length: Optional[int] = 100_000
) -> FakeCachedLLM:
    return FakeCachedLLM(cache, context_length)


EXTEND_CONFIG = """
[paths]
cache = "cache/llm_replies.jsonl"

[nlp]
lang = "zh"
pipeline = ["llm_seg", "llm_pos", "llm_ent"]

[components]
""" + "".join(
    f"""
[components.llm_{name}]
factory = "llm"

[components.llm_{name}.task]
@llm_tasks = "{task}"

[components.llm_{name}.model]
@llm_models = "knowfree-test.FakeCachedLLM.v1"

[components.llm_{name}.model.cache]
@llm_misc = "spacy-knowfree.ResponseCache.v1"
path = ${{paths.cache}}
"""
    for name, task in [
        ("seg", "spacy-knowfree.Segmentation.v1"),
        ("pos", "spacy-knowfree.POSTagging.v1"),
        ("ent", "spacy-knowfree.ExtensionEntities.v1"),
    ]
)


@pytest.fixture
def fake_llm():
    GENERATED.clear()
    CRASH["after"] = None
    yield
    CRASH["after"] = None


def make_corpus(path: Path) -> List:
    nlp = spacy.blank("zh")
    docs = []
    for i, text in enumerate(TEXTS):
        doc = nlp(text)
        doc.spans["sc"] = [doc.char_span(0, 2, label="PER")]
        doc.user_data["sentence_id"] = i
        docs.append(doc)
    DocBin(store_user_data=True, docs=docs).to_disk(path)
    return docs


def read_docs(path: Path) -> List:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("zh").vocab))


def ext_spans(docs) -> List:
    return [[(s.start_char, s.end_char, s.label_) for s in d.spans[KEY]] for d in docs]


def calls_line(output: str) -> str:
    match = re.search(r"LLM calls: \d+ made, \d+ answered from cache, \d+ failed", output)
    assert match, output
    return match.group(0)


def test_extend_reports_drops_and_calls_and_a_rerun_comes_from_the_cache(tmp_path, fake_llm):
    make_corpus(tmp_path / "train.spacy")
    (tmp_path / "kb.cfg").write_text(EXTEND_CONFIG, encoding="utf8")
    cache = tmp_path / "replies.jsonl"
    args = [
        "extend",
        str(tmp_path / "train.spacy"),
        str(tmp_path / "fused.spacy"),
        "-c",
        str(tmp_path / "kb.cfg"),
        "--paths.cache",
        str(cache),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert calls_line(first.output) == "LLM calls: 9 made, 0 answered from cache, 0 failed"
    assert len(GENERATED) == 9 and len(cache.read_text(encoding="utf8").splitlines()) == 9
    # parser drops, per family and reason, from the tasks' statistics
    ent_line = next(line for line in first.output.splitlines() if line.startswith("ENT: "))
    assert "3 spans from 3 replies" in ent_line
    assert "empty_text=3" in ent_line and "not_found=3" in ent_line
    assert re.search(r"POS: \d+ spans from 3 replies; dropped: none; filled=3", first.output)
    assert re.search(r"sentences \(docs\) done\s+3", first.output)
    assert re.search(r"LLM calls made\s+9", first.output)
    fused = read_docs(tmp_path / "fused.spacy")
    assert [d.text for d in fused] == TEXTS
    assert [[(s.text, s.label_) for s in d.spans["sc"]] for d in fused] == [[(t[:2], "PER")] for t in TEXTS]
    assert [d.user_data["sentence_id"] for d in fused] == [0, 1, 2]
    ents = [[(s.text, s.label_) for s in d.spans[KEY] if s.label_.startswith("ENT:")] for d in fused]
    assert ents == [[("张三", "ENT:人名")], [("李四", "ENT:人名"), ("王五", "ENT:人名")], []]
    # the POS prompts listed the words the segmentation component wrote before them
    pos_prompts = [p for p in GENERATED if '"pos"' in p]
    assert '["张三", "在北", "京工", "作。"]' in pos_prompts[0]

    # a second run is answered entirely from the cache: 0 calls, same spans
    second = runner.invoke(app, args[:2] + [str(tmp_path / "again.spacy")] + args[3:])
    assert second.exit_code == 0, second.output
    assert calls_line(second.output) == "LLM calls: 0 made, 9 answered from cache, 0 failed"
    assert len(GENERATED) == 9
    assert ext_spans(read_docs(tmp_path / "again.spacy")) == ext_spans(fused)


def test_extend_unlabeled_flags_raw_text_and_refuses_gold(tmp_path):
    nlp = spacy.blank("zh")
    DocBin(docs=[nlp(text) for text in TEXTS]).to_disk(tmp_path / "raw.spacy")
    result = runner.invoke(app, ["extend", str(tmp_path / "raw.spacy"), str(tmp_path / "out.spacy"), "--unlabeled"])
    assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert [d.user_data.get("knowfree_unlabeled") for d in docs] == [True] * len(TEXTS)
    assert all(len(d.spans[KEY]) for d in docs)  # the lexicon's knowledge is there to train on
    make_corpus(tmp_path / "gold.spacy")
    refused = runner.invoke(app, ["extend", str(tmp_path / "gold.spacy"), str(tmp_path / "x.spacy"), "--unlabeled"])
    assert refused.exit_code == 1
    assert "KF276" in refused.output and "3 doc(s)" in refused.output
    assert not (tmp_path / "x.spacy").exists()


def test_extend_after_a_crash_asks_only_for_the_missing_prompts(tmp_path, fake_llm):
    make_corpus(tmp_path / "train.spacy")
    (tmp_path / "kb.cfg").write_text(EXTEND_CONFIG, encoding="utf8")
    cache = tmp_path / "replies.jsonl"
    args = [
        "extend",
        str(tmp_path / "train.spacy"),
        str(tmp_path / "fused.spacy"),
        "-c",
        str(tmp_path / "kb.cfg"),
        "--paths.cache",
        str(cache),
        "--batch-size",
        "2",
    ]
    CRASH["after"] = 4  # batch 1: seg (2 prompts), pos (2), then the entity call crashes
    crashed = runner.invoke(app, args)
    assert crashed.exit_code != 0 and isinstance(crashed.exception, RuntimeError)
    said = " ".join(crashed.output.split())  # messages are wrapped
    assert "KF275" in said and "stopped after 0 of 3 docs" in said
    assert f"{cache} (4 replies)" in said and "run the same command again" in said
    assert not (tmp_path / "fused.spacy").exists()
    CRASH["after"] = None
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert calls_line(resumed.output) == "LLM calls: 5 made, 4 answered from cache, 0 failed"
    assert len(GENERATED) == 9


def test_build_knowledge_pipeline_keeps_its_signature(tmp_path, monkeypatch, fake_llm):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kb.cfg").write_text(EXTEND_CONFIG, encoding="utf8")
    nlp = build_knowledge_pipeline(tmp_path / "kb.cfg", ["SEG"], None)
    assert nlp.pipe_names == ["llm_seg", "llm_pos", "llm_ent"]
    assert str(nlp.get_pipe("llm_seg")._model.cache.path) == "cache/llm_replies.jsonl"
    nlp = build_knowledge_pipeline(tmp_path / "kb.cfg", ["SEG"], None, {"paths.cache": "other.jsonl"})
    assert str(nlp.get_pipe("llm_pos")._model.cache.path) == "other.jsonl"


# ============================================================================= shipped configs
@pytest.mark.parametrize(
    "name,backend,pipeline",
    [
        ("extend_smollm2", LocalCausalLM, ["llm_seg", "llm_pos", "llm_ent"]),
        ("extend_openai", OpenAICompatibleModel, ["llm_seg", "llm_pos", "llm_ent"]),
        ("extend_lexicon_llm", LocalCausalLM, ["lexicon", "llm_ent"]),
    ],
)
def test_shipped_configs_resolve_without_connecting_or_loading(tmp_path, monkeypatch, name, backend, pipeline):
    def refuse(*args, **kwargs):
        raise AssertionError("no connection may be opened while building the pipeline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    path = REPO_ROOT / "configs" / f"{name}.cfg"
    raw = spacy.util.load_config(path, interpolate=False)
    assert raw["paths"]["cache"] == "cache/llm_replies.jsonl"
    overrides = {"paths.cache": str(tmp_path / "c.jsonl")}
    if backend is OpenAICompatibleModel:
        overrides.update({"vars.endpoint": "http://127.0.0.1:9/v1/chat/completions", "vars.api_key_env": None})
    config = spacy.util.load_config(path, overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == pipeline
    tasks = [type(nlp.get_pipe(n).task).__name__ for n in pipeline if n.startswith("llm_")]
    assert tasks == ["SegmentationTask", "POSTaggingTask", "ExtensionEntitiesTask"][-len(tasks) :]
    for n in pipeline:
        if not n.startswith("llm_"):
            continue
        model = nlp.get_pipe(n)._model
        assert isinstance(model, backend)
        assert model.cache is not None and model.cache.path == tmp_path / "c.jsonl"
        if backend is LocalCausalLM:
            assert not model.loaded and model.context_length == 8192 - 512
            assert model.num_threads == 4 and model.model_id.startswith("SmolLM2-135M-Instruct")
        else:
            assert model.endpoint == "http://127.0.0.1:9/v1/chat/completions"
            assert model.model == "Qwen2.5-7B-Instruct" and "Authorization" not in model._headers
    if name == "extend_openai":
        assert raw["vars"]["endpoint"] == "http://127.0.0.1:8000/v1/chat/completions"
        assert raw["vars"]["api_key_env"] == "OPENAI_API_KEY"


# ============================================================================= merge-labels
# (entity, type) -> hand-placed "embedding". 人物 sits inside 人名's cloud and
# 城市 inside 地名's, 姓名 far away: with epsilon 1.5 the first two merge and
# 姓名 is rejected (distances and thresholds are checked against numpy below).
VECTORS = {
    "张三": (0.0, 0.0),
    "李四": (1.0, 0.0),
    "王五": (0.0, 1.0),  # 人名
    "赵六": (0.5, 0.5),
    "孙七": (0.3, 0.2),  # 人物
    "周八": (3.0, 3.0),  # 姓名
    "北京": (10.0, 0.0),
    "上海": (11.0, 0.0),  # 地名
    "广州": (10.5, 0.5),
    "深圳": (10.5, -0.3),  # 城市
}
MERGE_DOCS = [
    ("张三和李四在北京见到王五。", [("张三", "人名"), ("李四", "人名"), ("北京", "地名"), ("王五", "人名")]),
    ("赵六去了上海，孙七去了广州。", [("赵六", "人物"), ("上海", "地名"), ("孙七", "人物"), ("广州", "城市")]),
    ("周八住在深圳。", [("周八", "姓名"), ("深圳", "城市")]),
]
GROUPS = {"人名": ["人名", "人物", "姓名"], "地名": ["地名", "城市"]}


@pytest.fixture
def fake_embeddings(monkeypatch):
    """Replace only the embedding function; record how it was called."""
    seen: List[Dict[str, Any]] = []

    def embed(pairs, *, model=None, template="", **kwargs):
        seen.append({"pairs": list(pairs), "model": model, "template": template})
        return np.array([VECTORS[e] for e, _ in pairs], dtype="float32")

    monkeypatch.setattr(label_embeddings, "embed_entity_pairs", embed)
    return seen


def make_merge_corpus(path: Path) -> None:
    nlp = spacy.blank("zh")
    docs = []
    for text, ents in MERGE_DOCS:
        doc = nlp(text)
        spans = [doc.char_span(text.index(e), text.index(e) + len(e), label=f"ENT:{t}") for e, t in ents]
        spans.append(doc.char_span(0, 2, label="SEG:WORD"))
        spans += [
            doc.char_span(0, 2, label="POS:noun"),
            doc.char_span(0, 2, label="POS:NOUN"),
            doc.char_span(2, 3, label="POS:zzz"),
        ]
        doc.spans[KEY] = spans
        doc.spans["sc"] = [doc.char_span(0, 2, label="PER")]
        doc.user_data["knowfree_llm_stats"] = {"ENT": {"replies": 1}}
        docs.append(doc)
    DocBin(store_user_data=True, docs=docs).to_disk(path)


def ent_labels(docs) -> List[List]:
    return [[(s.text, s.label_[4:]) for s in d.spans[KEY] if s.label_.startswith("ENT:")] for d in docs]


def expected_ents(mapping: Dict[str, str]) -> List[List]:
    return [[(e, mapping.get(t, t)) for e, t in ents] for _, ents in MERGE_DOCS]


def test_merge_labels_with_a_groups_file(tmp_path, fake_embeddings):
    make_merge_corpus(tmp_path / "fused.spacy")
    (tmp_path / "groups.json").write_text(json.dumps(GROUPS, ensure_ascii=False), encoding="utf8")
    label_map = tmp_path / "map.json"
    args = [
        "merge-labels",
        str(tmp_path / "fused.spacy"),
        str(tmp_path / "merged.spacy"),
        "--label-map",
        str(label_map),
        "--groups",
        str(tmp_path / "groups.json"),
        "--template",
        "{entity}是{type}",
        "--embedding-model",
        "my-embedder",
        "--top-p",
        "5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert fake_embeddings[0]["template"] == "{entity}是{type}" and fake_embeddings[0]["model"] == "my-embedder"
    assert len(fake_embeddings[0]["pairs"]) == 10

    data = json.loads(label_map.read_text(encoding="utf8"))
    assert data["kind"] == "spacy-knowfree.label_map" and data["params"]["groups"] == GROUPS
    assert data["params"]["epsilon"] == 1.5 and data["params"]["p"] == 5
    person = data["labels"]["人名"]
    # eq. 6-8 by hand: reference 人名 (3 pairs), r_max = mean distance to its centroid
    people = np.array([VECTORS[e] for e in ("张三", "李四", "王五")])
    c_max = people.mean(axis=0)
    r_max = np.linalg.norm(people - c_max, axis=1).mean()
    d_renwu = np.linalg.norm(np.array([VECTORS["赵六"], VECTORS["孙七"]]).mean(axis=0) - c_max)
    d_xingming = np.linalg.norm(np.array(VECTORS["周八"]) - c_max)
    assert person["reference"] == "人名" and person["threshold"] == pytest.approx(1.5 * r_max, abs=1e-5)
    members = {m["type"]: m for m in person["members"]}
    assert set(members) == {"人名", "人物"} and members["人物"]["role"] == "merged"
    assert members["人物"]["distance"] == pytest.approx(d_renwu, abs=1e-5)
    assert [(r["type"], r["group"]) for r in data["rejected"]] == [("姓名", "人名")]
    assert data["rejected"][0]["distance"] == pytest.approx(d_xingming, abs=1e-5)
    assert data["labels"]["姓名"]["members"][0]["role"] == "independent"
    assert {m["type"] for m in data["labels"]["地名"]["members"]} == {"地名", "城市"}

    merged = read_docs(tmp_path / "merged.spacy")
    assert ent_labels(merged) == expected_ents({"人物": "人名", "城市": "地名"})
    for doc in merged:  # POS spellings merged onto UPOS, the duplicate removed, unknown kept
        pos = [(s.start_char, s.end_char, s.label_) for s in doc.spans[KEY] if s.label_.startswith("POS:")]
        assert pos == [(0, 2, "POS:NOUN"), (2, 3, "POS:zzz")]
        assert [(s.text, s.label_) for s in doc.spans["sc"]] == [(doc.text[:2], "PER")]
        assert doc.user_data["knowfree_llm_stats"] == {"ENT": {"replies": 1}}
    out = result.output
    assert re.search(r"ENT types\s+5\s+3", out) and re.search(r"POS tags\s+3\s+2", out)
    assert re.search(r"人名\s+人物\s+merged\s+2\s+" + f"{d_renwu:.4f}", out)
    assert re.search(r"姓名\s+人名\s+" + f"{d_xingming:.4f}", out)  # the rejected table
    assert "zzz" in out  # unknown POS spelling reported

    # the label map is not overwritten by accident; --epsilon 0 merges nothing
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "KF272" in again.output
    strict = runner.invoke(app, args + ["--epsilon", "0", "--overwrite"])
    assert strict.exit_code == 0, strict.output
    assert ent_labels(read_docs(tmp_path / "merged.spacy")) == expected_ents({})
    assert {r["type"] for r in json.loads(label_map.read_text())["rejected"]} == {"人物", "姓名", "城市"}


def test_apply_only_round_trip_with_a_reviewed_map(tmp_path, fake_embeddings, monkeypatch):
    make_merge_corpus(tmp_path / "fused.spacy")
    (tmp_path / "groups.json").write_text(json.dumps(GROUPS, ensure_ascii=False), encoding="utf8")
    label_map = tmp_path / "map.json"
    computed = runner.invoke(
        app,
        [
            "merge-labels",
            str(tmp_path / "fused.spacy"),
            str(tmp_path / "m1.spacy"),
            "-m",
            str(label_map),
            "--groups",
            str(tmp_path / "groups.json"),
        ],
    )
    assert computed.exit_code == 0, computed.output
    # the reviewer moves 姓名 under 人名 and keeps 城市 apart from 地名
    data = json.loads(label_map.read_text(encoding="utf8"))
    data["labels"]["人名"]["members"] += data["labels"].pop("姓名")["members"]
    city = [m for m in data["labels"]["地名"]["members"] if m["type"] == "城市"]
    data["labels"]["地名"]["members"] = [m for m in data["labels"]["地名"]["members"] if m["type"] != "城市"]
    data["labels"]["城市"] = {"members": city}
    label_map.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf8")

    def no_embedding(*args, **kwargs):
        raise AssertionError("--apply-only must not embed anything")

    monkeypatch.setattr(label_embeddings, "embed_entity_pairs", no_embedding)
    applied = runner.invoke(
        app,
        [
            "merge-labels",
            str(tmp_path / "fused.spacy"),
            str(tmp_path / "m2.spacy"),
            "-m",
            str(label_map),
            "--apply-only",
            "--no-pos",
        ],
    )
    assert applied.exit_code == 0, applied.output
    docs = read_docs(tmp_path / "m2.spacy")
    assert ent_labels(docs) == expected_ents({"人物": "人名", "姓名": "人名"})
    assert {s.label_ for d in docs for s in d.spans[KEY] if s.label_.startswith("POS:")} == {
        "POS:noun",
        "POS:NOUN",
        "POS:zzz",
    }  # --no-pos
    assert json.loads(label_map.read_text(encoding="utf8")) == data  # the reviewed file is untouched
    # applying the reviewed map to the merged output again changes nothing
    twice = runner.invoke(
        app,
        [
            "merge-labels",
            str(tmp_path / "m2.spacy"),
            str(tmp_path / "m3.spacy"),
            "-m",
            str(label_map),
            "--apply-only",
            "--no-pos",
        ],
    )
    assert twice.exit_code == 0, twice.output
    assert ent_labels(read_docs(tmp_path / "m3.spacy")) == ent_labels(docs)
    assert re.search(r"ENT spans relabelled\s+0", twice.output)
    # wrong combinations fail clearly
    bad = runner.invoke(
        app,
        [
            "merge-labels",
            str(tmp_path / "fused.spacy"),
            str(tmp_path / "x.spacy"),
            "-m",
            str(label_map),
            "--apply-only",
            "--groups",
            str(tmp_path / "groups.json"),
        ],
    )
    assert bad.exit_code == 1 and "KF271" in bad.output
    missing = runner.invoke(
        app,
        [
            "merge-labels",
            str(tmp_path / "fused.spacy"),
            str(tmp_path / "x.spacy"),
            "-m",
            str(tmp_path / "nope.json"),
            "--apply-only",
        ],
    )
    assert missing.exit_code == 1 and "KF271" in missing.output
    neither = runner.invoke(
        app,
        ["merge-labels", str(tmp_path / "fused.spacy"), str(tmp_path / "x.spacy"), "-m", str(tmp_path / "new.json")],
    )
    assert neither.exit_code == 1 and "KF271" in neither.output


# Malformed but recoverable: chatter around a fence, single quotes, an
# unquoted key, trailing commas, and a member the model invented (星球).
RECOVERABLE_REPLY = """好的，下面是合并结果：
```json
{'人名': ['人名', '人物', '姓名',], 地名: ['地名', '城市', '星球'],}
```
如有需要请告诉我。"""

MODEL_ONLY_CONFIG = """
[vars]
endpoint = "http://127.0.0.1:9/v1/chat/completions"

[model]
@llm_models = "spacy-knowfree.OpenAICompatible.v1"
endpoint = ${vars.endpoint}
model = "merge-model"
max_retries = 0
"""


def test_merge_labels_asks_an_openai_compatible_server_once(tmp_path, fake_embeddings):
    make_merge_corpus(tmp_path / "fused.spacy")
    reply = {"text": RECOVERABLE_REPLY}
    server = ChatServer(answering(lambda prompt: reply["text"]))
    try:
        cache = tmp_path / "replies.jsonl"
        args = [
            "merge-labels",
            str(tmp_path / "fused.spacy"),
            str(tmp_path / "merged.spacy"),
            "-m",
            str(tmp_path / "map.json"),
            "-c",
            str(REPO_ROOT / "configs" / "extend_openai.cfg"),
            "--vars.endpoint",
            server.url,
            "--vars.api_key_env",
            "null",
            "--paths.cache",
            str(cache),
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 1  # ONE P_merge call over the whole inventory
        request = server.requests[0]["json"]
        assert request["model"] == "Qwen2.5-7B-Instruct"
        assert "Authorization" not in server.requests[0]["headers"]
        prompt = request["messages"][-1]["content"]
        assert "标签列表" in prompt
        for line in ("- 人名 (3)：例如 张三、李四、王五", "- 人物 (2)", "- 姓名 (1)", "- 地名 (2)", "- 城市 (2)"):
            assert line in prompt
        data = json.loads((tmp_path / "map.json").read_text(encoding="utf8"))
        assert data["params"]["groups"] == GROUPS  # 星球 (not a type in the data) dropped
        assert data["params"]["llm_reply"] == RECOVERABLE_REPLY
        assert data["params"]["groups_source"].endswith("components.llm_ent.model")
        assert ent_labels(read_docs(tmp_path / "merged.spacy")) == expected_ents({"人物": "人名", "城市": "地名"})
        assert re.search(r"LLM calls made\s+1", result.output)
        assert len(cache.read_text(encoding="utf8").splitlines()) == 1

        # recomputing answers the P_merge prompt from the response cache
        again = runner.invoke(app, args + ["--overwrite"])
        assert again.exit_code == 0, again.output
        assert len(server.requests) == 1
        assert "answered from cache" in again.output and re.search(r"LLM calls from cache\s+1", again.output)

        # a [model]-only config without a cache of its own, and an unreadable reply
        reply["text"] = "对不起，我不能合并这些标签。"
        (tmp_path / "merge.cfg").write_text(MODEL_ONLY_CONFIG, encoding="utf8")
        bad = runner.invoke(
            app,
            [
                "merge-labels",
                str(tmp_path / "fused.spacy"),
                str(tmp_path / "bad.spacy"),
                "-m",
                str(tmp_path / "bad.json"),
                "-c",
                str(tmp_path / "merge.cfg"),
                "--vars.endpoint",
                server.url,
                "--cache",
                str(tmp_path / "merge_cache.jsonl"),
            ],
        )
        assert bad.exit_code == 1 and "KF270" in bad.output
        assert len(server.requests) == 2 and server.requests[1]["json"]["model"] == "merge-model"
        assert not (tmp_path / "bad.json").exists() and not (tmp_path / "bad.spacy").exists()
        assert (tmp_path / "merge_cache.jsonl").exists()  # the (unusable) reply is kept, not asked again
    finally:
        server.close()
