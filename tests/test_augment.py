"""Peer augmenters: entity-conditioned generation with entity diversification,
and entity-preserving paraphrasing. Scripted models test parsing and
plumbing; one paraphrasing run goes through the OpenAI-compatible backend
against a real HTTP server on 127.0.0.1 (and is interrupted and resumed)."""

import json
import random
import re
from collections import Counter
from typing import Callable, Iterable, List

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner

import spacy_knowfree.llm  # noqa: F401  (registers the backends)
from spacy_knowfree.cli import app
from spacy_knowfree.constants import PROVENANCE_KEY, SYNTHETIC_FLAG
from spacy_knowfree.llm.runner import LLMRunner
from spacy_knowfree.synthesis import (
    EntityGenerationAugmenter,
    EntityPool,
    GenerationSettings,
    ParaphraseAugmenter,
    ParaphraseSettings,
    find_mentions,
    format_entity,
    parse_marked,
    place_mentions,
    read_variants,
)

from _chat_server import ChatServer, reply_body
from _examples import FLAT

pytestmark = pytest.mark.usefixtures("only_localhost")


def flat_docs(nlp=None):
    nlp = nlp or spacy.blank("zh")
    docs = []
    for text, anns in FLAT:
        doc = nlp.make_doc(text)
        doc.spans["sc"] = [doc.char_span(s, e, label=label) for s, e, label in anns]
        docs.append(doc)
    return docs


class ScriptedModel:
    """A spacy-llm model answering from a function of the prompt."""

    def __init__(self, answer: Callable[[str], str]):
        self.answer = answer
        self.prompts: List[str] = []

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        out = []
        for doc_prompts in prompts:
            doc_prompts = list(doc_prompts)
            self.prompts.extend(doc_prompts)
            out.append([self.answer(p) for p in doc_prompts])
        return out


# ----------------------------------------------------------------------------- templates
@pytest.mark.parametrize(
    "lang,tails",
    [
        ("zh", ("句子：", "改写：", "改写：")),
        ("en", ("Sentence:", "Rewritten:", "Paraphrase:")),
    ],
)
def test_augmenter_templates_render_in_both_languages(lang, tails):
    nlp = spacy.blank("zh")
    docs = flat_docs(nlp)
    gen = EntityGenerationAugmenter(LLMRunner(ScriptedModel(str)), lang=lang, make_doc=nlp.make_doc)
    prompt = gen.generation_prompt([("张三", "PER"), ("北京", "LOC")], docs[:1])
    assert 'PER("张三")' in prompt and 'LOC("北京")' in prompt
    assert 'PER("张三")在LOC("北京")工作。' in prompt  # the few-shot example, marked
    assert prompt.rstrip().endswith(tails[0])
    div = gen.diversification_prompt("张三在北京工作。", (3, 5, "LOC"))
    mask = 'LOC(例如:"北京")' if lang == "zh" else 'LOC(such as:"北京")'
    assert f"张三在{mask}工作。" in div and 'LOC("' in div and div.rstrip().endswith(tails[1])
    para = ParaphraseAugmenter(LLMRunner(ScriptedModel(str)), lang=lang, make_doc=nlp.make_doc)
    prompt = para.prompt(docs[4])
    assert docs[4].text in prompt and prompt.rstrip().endswith(tails[2])
    assert ("赵六、钱七、深圳" if lang == "zh" else "赵六, 钱七, 深圳") in prompt


# ----------------------------------------------------------------------------- entity list and sampling
def test_class_uniform_and_entity_uniform_sampling():
    pool = EntityPool()
    for i in range(20):
        pool.add(f"城市{i}", "LOC")
    pool.add("张三", "PER")
    draws = {}
    for mode in ("class", "entity"):
        rng = random.Random(0)
        draws[mode] = Counter(pool.sample(rng, 1, mode)[0][1] for _ in range(2000))
    assert 0.4 < draws["class"]["PER"] / 2000 < 0.6  # types uniform
    assert draws["entity"]["PER"] / 2000 < 0.1  # every entity equally likely: 1/21
    rng = random.Random(1)
    for n in (0, 3, 9, 50):
        sample = pool.sample(rng, n, "class")
        assert len(sample) == min(n, len(pool)) and len(set(sample)) == len(sample)
        assert all(pool.type_of[text] == label for text, label in sample)
    assert not pool.add("张三", "ORG") and pool.add("李四", "PER") and len(pool) == 22


