"""Lenient reply parsing and span placement.

``tests/data/llm_replies.jsonl`` holds malformed replies: real ones from
SmolLM2-135M-Instruct (GGUF Q4_1, greedy, prompted with a draft prompt and
with the built-in zh/en templates) and hand-written ones modelled on typical
small-model output. Each record gives the sentence, the reply and the
expected result: the spans written (character offsets and label; POS spans
filled with the fallback tag are left out) and the exact counters in
``doc.user_data["knowfree_llm_stats"]``.
"""

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
import spacy

from spacy_knowfree.llm import parsing
from spacy_knowfree.llm.parsing import parse_json_items, parse_json_value
from spacy_knowfree.llm.tasks.entities.task import make_extension_entities_task, read_entity_items
from spacy_knowfree.llm.tasks.placement import align_in_order, find_occurrences
from spacy_knowfree.llm.tasks.pos.task import make_pos_task
from spacy_knowfree.llm.tasks.segmentation.task import make_segmentation_task
from spacy_knowfree.llm.tasks.stats import STATS_KEY, format_stats, summarize_stats

CORPUS_PATH = Path(__file__).parent / "data" / "llm_replies.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf8").splitlines() if line.strip()]
FAMILY = {"ent": "ENT", "seg": "SEG", "pos": "POS"}


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("zh")


def make_tasks():
    return {
        "ent": make_extension_entities_task(),
        "seg": make_segmentation_task(),
        "pos": make_pos_task(fallback_tag="FILL"),
    }


def run_task(nlp, task, text, reply):
    doc = nlp(text)
    return list(task.parse_responses([[doc]], [[reply]]))[0]


