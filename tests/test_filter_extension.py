"""``knowfree filter-extension``: the fused variants of the ablations."""

import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_knowfree.cli import app

runner = CliRunner()


def _fused(tmp_path):
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("张三在北京工作")
    doc.spans["sc"] = [doc.char_span(0, 2, label="PER")]
    doc.spans["knowfree_ext"] = [
        doc.char_span(0, 2, label="SEG:WORD"),
        doc.char_span(0, 2, label="POS:PROPN"),
        doc.char_span(0, 2, label="ENT:人名"),
        doc.char_span(3, 5, label="ENT:地名"),
    ]
    doc.user_data["knowfree_synthetic"] = True
    path = tmp_path / "fused.spacy"
    DocBin(store_user_data=True, docs=[doc]).to_disk(path)
    return nlp, path


def _read(nlp, path):
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def test_filter_extension_drops_one_family_and_keeps_the_rest(tmp_path):
    nlp, path = _fused(tmp_path)
    out = tmp_path / "wo_ent.spacy"
    result = runner.invoke(app, ["filter-extension", str(path), str(out), "--drop-family", "ENT"])
    assert result.exit_code == 0, result.output
    (doc,) = _read(nlp, out)
    assert [s.label_ for s in doc.spans["knowfree_ext"]] == ["SEG:WORD", "POS:PROPN"]
    assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [(0, 2, "PER")]
    assert doc.user_data["knowfree_synthetic"] is True
    assert "dropped 2" in result.output


def test_filter_extension_several_families_case_insensitive(tmp_path):
    nlp, path = _fused(tmp_path)
    out = tmp_path / "seg_only.spacy"
    result = runner.invoke(
        app, ["filter-extension", str(path), str(out), "--drop-family", "pos", "--drop-family", "ENT:"]
    )
    assert result.exit_code == 0, result.output
    (doc,) = _read(nlp, out)
    assert [s.label_ for s in doc.spans["knowfree_ext"]] == ["SEG:WORD"]