def test_marked_sentences_are_parsed_or_rejected():
    types = ["PER", "LOC", "组织机构"]
    assert parse_marked('句子：PER("张三")在LOC(“北京”)的组织机构("腾讯公司")工作。', types) == (
        ("张三在北京的腾讯公司工作。", [(0, 2, "PER"), (3, 5, "LOC"), (6, 10, "组织机构")]),
        None,
    )
    assert parse_marked('Sentence: "PER("John Smith") flew to LOC("Paris")."', ["PER", "LOC"]) == (
        ('"John Smith flew to Paris."', [(1, 11, "PER"), (20, 25, "LOC")]),
        None,
    )
    assert parse_marked("张三在北京工作。", types) == (("张三在北京工作。", []), None)  # no marks: relabelled later
    assert parse_marked('ANIMAL("猫")在LOC("北京")。', types) == (None, "unparsable")  # unknown type
    assert parse_marked('PER("张三在北京工作。', types) == (None, "unparsable")  # broken mark
    assert parse_marked('PER("")在北京。', types) == (None, "unparsable")
    assert parse_marked('PER("张三")在北京。\n解释：张三是人名。', types) == (None, "multiline")
    assert parse_marked('PER("张三")在北京。\n解释：张三是人名。', types, single_line=False)[1] is None
    assert parse_marked("  \n```\n```", types) == (None, "empty")


def test_relabelling_from_the_entity_list():
    pool = EntityPool()
    for text, label in [("张三", "PER"), ("北京", "LOC"), ("北京大学", "ORG"), ("京", "LOC"), ("Paris", "LOC")]:
        pool.add(text, label)
    text = "李四和张三在北京大学见面，然后去北京。"
    spans, added = pool.relabel(text, [(0, 2, "PER")])
    assert [(text[s:e], label) for s, e, label in spans] == [
        ("李四", "PER"),
        ("张三", "PER"),
        ("北京大学", "ORG"),
        ("北京", "LOC"),
    ]
    assert added == 3  # "京" (one character) is not relabelled, and marked spans are kept
    assert pool.relabel("Parisian food in Paris.", [])[0] == [(17, 22, "LOC")]  # word boundaries
    assert find_mentions("Paris, Parisian, (Paris)", "Paris") == [(0, 5), (18, 23)]


# ----------------------------------------------------------------------------- generation + diversification
NEW_ENTITY = {"张三": "孙八", "李四": "周九", "北京": "杭州", "上海": "南京", "深圳": "广州", "腾讯公司": "阿里巴巴"}
_ENTITIES_RE = re.compile(r'([^\s，,("]+)\("([^"]+)"\)')


def scripted_generation(prompt: str) -> str:
    if "例如:" in prompt:  # diversification: replace the masked entity by a new one of the type
        sentence = prompt.split("句子：")[-1].split("\n")[0]
        label, old = re.search(r'(\w+)\(例如:"([^"]+)"\)', sentence).groups()
        new = NEW_ENTITY.get(old, old + "乙")
        if old == "王五":
            return "抱歉，我不能改写。"  # no marked entity in the reply
        return sentence.replace(f'{label}(例如:"{old}")', format_entity(new, label))
    wanted = prompt.split("实体：")[-1].split("\n")[0]
    marks = [f'{label}("{text}")' for label, text in _ENTITIES_RE.findall(wanted)]
    if "钱七" in marks[0]:
        return "、".join(marks) + "\n这是一个句子。"  # two lines
    if "赵六" in marks[0]:
        return marks[0] + '和ANIMAL("熊猫")见面了。'  # a type that does not exist
    # mark only the first entity: the others must be relabelled from the entity list
    plain = [re.search(r'"([^"]+)"', m).group(1) for m in marks[1:]]
    return "句子：" + marks[0] + ("和" + "、".join(plain) if plain else "") + "都出现在这里。"


