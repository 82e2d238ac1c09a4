"""``knowfree extend`` and ``knowfree report``: the workflow commands around training."""

import json

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_knowfree.cli import app

from _examples import FLAT, make_examples, span_tuples

pytest.importorskip("jieba")
runner = CliRunner()


def test_extend_adds_lexicon_spans_and_keeps_gold_and_user_data(tmp_path):
    nlp = spacy.blank("zh")
    docs = [eg.reference for eg in make_examples(nlp, FLAT, synthetic=[FLAT[0][0]])]
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "train.spacy")
    result = runner.invoke(
        app,
        ["extend", str(tmp_path / "train.spacy"), str(tmp_path / "fused.spacy"), "--family", "SEG", "--family", "ENT"],
    )
    assert result.exit_code == 0, result.output
    fused = list(DocBin().from_disk(tmp_path / "fused.spacy").get_docs(nlp.vocab))
    assert [d.text for d in fused] == [d.text for d in docs]
    for before, after in zip(docs, fused):
        assert span_tuples(after) == span_tuples(before)
        labels = {span.label_ for span in after.spans["knowfree_ext"]}
        assert "SEG:WORD" in labels
        assert not any(label.startswith("POS:") for label in labels)
    assert fused[0].user_data.get("knowfree_synthetic") is True
    assert "SEG" in result.output


def test_extend_rejects_an_empty_docbin(tmp_path):
    DocBin().to_disk(tmp_path / "empty.spacy")
    result = runner.invoke(app, ["extend", str(tmp_path / "empty.spacy"), str(tmp_path / "out.spacy")])
    assert result.exit_code == 1
    assert "KF008" in result.output


def test_report_reads_spans_and_ents_metrics(tmp_path):
    (tmp_path / "knowfree.json").write_text(
        json.dumps({"spans_sc_p": 0.5, "spans_sc_r": 0.25, "spans_sc_f": 1 / 3, "speed": 10})
    )
    (tmp_path / "ner.json").write_text(json.dumps({"ents_p": 0.8, "ents_r": 0.6, "ents_f": 0.6857}))
    result = runner.invoke(
        app, ["report", str(tmp_path / "knowfree.json"), str(tmp_path / "ner.json"), "-o", str(tmp_path / "t.md")]
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "t.md").read_text()
    assert "| knowfree | spans_sc | 50.00 | 25.00 | 33.33 |" in table
    assert "| ner | ents | 80.00 | 60.00 | 68.57 |" in table
    (tmp_path / "bad.json").write_text(json.dumps({"token_acc": 1.0}))
    bad = runner.invoke(app, ["report", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and "KF009" in bad.output
