"""Raw text in (``knowfree convert --format text``, issue 18 item 1): plain
text and JSONL with a text field, character tokens, sentence splitting,
dropped blank and duplicate documents, and a KF error for every bad input."""

import gzip
import json
from pathlib import Path
from typing import List

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_knowfree.converters import read_text, split_sentences

from _cli import BINARY, BOM, quiet, run  # noqa: F401  (quiet: an autouse fixture)


def _write(path: Path, content: str) -> Path:
    path.write_bytes(content.encode("utf8"))
    return path


def _docbin(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(Vocab()))


def _texts(docs) -> List[str]:
    return [doc.text for doc in docs]


# ----------------------------------------------------------------- reading
def test_lines_blank_duplicates_crlf_bom_and_mixed_script(tmp_path):
    content = "我爱北京天安门\r\n\r\n  用Python写代码  \r\n我爱北京天安门\r\n \u3000\r\n最后一行"
    source = _write(tmp_path / "raw.txt", BOM + content)
    docs, stats = read_text(source)
    assert _texts(docs) == ["我爱北京天安门", "用Python写代码", "最后一行"]
    assert [len(doc) for doc in docs] == [7, 10, 4]
    assert [token.text for token in docs[1]][:4] == ["用", "P", "y", "t"]  # one token per character
    assert (stats.records, stats.empty, stats.duplicates, stats.docs) == (6, 2, 1, 3)
    assert (stats.chars, stats.tokens, stats.longest) == (21, 21, 10)
    assert stats.text_format == "lines"
    assert all(not doc.spans and not doc.ents for doc in docs)


def test_zh_tokens_are_the_blank_zh_char_tokens(tmp_path):
    text = "北京 欢迎你  Hello"
    docs, _ = read_text(_write(tmp_path / "raw.txt", text + "\n"))
    expected = spacy.blank("zh").make_doc(text)
    assert [t.text for t in docs[0]] == [t.text for t in expected]
    assert [t.whitespace_ for t in docs[0]] == [t.whitespace_ for t in expected]
    assert [t.text for t in docs[0]] == ["北", "京", "欢", "迎", "你", " ", "H", "e", "l", "l", "o"]
    assert docs[0].text == text


def test_english_tokenizer(tmp_path):
    docs, stats = read_text(_write(tmp_path / "raw.txt", "Hello world. It works!\n"), lang="en", split=True)
    assert _texts(docs) == ["Hello world.", "It works!"]
    assert [len(doc) for doc in docs] == [3, 3]
    assert stats.tokens == 6


def test_no_dedup_keeps_duplicates(tmp_path):
    source = _write(tmp_path / "raw.txt", "好\n好\n好\n")
    docs, stats = read_text(source, dedup=False)
    assert _texts(docs) == ["好", "好", "好"] and stats.duplicates == 0
    docs, stats = read_text(source)
    assert _texts(docs) == ["好"] and stats.duplicates == 2


@pytest.mark.parametrize(
    "text,expected",
    [
        ("我爱北京。天安门很大！你去过吗？", ["我爱北京。", "天安门很大！", "你去过吗？"]),
        ("他说：“你好！”然后走了。", ["他说：“你好！”", "然后走了。"]),
        ("真的吗？！太好了（笑）。好", ["真的吗？！", "太好了（笑）。", "好"]),
        ("「走吧。」他说。『好！』", ["「走吧。」", "他说。", "『好！』"]),
        ("Pi is 3.14. Really? Yes!", ["Pi is 3.14.", "Really?", "Yes!"]),
        ('He said "Hi." Then left.', ['He said "Hi."', "Then left."]),
        ("(See above.) Next one", ["(See above.)", "Next one"]),
        ("Wait... what?!No way", ["Wait...", "what?!", "No way"]),
        ("我用Python。It works. 很好", ["我用Python。", "It works.", "很好"]),
        ("file.txt and v1.2 stay whole", ["file.txt and v1.2 stay whole"]),
        ("  第一行。\n第二行  ", ["第一行。", "第二行"]),
        ("。。", ["。。"]),
    ],
)
def test_split_sentences(text, expected):
    sentences = split_sentences(text)
    assert sentences == expected
    assert "".join("".join(s.split()) for s in sentences) == "".join(text.split())  # nothing lost


def test_split_never_cuts_a_long_sentence(tmp_path):
    long = "很长" * 1500  # 3000 characters without a terminator
    docs, stats = read_text(_write(tmp_path / "raw.txt", f"{long}\n短句。{long}。\n"), split=True)
    assert _texts(docs) == [long, "短句。", long + "。"]
    assert [len(doc) for doc in docs] == [3000, 3, 3001]
    assert stats.longest == 3001


def test_split_counts_duplicate_sentences(tmp_path):
    source = _write(tmp_path / "raw.txt", "转发微博。今天很好！\n转发微博。明天也好。\n\n今天很好！\n")
    docs, stats = read_text(source, split=True)
    assert _texts(docs) == ["转发微博。", "今天很好！", "明天也好。"]
    assert (stats.records, stats.empty, stats.duplicates, stats.docs, stats.chars) == (4, 1, 2, 3, 15)