def test_generation_with_diversification_grows_the_entity_list(tmp_path):
    nlp = spacy.blank("zh")
    docs = flat_docs(nlp)
    model = ScriptedModel(scripted_generation)
    # every prompt asks for all entities, so the second round must show the grown list
    settings = GenerationSettings(n_samples=8, max_entities=20, min_entities=20, n_examples=2, batch_size=4, seed=3)
    augmenter = EntityGenerationAugmenter(LLMRunner(model), lang="zh", settings=settings, make_doc=nlp.make_doc)
    out, summary = augmenter.run(docs, progress=False)
    gen_prompts = [p for p in model.prompts if "例如:" not in p]
    div_prompts = [p for p in model.prompts if "例如:" in p]
    assert len(gen_prompts) == 8 and summary.outputs == len(model.prompts)
    first = gen_prompts[0]
    assert "示例：" in first and first.count("句子：") == 3  # two few-shot examples + the query
    assert re.search(r'句子：\w*PER\("\w+"\)', first)  # examples mark their entities as Type("entity")
    records = augmenter.records
    round_one_new = [
        r["new_entity"]
        for r in records[: records.index([r for r in records if r["step"] == "generate"][4])]
        if r.get("new_entity")
    ]
    assert round_one_new, "the first round should find new entities"
    wanted = [_ENTITIES_RE.findall(p.split("实体：")[-1].split("\n")[0]) for p in gen_prompts]
    assert [len(w) for w in wanted] == [9] * 4 + [9 + len(round_one_new)] * 4
    assert all(set(round_one_new) <= {text for _, text in w} for w in wanted[4:])  # sampled from the grown list
    kept_gen = [r for r in records if r["step"] == "generate" and r["status"] == "kept"]
    dropped_gen = Counter(r["status"] for r in records if r["step"] == "generate" and r["status"] != "kept")
    assert dropped_gen["multiline"] >= 1 and dropped_gen["unparsable"] >= 1
    for reason in ("multiline", "unparsable"):
        assert summary.dropped[reason] == dropped_gen[reason]
    assert len(div_prompts) == len(kept_gen)  # one diversification per kept sentence
    assert 'PER(例如:"' in "".join(div_prompts) or 'LOC(例如:"' in "".join(div_prompts)
    # every requested entity of a kept sentence is labelled: marked, or relabelled from the list
    for record in kept_gen:
        labelled = {(record["text"][s:e], label) for s, e, label in record["spans"]}
        assert {tuple(e) for e in record["entities"]} <= labelled
    assert summary.extra["spans relabelled from the entity list"] >= 8
    new = [r["new_entity"] for r in records if r.get("new_entity")]
    assert all(augmenter.pool.type_of[e] in ("PER", "LOC", "ORG") for e in new)
    assert len(augmenter.pool) == 9 + len(new) == summary.extra["entity list: entities at end"]
    assert summary.dropped.get("diversify: no_new_entity", 0) == sum(
        1 for r in records if r["step"] == "diversify" and r["masked"] == "王五"
    )
    assert all(d.user_data[SYNTHETIC_FLAG] is True for d in out)
    assert {d.user_data[PROVENANCE_KEY]["step"] for d in out} == {"generate", "diversify"}
    assert summary.docs == len(out) == summary.kept
    DocBin(docs=out, store_user_data=True).to_disk(tmp_path / "gen.spacy")
    back = list(DocBin().from_disk(tmp_path / "gen.spacy").get_docs(nlp.vocab))
    assert [d.user_data[SYNTHETIC_FLAG] for d in back] == [True] * len(out)
    assert [[(s.text, s.label_) for s in d.spans["sc"]] for d in back] == [
        [(s.text, s.label_) for s in d.spans["sc"]] for d in out
    ]
    with pytest.raises(ValueError, match="KF305"):
        EntityGenerationAugmenter(LLMRunner(model), spans_key="nope").run([nlp.make_doc("没有实体")], progress=False)
    with pytest.raises(ValueError, match="KF304"):
        GenerationSettings(sampling="zipf").check()