def test_corpus_is_large_and_real():
    assert len(CORPUS) >= 20
    assert sum(1 for c in CORPUS if c["source"].startswith("SmolLM2")) >= 10
    assert {c["task"] for c in CORPUS} == {"ent", "seg", "pos"}
    assert len({c["id"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_corpus_reply(nlp, case):
    task = make_tasks()[case["task"]]
    doc = run_task(nlp, task, case["text"], case["reply"])
    spans = [[s.start_char, s.end_char, s.label_] for s in doc.spans["knowfree_ext"] if s.label_ != "POS:FILL"]
    assert spans == case["expect"]["spans"], case["note"]
    assert doc.user_data[STATS_KEY][FAMILY[case["task"]]] == case["expect"]["stats"], case["note"]
    for span in doc.spans["knowfree_ext"]:
        assert 0 <= span.start < span.end <= len(doc)
        assert span.label_.split(":", 1)[0] == FAMILY[case["task"]]


# ----------------------------------------------------------------------------- parse_json_items
@pytest.mark.parametrize(
    "reply,items",
    [
        ('[{entity: "张三", type: "人名"}]', [{"entity": "张三", "type": "人名"}]),
        ("[{'entity': '张三', 'type': '人名'}]", [{"entity": "张三", "type": "人名"}]),
        ('[{"entity": "张三", "type": "人名",},]', [{"entity": "张三", "type": "人名"}]),
        ("［｛entity：“张三”，type：“人名”｝］", [{"entity": "张三", "type": "人名"}]),
        ("[{entity: 张三, type: 人名}]", [{"entity": "张三", "type": "人名"}]),
        ('前言\n```json\n[{"a": 1}]\n```\n后记 [{"b": 2}]', [{"a": 1}]),
        ('[{"a": true, "b": None, "c": 1.5e2}]', [{"a": True, "b": None, "c": 150.0}]),
        ('[{"t": "逗号，和：冒号"}]', [{"t": "逗号，和：冒号"}]),
        ('[{"t": "say \\"hi\\"\\n"}]', [{"t": 'say "hi"\n'}]),
        ("[北京、上海]", ["北京", "上海"]),
    ],
)
def test_parse_json_items_shapes(reply, items):
    parsed = parse_json_items(reply)
    assert parsed.items == items
    assert parsed.found_json


def test_truncated_tail_keeps_finished_items():
    parsed = parse_json_items('[{"entity": "北京", "type": "地名"}, {"entity": "上海", "ty')
    assert parsed.items == [{"entity": "北京", "type": "地名"}]
    assert parsed.dropped == Counter(truncated=1)
    # cut between items: nothing lost
    parsed = parse_json_items('[{"entity": "北京", "type": "地名"}, ')
    assert parsed.items == [{"entity": "北京", "type": "地名"}] and not parsed.dropped


def test_no_json_and_non_strings():
    for reply in ("", "   ", "没有实体。", None, 42, "Answer: (none)"):
        parsed = parse_json_items(reply)
        assert parsed.items == [] and parsed.dropped == Counter(no_json=1) and not parsed.found_json


def test_empty_array_is_a_valid_answer():
    parsed = parse_json_items("句子中没有实体，输出：[]")
    assert parsed.found_json and parsed.items == [] and not parsed.dropped


def test_rank_chooses_the_block_that_fits_the_text():
    reply = '格式：[{"entity": "", "type": ""}]\n输出：[{"entity": "北京", "type": "地名"}]'
    assert parse_json_items(reply).items == [{"entity": "", "type": ""}]  # default rank: ties -> first
    text = "我爱北京。"

    def rank(items):
        return sum(1 for m, _ in read_entity_items(items, Counter()) if find_occurrences(text, m)[0])

    parsed = parse_json_items(reply, rank)
    assert parsed.items == [{"entity": "北京", "type": "地名"}]
    assert parsed.dropped == Counter(other_block_items=1)


def test_prose_brackets_do_not_hide_the_answer():
    parsed = parse_json_items('注意 {name} 和 [1] 只是说明。The { is odd. [{"entity": "x", "type": "y"}]')
    assert parsed.items == [{"entity": "x", "type": "y"}]


def test_unreadable_items_are_skipped_and_counted():
    parsed = parse_json_items('[{"entity": "A", "type": "B"}, {entity [oops]: 1}, : , {"entity": "C", "type": "D"}]')
    assert parsed.items == [{"entity": "A", "type": "B"}, {"entity": "C", "type": "D"}]
    assert parsed.dropped == Counter(unreadable_item=2)


def test_parser_never_crashes_on_random_or_cut_replies():
    rng = random.Random(13)
    alphabet = "[]{}\",:，：“”'\\\n abc北京0-.`"
    replies = [c["reply"] for c in CORPUS]
    for i in range(3000):
        if i % 3 == 0:
            base = rng.choice(replies)
            a = rng.randrange(len(base))
            reply = base[a : rng.randrange(a, len(base) + 1)]
        elif i % 3 == 1:
            reply = "".join(rng.choice(alphabet) for _ in range(rng.randrange(80)))
        else:
            reply = rng.choice(["[", "{", "[{", "{[", '"', "```"]) * rng.randrange(1, 3000)
        parsed = parse_json_items(reply)
        assert isinstance(parsed.items, list)
        assert all(v >= 0 for v in parsed.dropped.values())
        assert parse_json_value(reply) is None or isinstance(parse_json_value(reply), (list, dict))


def test_parse_json_value_keeps_the_shape_and_skips_reasoning():
    assert parse_json_value('好的：{"人名": ["人物"]}') == {"人名": ["人物"]}  # not unwrapped
    assert parse_json_value('<think>先写 {"草稿": ["x"]}</think>\n{"人名": ["人物"]}') == {"人名": ["人物"]}
    fenced = '{"echo": 1}\n```json\n[["人名", ["人物"]]]\n```'
    assert parse_json_value(fenced) == [["人名", ["人物"]]]  # fenced blocks win
    two = '{"a": 1} 然后 {"b": 2, "c": 3}'
    assert parse_json_value(two) == {"a": 1}
    assert parse_json_value(two, rank=len) == {"b": 2, "c": 3}
    assert parse_json_value(two, rank=lambda v: 1 / 0) == {"a": 1}  # a broken ranker never breaks parsing
    assert parse_json_value("没有 JSON。") is None and parse_json_value(None) is None


def parser_work(reply: str):
    """Lines of the parser module executed while parsing ``reply``: a measure of
    work that, unlike a stopwatch, does not depend on how loaded the machine is."""
    lines = 0

    def tracer(frame, event, arg):
        nonlocal lines
        if frame.f_code.co_filename != parsing.__file__:
            return None
        lines += event == "line"
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = parse_json_items(reply)
    finally:
        sys.settrace(previous)
    return lines, result


ANSWER = '[{"entity": "北京", "type": "地名"}]'
ITEM = '{"entity": "北京", "type": "地名"}'


@pytest.mark.parametrize(
    "make,items,dropped",
    [
        (lambda n: "[" * n, 0, {"truncated": 1, "unreadable_item": 1}),
        (lambda n: "{" * n, 0, {"truncated": 1}),
        (lambda n: '"' * n, 0, {"no_json": 1}),
        (lambda n: "[{" * n, 0, {"truncated": 1}),
        (lambda n: "```\n" * n, 0, {"no_json": 1}),
        (lambda n: '{"a": ' * n, 0, {"no_json": 1}),
        (lambda n: '["' + "北" * n, 0, {"truncated": 1}),
        (lambda n: "[" + "," * n + "]", 0, {}),
        (lambda n: "见[1]。" * (n // 4) + ANSWER, 1, {}),
        (lambda n: "[" + ", ".join([ITEM] * n) + "]", None, {}),
    ],
    ids=[
        "brackets",
        "braces",
        "quotes",
        "bracket-brace",
        "fences",
        "nested-keys",
        "open-string",
        "commas",
        "prose-then-answer",
        "many-items",
    ],
)
def test_pathological_replies_parse_right_in_linear_work(make, items, dropped):
    small, _ = parser_work(make(200))
    large, parsed = parser_work(make(800))
    # 4x the input may cost at most ~4x the work: a quadratic parser costs ~16x
    assert large <= 5 * small, (small, large)
    assert len(parsed.items) == (800 if items is None else items)
    assert {k: v for k, v in parsed.dropped.items() if v} == dropped


# ----------------------------------------------------------------------------- placement
def test_every_occurrence_of_a_repeated_mention(nlp):
    text = "北京欢迎你，北京是中国的首都，北京北京。"
    doc = run_task(nlp, make_extension_entities_task(), text, '[{"entity": "北京", "type": "地名"}]')
    starts = [s.start_char for s in doc.spans["knowfree_ext"]]
    assert starts == [0, 6, 15, 17]
    assert all(s.text == "北京" and s.label_ == "ENT:地名" for s in doc.spans["knowfree_ext"])


def test_offsets_with_spaces_emoji_and_full_width(nlp):
    text = "Hi 😀 北京 and ＡＢＣ，北京！ 🇨🇳 iPhone 15"
    reply = json.dumps(
        [
            {"entity": "北京", "type": "LOC"},
            {"entity": "ＡＢＣ", "type": "ORG"},
            {"entity": "iPhone 15", "type": "PRODUCT"},
            {"entity": "🇨🇳", "type": "FLAG"},
        ],
        ensure_ascii=False,
    )
    doc = run_task(nlp, make_extension_entities_task(), text, reply)
    got = sorted((s.start_char, s.end_char, s.text, s.label_) for s in doc.spans["knowfree_ext"])
    expected = []
    for mention, label in [("北京", "LOC"), ("ＡＢＣ", "ORG"), ("iPhone 15", "PRODUCT"), ("🇨🇳", "FLAG")]:
        start = text.find(mention)
        while start != -1:
            expected.append((start, start + len(mention), mention, "ENT:" + label))
            start = text.find(mention, start + len(mention))
    assert got == sorted(expected)
    assert len([g for g in got if g[2] == "北京"]) == 2
    assert doc.user_data[STATS_KEY]["ENT"] == {"replies": 1, "spans": 5}


def test_find_occurrences_exact_then_folded():
    assert find_occurrences("哈哈哈哈", "哈哈") == ([(0, 2), (2, 4)], False)
    assert find_occurrences("ＡＢＣ公司和abc", "abc") == ([(6, 9)], False)
    assert find_occurrences("ＡＢＣ公司", "abc公司") == ([(0, 5)], True)
    assert find_occurrences("（注）", "(注)") == ([(0, 3)], True)
    assert find_occurrences("北京", "") == ([], False)
    assert find_occurrences("北京", "上海") == ([], True)


def test_align_in_order_repeated_and_invented_words():
    text = "的的确确是他的书的。"
    words = ["的", "的", "确确", "是", "他", "的", "书", "的", "。"]
    ranges = align_in_order(text, words)
    assert [text[a:b] for a, b in ranges] == words
    assert [r[0] for r in ranges] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    # an invented word is left out and does not derail the rest
    ranges = align_in_order("我爱北京天安门。", ["我", "爱", "上海", "北京", "天安门", "。"])
    assert ranges == [(0, 1), (1, 2), None, (2, 4), (4, 7), (7, 8)]
    # a word that straddles a gap in the text is not placed
    assert align_in_order("北京 天安门", ["北京天", "安门"]) == [None, (4, 6)]


def test_alignment_modes_on_coarse_tokens():
    nlp_en = spacy.blank("en")
    text = "The iPhone15 launched in Beijing."
    reply = '[{"entity": "Phone", "type": "PRODUCT"}, {"entity": "Beijing", "type": "LOC"}]'
    expand = run_task(nlp_en, make_extension_entities_task(alignment_mode="expand"), text, reply)
    assert [(s.text, s.label_) for s in expand.spans["knowfree_ext"]] == [
        ("iPhone15", "ENT:PRODUCT"),
        ("Beijing", "ENT:LOC"),
    ]
    assert expand.user_data[STATS_KEY]["ENT"]["realigned"] == 1
    contract = run_task(nlp_en, make_extension_entities_task(alignment_mode="contract"), text, reply)
    assert [s.text for s in contract.spans["knowfree_ext"]] == ["Beijing"]
    assert contract.user_data[STATS_KEY]["ENT"]["unalignable"] == 1
    with pytest.raises(ValueError, match="KF201"):
        make_extension_entities_task(alignment_mode="loose")


def test_restrict_to_labels(nlp):
    task = make_extension_entities_task(labels="人名, 地名", restrict_to_labels=True)
    reply = '[{"entity": "张三", "type": "人名"}, {"entity": "上海", "type": "城市"}]'
    doc = run_task(nlp, task, "张三在上海。", reply)
    assert [(s.text, s.label_) for s in doc.spans["knowfree_ext"]] == [("张三", "ENT:人名")]
    assert doc.user_data[STATS_KEY]["ENT"]["unknown_type"] == 1


def test_pos_fill_covers_every_word(nlp):
    task = make_pos_task()
    doc = nlp("我爱北京天安门。")
    doc.spans["knowfree_ext"] = [
        doc.char_span(a, b, label="SEG:WORD") for a, b in [(0, 1), (1, 2), (2, 4), (4, 7), (7, 8)]
    ]
    reply = '[{"word": "我", "pos": "PRON"}, {"word": "北", "pos": "PROPN"}, {"word": "天安门", "pos": "PROPN"}]'
    doc = list(task.parse_responses([[doc]], [[reply]]))[0]
    pos = sorted((s.start_char, s.end_char, s.label_) for s in doc.spans["knowfree_ext"] if s.label_.startswith("POS"))
    # 爱 (a word) and 京 (the untagged part of 北京) and 。 get the fallback tag
    assert pos == [
        (0, 1, "POS:PRON"),
        (1, 2, "POS:X"),
        (2, 3, "POS:PROPN"),
        (3, 4, "POS:X"),
        (4, 7, "POS:PROPN"),
        (7, 8, "POS:X"),
    ]
    assert doc.user_data[STATS_KEY]["POS"] == {"replies": 1, "filled": 3, "spans": 6}
    covered = set()
    for s in doc.spans["knowfree_ext"]:
        if s.label_.startswith("POS"):
            covered.update(range(s.start_char, s.end_char))
    assert covered == set(range(len(doc.text)))


def test_stats_summary(nlp):
    tasks = make_tasks()
    docs = [run_task(nlp, tasks[c["task"]], c["text"], c["reply"]) for c in CORPUS]
    summary = summarize_stats(docs)
    assert set(summary) == {"ENT", "SEG", "POS"}
    assert summary["ENT"]["replies"] == sum(1 for c in CORPUS if c["task"] == "ent")
    text = format_stats(summary)
    assert text.splitlines()[0].startswith("ENT: ") and "dropped:" in text and "not_found=" in text