def test_jsonl_text_field(tmp_path):
    records = [
        {"text": "北京欢迎你", "id": 1},
        {"text": ""},
        {"text": "  "},
        {"text": "北京欢迎你"},
        {"text": "上海。广州！", "meta": {"x": 1}},
    ]
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    source = _write(tmp_path / "raw.jsonl", "\n".join(lines) + "\n\n")
    docs, stats = read_text(source)
    assert _texts(docs) == ["北京欢迎你", "上海。广州！"]
    assert [len(doc) for doc in docs] == [5, 6]
    assert (stats.records, stats.empty, stats.duplicates, stats.text_format) == (6, 3, 1, "jsonl")
    docs, _ = read_text(source, split=True)
    assert _texts(docs) == ["北京欢迎你", "上海。", "广州！"]


def test_jsonl_detected_from_content_other_field_and_forced_lines(tmp_path):
    source = _write(tmp_path / "raw.txt", BOM + '{"body": "你好"}\n{"body": "再见"}\n')
    docs, stats = read_text(source, text_field="body")
    assert _texts(docs) == ["你好", "再见"] and stats.text_format == "jsonl"
    docs, stats = read_text(source, text_format="lines")
    assert _texts(docs) == ['{"body": "你好"}', '{"body": "再见"}'] and stats.text_format == "lines"
    plain = _write(tmp_path / "plain.txt", "{不是JSON}\n")
    assert _texts(read_text(plain)[0]) == ["{不是JSON}"]


def test_python_api_raises_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\[KF128\]"):
        read_text(_write(tmp_path / "blank.txt", "\n\n"))
    with pytest.raises(ValueError, match=r"\[KF129\].*bad\.jsonl:2"):
        read_text(_write(tmp_path / "bad.jsonl", '{"text": "a"}\n[1]\n'))
    with pytest.raises(ValueError, match=r"\[KF105\]"):
        read_text(_write(tmp_path / "ok.txt", "a\n"), text_format="xml")


# ----------------------------------------------------------------- command line
def test_cli_writes_docs_without_spans_and_a_summary(capsys, tmp_path):
    source = _write(tmp_path / "raw.txt", BOM + "我爱北京。我爱北京。\r\n\r\nHello there. Bye!\r\n我爱北京。\r\n")
    out = tmp_path / "out.spacy"
    code, output = run(capsys, "convert", source, out, "--format", "text", "--split-sentences")
    assert code == 0, output
    docs = _docbin(out)
    assert _texts(docs) == ["我爱北京。", "Hello there.", "Bye!"]
    assert [len(doc) for doc in docs] == [5, 11, 4]
    assert all(not doc.spans and not doc.ents for doc in docs)
    assert BOM not in docs[0].text and docs[0][0].text == "我"
    lines = {
        line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1]
        for line in output.splitlines()
        if line.strip() and line.rsplit(None, 1)[-1].isdigit()
    }
    assert lines["docs written (sentences)"] == "3"
    assert lines["dropped empty"] == "1"
    assert lines["dropped duplicate sentences"] == "2"
    assert lines["characters"] == "21"
    assert "Read 4 lines (one document a line)" in output


def test_cli_jsonl_options(capsys, tmp_path):
    source = _write(tmp_path / "raw.data", '{"t": "你好"}\n{"t": "你好"}\n{"t": "再见"}\n')
    out = tmp_path / "out.spacy"
    code, output = run(
        capsys, "convert", source, out, "-f", "text", "--text-format", "jsonl", "--text-field", "t", "--no-dedup"
    )
    assert code == 0, output
    assert _texts(_docbin(out)) == ["你好", "你好", "再见"]
    assert "JSONL, the 't' field" in output


UTF16 = "你好\n".encode("utf-16")
GBK_LINE2 = "第一行\n".encode("utf8") + "第二行\n".encode("gbk")


@pytest.mark.parametrize(
    "name,content,kf,says",
    [
        ("gbk.txt", GBK_LINE2, "KF126", ["gbk.txt:2", "iconv"]),
        ("utf16.txt", UTF16, "KF126", ["UTF-16", "iconv"]),
        ("empty.txt", b"", "KF128", ["empty.txt", "empty"]),
        ("bom_only.txt", BOM.encode("utf8"), "KF128", ["blank"]),
        ("blank.txt", b"\n \r\n\t\n", "KF128", ["all 3"]),
        ("binary.txt", BINARY, "KF127", ["binary.txt", "binary"]),
        ("nul.txt", b"abc\x00def\n", "KF127", ["line 1"]),
        ("archive.txt", gzip.compress("你好\n".encode("utf8")), "KF127", ["gunzip"]),
        ("invalid.jsonl", b'{"text": "a"}\n{"text": \n', "KF129", ["invalid.jsonl:2", "invalid JSON"]),
        ("nofield.jsonl", b'{"text": "a"}\n\n{"body": "b"}\n', "KF129", ["nofield.jsonl:3", "keys: body"]),
        ("number.jsonl", b'{"text": 3}\n', "KF129", ["number.jsonl:1", "int"]),
        ("tokens.jsonl", b'{"text": ["a"]}\n', "KF129", ["--format jsonl"]),
        ("array.json", b'[{"text": "a"}]\n', "KF129", ["array.json:1"]),
        ("notext.jsonl", b'{"text": ""}\n{"text": " "}\n', "KF128", ["non-empty 'text'"]),
    ],
)
def test_cli_bad_input_gets_a_kf_error(capsys, tmp_path, name, content, kf, says):
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "out.spacy"
    code, output = run(capsys, "convert", source, out, "--format", "text")
    assert code == 1, output
    assert f"[{kf}]" in output, output
    assert "Traceback" not in output, output
    flat = output.replace("\n", "")
    for text in says:
        assert text in flat, (text, output)
    assert not out.exists()