def test_generation_cli_resumes_from_the_cache(tmp_path):
    nlp = spacy.blank("zh")
    DocBin(docs=flat_docs(nlp)).to_disk(tmp_path / "train.spacy")
    config = tmp_path / "llm.cfg"
    config.write_text('[model]\n@llm_models = "knowfree-test.ScriptedGenerator.v1"\n', encoding="utf8")
    args = [
        "augment",
        "generate",
        str(tmp_path / "train.spacy"),
        str(tmp_path / "gen.spacy"),
        "-c",
        str(config),
        "--n-samples",
        "6",
        "--batch-size",
        "3",
        "--sampling",
        "entity",
        "--summary",
        str(tmp_path / "s.json"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "LLM calls made" in result.output and "entity list: entities at start" in result.output
    first = srsly.read_json(tmp_path / "s.json")
    assert first["llm"]["made"] == first["llm"]["prompts"] > 6
    texts = [d.text for d in DocBin().from_disk(tmp_path / "gen.spacy").get_docs(nlp.vocab)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    second = srsly.read_json(tmp_path / "s.json")
    assert second["llm"] == {"prompts": first["llm"]["prompts"], "made": 0, "cached": first["llm"]["prompts"]}
    assert [d.text for d in DocBin().from_disk(tmp_path / "gen.spacy").get_docs(nlp.vocab)] == texts


from spacy_llm.registry import registry  # noqa: E402


@registry.llm_models("knowfree-test.ScriptedGenerator.v1")
def make_scripted_generator() -> Callable:
    return ScriptedModel(scripted_generation)


# ----------------------------------------------------------------------------- paraphrasing
PARAPHRASES = {
    "张三在北京工作。": "改写：张三目前在北京上班。",
    "李四去了上海。": "李斯去了上海。",  # an entity was altered
    "王五加入了腾讯公司": "王五加入了腾讯公司",  # unchanged
    "赵六和钱七在深圳见面": "1. 赵六与钱七在深圳碰面，钱七很高兴。",
}


def test_both_augmenters_are_augmenters():
    from spacy_knowfree.synthesis import Augmenter

    runner = LLMRunner(ScriptedModel(lambda prompt: ""))
    assert isinstance(EntityGenerationAugmenter(runner), Augmenter)
    assert isinstance(ParaphraseAugmenter(runner), Augmenter)
    assert not isinstance(object(), Augmenter)


def test_place_mentions_and_read_variants():
    mentions = [("北京大学", "ORG"), ("北京", "LOC"), ("张三", "PER")]
    spans, missing = place_mentions("张三离开北京大学，回到北京。", mentions)
    assert spans == [(0, 2, "PER"), (4, 8, "ORG"), (11, 13, "LOC")] and missing == []
    assert place_mentions("张三离开北京大学。", mentions)[1] == ["北京"]  # only inside the longer one
    assert place_mentions("张三离开北京大学。", mentions, allow_nested=True)[1] == []
    assert place_mentions("Parisian cafes", [("Paris", "LOC")])[1] == ["Paris"]
    assert place_mentions("李四和李四", [("李四", "PER"), ("李四", "PER")])[1] == []
    assert place_mentions("李四来了", [("李四", "PER"), ("李四", "PER")])[1] == ["李四"]  # occurs fewer times
    assert read_variants('["张三去了北京。", "北京来了张三。"]', 2) == ["张三去了北京。", "北京来了张三。"]
    assert read_variants("1. 张三去了北京。\n2. 北京来了张三。\n3. 多余的。", 2) == ["张三去了北京。", "北京来了张三。"]
    assert read_variants("改写：“张三去了北京。”\n这个改写保留了实体。", 1) == ["张三去了北京。"]
    assert read_variants("", 1) == []


def test_paraphrases_keep_every_entity_or_are_dropped():
    nlp = spacy.blank("zh")
    docs = flat_docs(nlp)
    model = ScriptedModel(lambda p: PARAPHRASES[p.split("句子：")[-1].split("\n")[0]])
    augmenter = ParaphraseAugmenter(LLMRunner(model), lang="zh", make_doc=nlp.make_doc)
    out, summary = augmenter.run(docs, progress=False)
    assert len(model.prompts) == 4  # "今天天气很好" has no entity: skipped
    assert "一字不改" in model.prompts[0] and "张三、北京" in model.prompts[0]
    assert [d.text for d in out] == ["张三目前在北京上班。", "赵六与钱七在深圳碰面，钱七很高兴。"]
    assert [(s.text, s.label_) for s in out[0].spans["sc"]] == [("张三", "PER"), ("北京", "LOC")]
    assert [(s.text, s.label_) for s in out[1].spans["sc"]] == [
        ("赵六", "PER"),
        ("钱七", "PER"),
        ("深圳", "LOC"),
        ("钱七", "PER"),
    ]
    assert [(e.text, e.label_) for e in out[1].ents] == [(s.text, s.label_) for s in out[1].spans["sc"]]
    assert dict(summary.dropped) == {"entity_lost": 1, "copy_of_source": 1}
    assert summary.outputs == 4 and summary.kept == 2 and summary.docs == 2
    assert summary.extra["input docs without entities (skipped)"] == 1
    assert all(d.user_data[SYNTHETIC_FLAG] and d.user_data[PROVENANCE_KEY]["method"] == "paraphrase" for d in out)
    assert out[0].user_data[PROVENANCE_KEY]["source_text"] == "张三在北京工作。"


def test_several_variants_per_sentence():
    nlp = spacy.blank("zh")
    docs = flat_docs(nlp)[:1]  # 张三在北京工作。
    reply = '```json\n["张三目前在北京上班。", "北京是张三工作的地方。", "张三在京工作。"]\n```'
    model = ScriptedModel(lambda p: reply)
    settings = ParaphraseSettings(n_variants=3)
    out, summary = ParaphraseAugmenter(LLMRunner(model), settings=settings, make_doc=nlp.make_doc).run(
        docs, progress=False
    )
    assert "3 种不同的改写" in model.prompts[0]
    assert [d.text for d in out] == ["张三目前在北京上班。", "北京是张三工作的地方。"]
    assert [[(s.text, s.label_) for s in d.spans["sc"]] for d in out] == [
        [("张三", "PER"), ("北京", "LOC")],
        [("北京", "LOC"), ("张三", "PER")],
    ]
    assert summary.outputs == 3 and dict(summary.dropped) == {"entity_lost": 1}
    with pytest.raises(ValueError, match="KF304"):
        ParaphraseSettings(n_variants=0).check()


@pytest.fixture
def chat_server():
    """Paraphrases by sentence; HTTP 503 for the prompt holding ``server.refuse``
    (a 400 would be recorded as a dropped prompt and the run would go on)."""
    server = ChatServer()
    server.refuse = None

    def behaviour(request, n):
        prompt = request["messages"][-1]["content"]
        if server.refuse and server.refuse in prompt:
            return 503, {}, {"error": {"message": "refused"}}, 0.0
        return 200, {}, reply_body(PARAPHRASES[prompt.split("句子：")[-1].split("\n")[0]]), 0.0

    server.behaviour = behaviour
    yield server
    server.close()


def test_paraphrase_cli_over_http_is_interrupted_and_resumed(chat_server, tmp_path):
    nlp = spacy.blank("zh")
    DocBin(docs=flat_docs(nlp)).to_disk(tmp_path / "train.spacy")
    config = tmp_path / "llm.cfg"
    config.write_text(
        '[vars]\nendpoint = "http://127.0.0.1:9/v1/chat/completions"\n\n'
        '[model]\n@llm_models = "spacy-knowfree.OpenAICompatible.v1"\n'
        'endpoint = ${vars.endpoint}\nmodel = "paraphraser"\nconcurrency = 1\nmax_retries = 0\n'
        f'\n[model.cache]\n@llm_misc = "spacy-knowfree.ResponseCache.v1"\npath = "{tmp_path / "replies.jsonl"}"\n',
        encoding="utf8",
    )
    out = tmp_path / "para.spacy"
    args = [
        "augment",
        "paraphrase",
        str(tmp_path / "train.spacy"),
        str(out),
        "-c",
        str(config),
        "--summary",
        str(tmp_path / "s.json"),
        "--log",
        str(tmp_path / "log.jsonl"),
        "--vars.endpoint",
        chat_server.url,
    ]  # overrides as in spacy train
    chat_server.refuse = "王五加入了腾讯公司"  # the third prompt fails: the run stops there
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "KF202" in result.output and "resume" in result.output
    assert len(chat_server.prompts()) == 3 and not out.exists()
    chat_server.refuse = None
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(chat_server.prompts()) == 3 + 2  # only the failed and the never-sent prompt
    summary = srsly.read_json(tmp_path / "s.json")
    assert summary["llm"] == {"prompts": 4, "made": 2, "cached": 2}
    assert summary["dropped"] == {"entity_lost": 1, "copy_of_source": 1} and summary["docs"] == 2
    for row in ("dropped: entity_lost", "dropped: copy_of_source", "LLM calls made", "answered from cache"):
        assert row in result.output
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    assert [d.text for d in docs] == ["张三目前在北京上班。", "赵六与钱七在深圳碰面，钱七很高兴。"]
    assert all(d.user_data[SYNTHETIC_FLAG] is True for d in docs)  # survives the DocBin
    assert [(s.text, s.label_) for s in docs[0].spans["sc"]] == [("张三", "PER"), ("北京", "LOC")]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["status"] for r in log] == ["kept", "entity_lost", "copy_of_source", "kept"]
    result = CliRunner().invoke(app, args)  # a finished run costs nothing
    assert result.exit_code == 0 and len(chat_server.prompts()) == 5
    assert srsly.read_json(tmp_path / "s.json")["llm"] == {"prompts": 4, "made": 0, "cached": 4}
