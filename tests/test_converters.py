"""Converters: real-data quirks (shared/datasets README), JSONL/DocBin round
trips, malformed input, and the ``convert`` / ``to-jsonl`` commands."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

from spacy_knowfree.cli import app
from spacy_knowfree.converters import (
    BENCHMARKS,
    EXTENSION_SPANS_KEY,
    ReadStats,
    doc_span_tuples,
    doc_to_record,
    make_doc,
    parse_char_index,
    read_benchmark,
    read_conll,
    read_conllu,
    read_jsonl,
    read_labels_file,
    read_sighan,
    spans_to_tags,
    tags_to_spans,
    write_jsonl,
    write_labels_file,
)
from spacy_knowfree.converters.tags import REPAIR_END, REPAIR_START

FFFD2 = "\ufffd\ufffd"
_CACHE = {}


def _read(datasets_dir, name, split):
    """Each benchmark split is read once per session."""
    key = (name, split)
    if key not in _CACHE:
        stats = ReadStats()
        docs = read_benchmark(name, split, datasets_dir, stats=stats, warn=False)
        _CACHE[key] = (docs, stats)
    return _CACHE[key]


def _raw_sentences(path, sep):
    """(token, tag) lists of a CoNLL file, parsed independently of the reader."""
    sents, cur = [], []
    for line in Path(path).read_text(encoding="utf8").split("\n"):
        if line:
            cur.append(tuple(line.split(sep)))
        elif cur:
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf8")
    return path


# ---------------------------------------------------------------- Weibo

WEIBO_COUNTS = {
    "train": {
        "PER.NAM": 578,
        "PER.NOM": 772,
        "ORG.NAM": 183,
        "ORG.NOM": 42,
        "GPE.NAM": 205,
        "GPE.NOM": 8,
        "LOC.NAM": 56,
        "LOC.NOM": 51,
    },
    "dev": {
        "PER.NAM": 90,
        "PER.NOM": 208,
        "ORG.NAM": 47,
        "ORG.NOM": 5,
        "GPE.NAM": 26,
        "GPE.NOM": 1,
        "LOC.NAM": 6,
        "LOC.NOM": 6,
    },
    "test": {
        "PER.NAM": 113,
        "PER.NOM": 172,
        "ORG.NAM": 39,
        "ORG.NOM": 17,
        "GPE.NAM": 47,
        "GPE.NOM": 2,
        "LOC.NAM": 19,
        "LOC.NOM": 9,
    },
}


@pytest.mark.parametrize(
    "split,n_sents,n_chars,n_fffd2,n_repairs,total",
    [("train", 1350, 73778, 12, 10, 1895), ("dev", 270, 14509, 16, 0, 389), ("test", 270, 14842, 16, 4, 418)],
)
def test_weibo_counts(datasets_dir, split, n_sents, n_chars, n_fffd2, n_repairs, total):
    docs, stats = _read(datasets_dir, "weibo", split)
    assert len(docs) == stats.docs == n_sents
    assert sum(len(doc) for doc in docs) == n_chars
    tokens = Counter(token.text for doc in docs for token in doc)
    assert tokens[FFFD2] == n_fffd2
    # every token is one character except the two-character U+FFFD pairs
    assert sum(len(doc.text) for doc in docs) == n_chars + n_fffd2
    assert all(len(t) == 1 for t in tokens if t != FFFD2)
    assert dict(stats.spans) == WEIBO_COUNTS[split]
    assert sum(stats.spans.values()) == total
    assert stats.repairs[REPAIR_START] == n_repairs
    assert stats.repairs[REPAIR_END] == 0  # BIO has no closing tag
    for doc in docs:
        assert [(e.start, e.end, e.label_) for e in doc.ents] == doc_span_tuples(doc, "sc")


def test_weibo_characters_and_digits(datasets_dir):
    docs, _ = _read(datasets_dir, "weibo", "train")
    raw = _raw_sentences(Path(datasets_dir) / BENCHMARKS["weibo"].files["train"], "\t")
    assert len(raw) == len(docs)
    digits = 0
    for doc, sent in zip(docs, raw):
        expected = [FFFD2 if tok == FFFD2 + "0" else tok[0] for tok, _ in sent]
        assert [t.text for t in doc] == expected
        digits += sum(tok[0].isdigit() for tok, _ in sent)
    assert digits > 100  # digit characters are kept, not stripped with the index
    assert sum(t.text.isdigit() for doc in docs for t in doc) == digits
    assert (
        sum(
            t.text == "\ufffd"
            for split in ("train", "dev", "test")
            for doc in _read(datasets_dir, "weibo", split)[0]
            for t in doc
        )
        == 84
    )


def test_weibo_stray_inside_tags(datasets_dir):
    """An I-PER.NOM right after I-PER.NAM (line 1266) starts a new entity."""
    docs, stats = _read(datasets_dir, "weibo", "train")
    lines = [line for path, line in stats.repair_lines[REPAIR_START]]
    assert lines[0] == 1266 and len(lines) == 10
    adjacent = [
        (a, b)
        for doc in docs
        for a, b in zip(doc.spans["sc"], list(doc.spans["sc"])[1:])
        if a.end == b.start and a.label_ == "PER.NAM" and b.label_ == "PER.NOM"
    ]
    assert len(adjacent) >= 1
    # BIO tags written back from the spans equal the file except at the repairs
    raw = _raw_sentences(Path(datasets_dir) / BENCHMARKS["weibo"].files["train"], "\t")
    differ = sum(
        spans_to_tags(len(doc), doc_span_tuples(doc, "sc"), "bio") != [tag for _, tag in sent]
        for doc, sent in zip(docs, raw)
    )
    assert 1 <= differ <= 10


def test_weibo_repairs_are_reported(datasets_dir, capsys):
    path = Path(datasets_dir) / BENCHMARKS["weibo"].files["test"]
    read_conll(path, sep="\t", token_format="char-index")
    out = capsys.readouterr().out
    assert "KW101" in out and "4 chunk(s)" in out
    read_conll(path, sep="\t", token_format="char-index", warn=False)
    assert "KW101" not in capsys.readouterr().out


# ---------------------------------------------------------------- Resume

RESUME_COUNTS = {
    "train": {"NAME": 952, "ORG": 4613, "TITLE": 6308, "EDU": 858, "CONT": 260, "PRO": 287, "RACE": 115, "LOC": 47},
    "dev": {"NAME": 110, "ORG": 523, "TITLE": 690, "EDU": 106, "CONT": 33, "PRO": 18, "RACE": 15, "LOC": 2},
    "test": {"NAME": 112, "ORG": 553, "TITLE": 772, "EDU": 112, "CONT": 28, "PRO": 33, "RACE": 14, "LOC": 6},
}


@pytest.mark.parametrize(
    "split,n_sents,n_chars,total",
    [("train", 3821, 124099, 13440), ("dev", 463, 13890, 1497), ("test", 477, 15100, 1630)],
)
def test_resume_counts(datasets_dir, split, n_sents, n_chars, total):
    docs, stats = _read(datasets_dir, "resume", split)
    assert len(docs) == n_sents
    assert sum(len(doc) for doc in docs) == sum(len(doc.text) for doc in docs) == n_chars
    assert dict(stats.spans) == RESUME_COUNTS[split]
    assert sum(stats.spans.values()) == total
    if split != "train":
        assert not stats.repairs


def test_resume_m_org_sentence_starts(datasets_dir):
    docs, stats = _read(datasets_dir, "resume", "train")
    starts = [line for _, line in stats.repair_lines[REPAIR_START]]
    assert starts == [62392, 64414]
    assert stats.repairs[REPAIR_END] == 2  # the ORG cut at the sentence end
    cut = [
        i
        for i, doc in enumerate(docs)
        if doc.spans["sc"]
        and doc.spans["sc"][0].start == 0
        and i > 0
        and docs[i - 1].spans["sc"]
        and docs[i - 1].spans["sc"][-1].end == len(docs[i - 1])
        and docs[i - 1].spans["sc"][-1].label_ == "ORG"
        and doc.spans["sc"][0].label_ == "ORG"
    ]
    raw = _raw_sentences(Path(datasets_dir) / BENCHMARKS["resume"].files["train"], " ")
    m_starts = [i for i, sent in enumerate(raw) if sent[0][1] == "M-ORG"]
    assert len(m_starts) == 2 and set(m_starts) <= set(cut)
    # BMES written back from the spans equals the file except in those 4 sentences
    differ = [
        i
        for i, (doc, sent) in enumerate(zip(docs, raw))
        if spans_to_tags(len(doc), doc_span_tuples(doc, "sc"), "bmes") != [t for _, t in sent]
    ]
    assert differ == sorted(m_starts + [i - 1 for i in m_starts])


# ---------------------------------------------------------------- MSR / PKU


@pytest.mark.parametrize(
    "name,n_lines,n_words,n_chars,sizes",
    [("msr", 3985, 106873, 184355, (1985, 500, 1500)), ("pku", 1944, 104372, 172733, (1000, 244, 700))],
)
def test_sighan_counts_and_split(datasets_dir, name, n_lines, n_words, n_chars, sizes):
    path = Path(datasets_dir) / BENCHMARKS[name].files["test"]
    stats = ReadStats()
    docs = read_sighan(path, stats=stats)
    assert (len(docs), stats.spans["WORD"], stats.tokens) == (n_lines, n_words, n_chars)
    raw = [line for line in path.read_bytes().decode("utf8").split("\r\n") if line.strip()]
    assert len(raw) == n_lines
    for doc, line in zip(docs[:300], raw):
        assert doc.text == "".join(line.split())
        words = list(doc.spans["sc"])
        assert [w.text for w in words] == line.split()
        assert words[0].start == 0 and words[-1].end == len(doc)
        assert all(a.end == b.start for a, b in zip(words, words[1:]))
    splits = [_read(datasets_dir, name, split)[0] for split in ("train", "dev", "test")]
    assert tuple(len(s) for s in splits) == sizes
    assert [d.text for s in splits for d in s] == [d.text for d in docs]


def test_sighan_line_range(tmp_path):
    path = _write(tmp_path, "gold.utf8", "我们  是\r\n\r\n中国  人  \r\n好   的\r\n")
    docs = read_sighan(path)
    assert [[w.text for w in d.spans["sc"]] for d in docs] == [["我们", "是"], ["中国", "人"], ["好", "的"]]
    assert [d.text for d in read_sighan(path, lines=(2, 3))] == ["中国人", "好的"]
    assert spans_to_tags(3, doc_span_tuples(docs[1], "sc"), "bmes") == ["B-WORD", "E-WORD", "S-WORD"]
    for bad in [(0, 1), (2, 1), (1, 4)]:
        with pytest.raises(ValueError, match="KF115"):
            read_sighan(path, lines=bad)


# ---------------------------------------------------------------- UD

UD_V1_UPOS = {
    "NOUN": (27096, 3637, 3310),
    "VERB": (16403, 2084, 1981),
    "PUNCT": (13595, 1764, 1688),
    "PART": (10460, 1366, 1346),
    "PROPN": (8679, 1056, 1006),
    "NUM": (5352, 654, 653),
    "ADV": (4584, 616, 549),
    "ADP": (4379, 532, 513),
    "ADJ": (2446, 315, 271),
    "PRON": (1433, 175, 168),
    "CONJ": (1385, 164, 191),
    "DET": (1041, 118, 138),
    "X": (1000, 105, 104),
    "AUX": (730, 68, 91),
    "SYM": (25, 9, 3),
}
UD_V2_UPOS = {
    "ADJ": (312, 272),
    "ADP": (555, 535),
    "ADV": (322, 292),
    "AUX": (365, 422),
    "CCONJ": (164, 191),
    "DET": (119, 139),
    "NOUN": (3637, 3312),
    "NUM": (654, 653),
    "PART": (1041, 994),
    "PRON": (175, 168),
    "PROPN": (1056, 1006),
    "PUNCT": (1770, 1691),
    "SCONJ": (560, 505),
    "SYM": (3, 0),
    "VERB": (1851, 1745),
    "X": (79, 87),
}


@pytest.mark.parametrize(
    "i,split,n_sents,n_words", [(0, "train", 3997, 98608), (1, "dev", 500, 12663), (2, "test", 500, 12012)]
)
def test_ud_v1_counts(datasets_dir, i, split, n_sents, n_words):
    docs, stats = _read(datasets_dir, "ud_zh", split)
    assert len(docs) == n_sents and sum(stats.spans.values()) == n_words
    assert dict(stats.spans) == {tag: counts[i] for tag, counts in UD_V1_UPOS.items()}
    assert "CCONJ" not in stats.spans and "SCONJ" not in stats.spans


@pytest.mark.parametrize("i,split,n_words", [(0, "dev", 12663), (1, "test", 12012)])
def test_ud_v2_counts_and_comments(datasets_dir, i, split, n_words):
    docs, stats = _read(datasets_dir, "ud_zh_v2", split)
    assert len(docs) == 500 and sum(stats.spans.values()) == n_words
    assert dict(stats.spans) == {tag: c[i] for tag, c in UD_V2_UPOS.items() if c[i]}
    path = Path(datasets_dir) / BENCHMARKS["ud_zh_v2"].files[split]
    texts = [
        line[len("# text = ") :] for line in path.read_text(encoding="utf8").split("\n") if line.startswith("# text = ")
    ]
    assert len(texts) == 500
    # comment lines are skipped: the text is the concatenation of the FORMs
    assert all(doc.text == text.replace(" ", "") for doc, text in zip(docs, texts))
    # with SpaceAfter honoured the text is exactly the '# text' comment
    spaced = read_conllu(path, space_after=True)
    assert [d.text for d in spaced] == texts
    assert sum(d.text != t for d, t in zip(docs, texts)) > 0
    # same sentences and tokenization as v1.4 (one test token differs in length)
    v1, _ = _read(datasets_dir, "ud_zh", split)
    differ = sum([len(s) for s in a.spans["sc"]] != [len(s) for s in b.spans["sc"]] for a, b in zip(v1, docs))
    assert differ == (0 if split == "dev" else 1)


def test_conllu_skips_ranges_empty_nodes_and_comments(tmp_path):
    rows = [
        "# sent_id = 1",
        "# text = 他們去了。",
        "1-2\t他們\t_\t_\t_\t_\t_\t_\t_\t_",
        "1\t他\t他\tPRON\tPRP\t_\t3\tnsubj\t_\t_",
        "2\t們\t們\tPART\tSFN\t_\t1\tcase\t_\t_",
        "3\t去了\t去\tVERB\tVV\t_\t0\troot\t_\t_",
        "3.1\t走\t走\tVERB\tVV\t_\t_\t_\t3:conj\t_",
        "4\t。\t。\tPUNCT\t.\t_\t3\tpunct\t_\tSpaceAfter=No",
        "",
        "1\t好\t_\tADJ\tJJ\t_\t0\troot\t_\t_",
    ]
    path = _write(tmp_path, "x.conllu", "\n".join(rows) + "\n")
    docs = read_conllu(path)
    assert [d.text for d in docs] == ["他們去了。", "好"]
    assert doc_span_tuples(docs[0], "sc") == [(0, 1, "PRON"), (1, 2, "PART"), (2, 4, "VERB"), (4, 5, "PUNCT")]
    assert [t.text for t in docs[0]] == list("他們去了。")
    xpos = read_conllu(path, tag_field="xpos")
    assert [s.label_ for s in xpos[0].spans["sc"]] == ["PRP", "SFN", "VV", "."]


@pytest.mark.parametrize(
    "row,code",
    [
        ("1\t他\t_\tPRON\t_\t_\t0", "KF101"),
        ("x\t他\t_\tPRON\t_\t_\t0\troot\t_\t_", "KF116"),
        ("1\t他\t_\t_\t_\t_\t0\troot\t_\t_", "KF117"),
        ("1\t\t_\tPRON\t_\t_\t0\troot\t_\t_", "KF107"),
    ],
)
def test_conllu_errors(tmp_path, row, code):
    path = _write(tmp_path, "bad.conllu", "# c\n" + row + "\n")
    with pytest.raises(ValueError, match=code) as err:
        read_conllu(path)
    assert f"{path}:2" in str(err.value)


# ---------------------------------------------------------------- CoNLL (synthetic)


def test_parse_char_index():
    assert parse_char_index("科0") == "科"
    assert parse_char_index("81") == "8"
    assert parse_char_index("112") == "1"
    assert parse_char_index("e12") == "e"
    assert parse_char_index(FFFD2 + "0") == FFFD2
    assert parse_char_index("\ufffd3") == "\ufffd"
    assert parse_char_index("科") is None and parse_char_index("科x") is None


@pytest.mark.parametrize(
    "tags,scheme,spans,repairs",
    [
        (
            ["B-A", "I-A", "O", "I-A", "I-B"],
            "bio",
            [(0, 2, "A"), (3, 4, "A"), (4, 5, "B")],
            [(3, REPAIR_START), (4, REPAIR_START)],
        ),
        (["B-A", "B-A", "I-A"], "bio", [(0, 1, "A"), (1, 3, "A")], []),
        (["S-A", "B-B", "I-B", "E-B", "E-B"], "bioes", [(0, 1, "A"), (1, 4, "B"), (4, 5, "B")], [(4, REPAIR_START)]),
        (["B-A", "M-A", "O", "M-A", "E-A"], "bmes", [(0, 2, "A"), (3, 5, "A")], [(0, REPAIR_END), (3, REPAIR_START)]),
        (["B-A", "M-A"], "auto", [(0, 2, "A")], [(0, REPAIR_END)]),
        (["O", "O"], "auto", [], []),
    ],
)
def test_tags_to_spans_conlleval(tags, scheme, spans, repairs):
    assert tags_to_spans(tags, scheme) == (spans, repairs)


def test_tags_errors():
    with pytest.raises(ValueError, match="KF104"):
        tags_to_spans(["B-A", "I-A", "M-A"])
    with pytest.raises(ValueError, match="KF103"):
        tags_to_spans(["B-A", "E-A"], "bio")
    with pytest.raises(ValueError, match="KF103"):
        tags_to_spans(["PER"])
    with pytest.raises(ValueError, match="KF105"):
        tags_to_spans(["O"], "iob2")
    with pytest.raises(ValueError, match="KF106"):
        spans_to_tags(4, [(0, 3, "A"), (1, 2, "B")])
    assert spans_to_tags(4, [(0, 3, "A"), (3, 4, "B")], "bioes") == ["B-A", "I-A", "E-A", "S-B"]
    assert spans_to_tags(3, [(0, 2, "A")], "bio") == ["B-A", "I-A", "O"]


def test_conll_bioes_crlf_columns(tmp_path):
    text = "张\tNR\tB-PER\r\n三\tNR\tE-PER\r\n在\tP\tO\r\n京\tNR\tS-LOC\r\n\r\n好\tVA\tO\r\n"
    path = _write(tmp_path, "x.conll", text)
    path.write_bytes(text.encode("utf8"))
    docs = read_conll(path)
    assert [d.text for d in docs] == ["张三在京", "好"]
    assert doc_span_tuples(docs[0], "sc") == [(0, 2, "PER"), (3, 4, "LOC")]
    assert [e.label_ for e in docs[0].ents] == ["PER", "LOC"]
    with pytest.raises(ValueError, match="KF103"):
        read_conll(path, tag_column=1)  # the POS column holds no chunk tags
    docs = read_conll(path, spans_key="ner", set_ents=False)
    assert "ner" in docs[0].spans and not docs[0].ents


@pytest.mark.parametrize(
    "text,kwargs,code,line",
    [
        ("a B-X\nb I-X c\n", {}, "KF101", 2),
        ("a B-X\nb Q-X\n", {}, "KF103", 2),
        ("a B-X\nb M-X\nc I-X\n", {}, "KF104", None),
        ("a B-X\nb M-X\n", {"scheme": "bio"}, "KF103", 2),
        ("a0 O\nb O\n", {"token_format": "char-index"}, "KF102", 2),
        ("a O\n O\n", {}, "KF107", 2),
        ("a\tO\n\tO\n", {}, "KF107", 2),
        ("a O\n", {"tag_column": 5}, "KF123", None),
        ("a O\n", {"scheme": "iob"}, "KF105", None),
    ],
)
def test_conll_errors(tmp_path, text, kwargs, code, line):
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(ValueError, match=code) as err:
        read_conll(path, **kwargs)
    if line is not None:
        assert f"{path}:{line}" in str(err.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("中 O\n".encode("gbk"))
    with pytest.raises(ValueError, match="KF100"):
        read_conll(path)


# ---------------------------------------------------------------- JSONL

REFERENCE_LINE = (
    '{"text": ["对", "，", "输", "给", "一", "个", "女", "人", "，", "的", "成", "绩", "。", "失", "望"], '
    '"label": ["O", "O", "O", "O", "O", "O", "B-PER.NOM", "E-PER.NOM", "O", "O", "O", "O", "O", "O", "O"], '
    '"entities": [{"start": 6, "entity": "PER.NOM", "end": 8, "text": ["女", "人"]}]}'
)
NESTED = {
    "text": list("北京大学学生会"),
    "entities": [
        {"start": 0, "end": 7, "entity": "ORG", "text": list("北京大学学生会")},
        {"start": 0, "end": 4, "entity": "ORG", "text": list("北京大学")},
        {"start": 0, "end": 2, "entity": "LOC", "text": list("北京")},
    ],
}


def _entities(record):
    return sorted((e["start"], e["end"], e["entity"], tuple(e["text"])) for e in record["entities"])


def test_jsonl_reference_line(tmp_path):
    path = _write(tmp_path, "train.jsonl", REFERENCE_LINE + "\n\n")
    (doc,) = read_jsonl(path)
    assert doc.text == "对，输给一个女人，的成绩。失望"
    assert [(e.text, e.label_) for e in doc.ents] == [("女人", "PER.NOM")]
    assert EXTENSION_SPANS_KEY not in doc.spans
    assert doc_to_record(doc) == json.loads(REFERENCE_LINE)


@pytest.mark.parametrize("end_inclusive", [False, True])
def test_jsonl_round_trip_flat_real(datasets_dir, tmp_path, end_inclusive):
    docs, _ = _read(datasets_dir, "weibo", "dev")
    path = tmp_path / "dev.jsonl"
    assert write_jsonl(path, docs, end_inclusive=end_inclusive) == len(docs)
    again = read_jsonl(path, end_inclusive=end_inclusive)
    assert [[t.text for t in d] for d in again] == [[t.text for t in d] for d in docs]
    assert [doc_span_tuples(d, "sc") for d in again] == [doc_span_tuples(d, "sc") for d in docs]
    assert [d.text for d in again] == [d.text for d in docs]  # no spaces, even with FFFD pairs
    path2 = tmp_path / "again.jsonl"
    write_jsonl(path2, again, end_inclusive=end_inclusive)
    assert path2.read_text(encoding="utf8") == path.read_text(encoding="utf8")
    first = json.loads(path.read_text(encoding="utf8").split("\n")[1])
    if first["entities"]:
        e = first["entities"][0]
        assert e["end"] - e["start"] == len(e["text"]) - (1 if end_inclusive else 0)


@pytest.mark.parametrize("end_inclusive", [False, True])
def test_jsonl_round_trip_nested(tmp_path, end_inclusive):
    record = json.loads(json.dumps(NESTED))
    if end_inclusive:
        for e in record["entities"]:
            e["end"] -= 1
    path = _write(tmp_path, "nested.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
    (doc,) = read_jsonl(path, end_inclusive=end_inclusive)
    assert sorted(doc_span_tuples(doc, "sc")) == [(0, 2, "LOC"), (0, 4, "ORG"), (0, 7, "ORG")]
    assert len(doc.ents) == 0  # nested spans only in doc.spans
    out = doc_to_record(doc, end_inclusive=end_inclusive)
    assert "label" not in out
    assert _entities(out) == _entities(record)
    # the other end convention is caught through the entity texts
    with pytest.raises(ValueError, match="KF11[12]") as err:
        read_jsonl(path, end_inclusive=not end_inclusive)
    assert f"{path}:1" in str(err.value)
    assert f"end_inclusive={end_inclusive}" in str(err.value)  # the hint names the fix


def test_jsonl_labels_files_and_extension_spans(tmp_path):
    record = {
        "text": list("张三在北京"),
        "entities": [
            {"start": 0, "end": 2, "entity": "PER", "text": ["张", "三"]},
            {"start": 0, "end": 2, "entity": "NOUN", "text": ["张", "三"]},
            {"start": 3, "end": 5, "entity": "地名", "text": ["北", "京"]},
            {"start": 3, "end": 5, "entity": "LOC", "text": ["北", "京"]},
        ],
    }
    path = _write(
        tmp_path,
        "x.jsonl",
        json.dumps(record, ensure_ascii=False) + "\n" + json.dumps({"text": list("好"), "entities": []}) + "\n",
    )
    labels_json = tmp_path / "labels.json"
    write_labels_file(labels_json, ["PER", "LOC"], ["NOUN", "地名"], counts={"NOUN": 3})
    data = srsly.read_json(labels_json)
    assert list(data) == ["O", "PER", "LOC", "NOUN", "地名"]
    assert data["NOUN"] == {"idx": 3, "count": 3, "is_target": False}
    assert read_labels_file(labels_json) == (["PER", "LOC"], ["NOUN", "地名"])
    labels_txt = _write(tmp_path, "labels.txt", "O\nPER\nLOC\n\n")
    assert read_labels_file(labels_txt) == (["PER", "LOC"], [])
    for labels in (labels_json, labels_txt, ["PER", "LOC"]):
        stats = ReadStats()
        docs = read_jsonl(path, labels=labels, stats=stats)
        assert doc_span_tuples(docs[0], "sc") == [(0, 2, "PER"), (3, 5, "LOC")]
        assert doc_span_tuples(docs[0], EXTENSION_SPANS_KEY) == [(0, 2, "NOUN"), (3, 5, "地名")]
        assert [e.label_ for e in docs[0].ents] == ["PER", "LOC"]
        assert EXTENSION_SPANS_KEY in docs[1].spans and len(docs[1].spans[EXTENSION_SPANS_KEY]) == 0
        assert stats.extension_spans == Counter({"NOUN": 1, "地名": 1})
    out = doc_to_record(docs[0])
    assert _entities(out) == _entities(record)
    assert out["label"] == ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]
    assert _entities(doc_to_record(docs[0], include_extension=False)) == [
        (0, 2, "PER", ("张", "三")),
        (3, 5, "LOC", ("北", "京")),
    ]
    # without a labels file every entity is a target
    (flat, _) = read_jsonl(path)
    assert len(flat.spans["sc"]) == 4 and len(flat.ents) == 0


def test_jsonl_plain_string_and_english(tmp_path):
    rows = [
        {"text": "我爱北京", "spans": [{"start": 2, "end": 4, "label": "LOC"}]},
        {
            "text": ["a", "movie", "with", "vin", "diesel"],
            "entities": [{"start": 3, "end": 5, "entity": "ACTOR", "text": ["vin", "diesel"]}],
        },
        {"text": list("张三好"), "label": ["B-PER", "I-PER", "O"]},
        {"text": list("张三好"), "label": ["I-PER", "I-PER", "O"]},
    ]
    path = _write(tmp_path, "x.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    stats = ReadStats()
    docs = read_jsonl(path, stats=stats, warn=False)
    assert docs[0].text == "我爱北京" and [e.text for e in docs[0].ents] == ["北京"]
    assert docs[1].text == "a movie with vin diesel" and docs[1].ents[0].text == "vin diesel"
    assert read_jsonl(path, spaces=False)[1].text == "amoviewithvindiesel"
    assert doc_span_tuples(docs[2], "sc") == [(0, 2, "PER")]
    assert stats.repairs[REPAIR_START] == 1 and stats.repair_lines[REPAIR_START] == [(str(path), 4)]


@pytest.mark.parametrize(
    "line,code",
    [
        ('{"text": ["a", "b"], "entities": [}', "KF108"),
        ('["a", "b"]', "KF109"),
        ('{"tokens": ["a"]}', "KF109"),
        ('{"text": ["a", ""]}', "KF109"),
        ('{"text": ["a", "b"], "entities": [{"start": 0, "entity": "X"}]}', "KF110"),
        ('{"text": ["a", "b"], "entities": [{"start": "0", "end": 1, "entity": "X"}]}', "KF110"),
        ('{"text": ["a", "b"], "entities": [{"start": 1, "end": 3, "entity": "X"}]}', "KF111"),
        ('{"text": ["a", "b"], "entities": [{"start": 1, "end": 1, "entity": "X"}]}', "KF111"),
        ('{"text": ["a", "b"], "entities": [{"start": 0, "end": 1, "entity": "X", "text": ["b"]}]}', "KF112"),
        ('{"text": ["a", "b"], "label": ["O"]}', "KF113"),
        ('{"text": ["a", "b"], "label": ["O", "X"]}', "KF103"),
    ],
)
def test_jsonl_errors(tmp_path, line, code):
    path = _write(tmp_path, "bad.jsonl", '{"text": ["a"]}\n' + line + "\n")
    with pytest.raises(ValueError, match=code) as err:
        read_jsonl(path)
    assert f"{path}:2" in str(err.value)


def test_jsonl_inclusive_hint_and_bad_labels(tmp_path):
    path = _write(tmp_path, "x.jsonl", '{"text": ["a", "b"], "entities": [{"start": 1, "end": 1, "entity": "X"}]}\n')
    with pytest.raises(ValueError, match="end_inclusive=True"):
        read_jsonl(path)
    assert doc_span_tuples(read_jsonl(path, end_inclusive=True)[0], "sc") == [(1, 2, "X")]
    bad = _write(tmp_path, "labels.json", '["PER", "LOC"]')
    with pytest.raises(ValueError, match="KF114"):
        read_labels_file(bad)
    with pytest.raises(ValueError, match="KF121"):
        read_jsonl(path, spans_key="x", extension_key="x")


# ---------------------------------------------------------------- DocBin


def test_docbin_round_trip(datasets_dir):
    docs = _read(datasets_dir, "weibo", "test")[0][:60]
    nested = make_doc(Vocab(), list("北京大学学生会"), [(0, 7, "ORG"), (0, 2, "LOC")], extension_spans=[(0, 4, "NOUN")])
    nested.user_data["source"] = "x"
    docbin = DocBin(store_user_data=True)
    for doc in docs + [nested]:
        docbin.add(doc)
    loaded = list(DocBin().from_bytes(docbin.to_bytes()).get_docs(Vocab()))
    for a, b in zip(docs + [nested], loaded):
        assert [t.text for t in a] == [t.text for t in b] and a.text == b.text
        for key in ("sc", EXTENSION_SPANS_KEY):
            assert doc_span_tuples(a, key) == doc_span_tuples(b, key)
            assert (key in a.spans) == (key in b.spans)
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
    assert loaded[-1].user_data["source"] == "x" and not loaded[-1].ents


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def _docbin(path):
    return list(DocBin().from_disk(path).get_docs(Vocab()))


def test_cli_convert_conll_and_to_jsonl(datasets_dir, tmp_path, runner):
    src = Path(datasets_dir) / BENCHMARKS["weibo"].files["test"]
    out = tmp_path / "weibo_test.spacy"
    result = runner.invoke(
        app, ["convert", str(src), str(out), "--format", "conll", "--token-format", "char-index", "--sep", "tab"]
    )
    assert result.exit_code == 0, result.output
    assert "KW101" in result.output and "4 x chunk start" in result.output
    assert "PER.NOM" in result.output and "270 docs" in result.output
    docs = _docbin(out)
    assert len(docs) == 270 and sum(len(d.spans["sc"]) for d in docs) == 418
    jsonl = tmp_path / "weibo_test.jsonl"
    labels = tmp_path / "labels.json"
    result = runner.invoke(app, ["to-jsonl", str(out), str(jsonl), "--labels-out", str(labels)])
    assert result.exit_code == 0, result.output
    assert len(jsonl.read_text(encoding="utf8").splitlines()) == 270
    assert read_labels_file(labels)[0] == sorted(WEIBO_COUNTS["test"])
    back = tmp_path / "back.spacy"
    result = runner.invoke(app, ["convert", str(jsonl), str(back), "-f", "jsonl", "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    again = _docbin(back)
    assert [doc_span_tuples(d, "sc") for d in again] == [doc_span_tuples(d, "sc") for d in docs]


def test_cli_convert_sighan_conllu_and_benchmark(datasets_dir, tmp_path, runner):
    out = tmp_path / "msr_dev.spacy"
    src = Path(datasets_dir) / BENCHMARKS["msr"].files["test"]
    result = runner.invoke(app, ["convert", str(src), str(out), "-f", "sighan", "--lines", "1986-2485"])
    assert result.exit_code == 0, result.output
    assert [d.text for d in _docbin(out)] == [d.text for d in _read(datasets_dir, "msr", "dev")[0]]
    result = runner.invoke(app, ["convert", str(src), str(out), "-f", "sighan", "--lines", "1985"])
    assert result.exit_code == 1 and "KF122" in result.output
    ud = Path(datasets_dir) / BENCHMARKS["ud_zh"].files["test"]
    result = runner.invoke(app, ["convert", str(ud), str(tmp_path / "ud.spacy"), "-f", "conllu", "--no-ents"])
    assert result.exit_code == 0, result.output
    ud_docs = _docbin(tmp_path / "ud.spacy")
    assert len(ud_docs) == 500 and not any(d.ents for d in ud_docs)
    result = runner.invoke(app, ["convert-benchmark", "pku", str(datasets_dir), str(tmp_path / "pku")])
    assert result.exit_code == 0, result.output
    assert [len(_docbin(tmp_path / "pku" / f"{s}.spacy")) for s in ("train", "dev", "test")] == [1000, 244, 700]
    result = runner.invoke(app, ["convert-benchmark", "nope", str(datasets_dir), str(tmp_path / "x")])
    assert result.exit_code == 1 and "KF120" in result.output


def test_cli_convert_malformed(tmp_path, runner):
    src = _write(tmp_path, "bad.txt", "a B-X\nb I-X extra\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.spacy"), "-f", "conll"])
    assert result.exit_code == 1
    assert "KF101" in result.output and "bad.txt:2" in result.output.replace("\n", "")
    assert not (tmp_path / "o.spacy").exists()


def test_cli_help(runner):
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_knowfree", "convert", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--format" in proc.stdout and "--end-inclusive" in proc.stdout
    for command in ("to-jsonl", "convert-benchmark"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
