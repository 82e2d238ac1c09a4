"""The CRF peer of the accuracy benchmark (benchmarks/crf.py) and the features
it shares with the knowfree_crf component (spacy_knowfree.peer.crf_features)."""

import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Span

from spacy_knowfree.docbin_io import write_docbin
from spacy_knowfree.peer import crf_features

from _examples import FLAT, NESTED

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import crf  # noqa: E402


def make_docs(data):
    nlp = spacy.blank("zh")
    docs = []
    for text, spans in data:
        doc = nlp.make_doc(text)
        doc.spans["sc"] = [Span(doc, start, end, label=label) for start, end, label in spans]
        docs.append(doc)
    return docs


def test_char_type():
    assert [crf_features.char_type(ch) for ch in "北7７aＡ，!~ あ"] == [
        "Han",
        "digit",
        "digit",
        "Latin",
        "Latin",
        "punct",
        "punct",
        "punct",
        "other",
        "other",
    ]


def test_token_features_are_exact_at_the_edges_and_inside():
    chars = list("张三在北京")
    assert crf_features.token_features(chars, 0) == [
        "bias",
        "T0=Han",
        "U-2=<s>",
        "U-1=<s>",
        "U+0=张",
        "U+1=三",
        "U+2=在",
        "B-2=<s><s>",
        "B-1=<s>张",
        "B+0=张三",
        "B+1=三在",
        "T=<s>张三",
    ]
    assert crf_features.token_features(chars, 2) == [
        "bias",
        "T0=Han",
        "U-2=张",
        "U-1=三",
        "U+0=在",
        "U+1=北",
        "U+2=京",
        "B-2=张三",
        "B-1=三在",
        "B+0=在北",
        "B+1=北京",
        "T=三在北",
    ]
    assert crf_features.token_features(chars, 4) == [
        "bias",
        "T0=Han",
        "U-2=在",
        "U-1=北",
        "U+0=京",
        "U+1=</s>",
        "U+2=</s>",
        "B-2=在北",
        "B-1=北京",
        "B+0=京</s>",
        "B+1=</s></s>",
        "T=北京</s>",
    ]
    assert crf_features.token_features(["7"], 0)[1] == "T0=digit"


def test_bioes_round_trip_and_lenient_chunks():
    spans = [(0, 2, "PER"), (3, 4, "LOC"), (5, 9, "ORG")]
    tags = crf_features.spans_to_bioes(10, spans)
    assert tags == ["B-PER", "E-PER", "O", "S-LOC", "O", "B-ORG", "I-ORG", "I-ORG", "E-ORG", "O"]
    assert crf_features.bioes_to_spans(tags) == spans
    # an unfinished chunk ends where the next one starts or the label changes
    assert crf_features.bioes_to_spans(["B-PER", "I-PER", "B-LOC", "E-LOC", "I-ORG"]) == [
        (0, 2, "PER"),
        (2, 4, "LOC"),
        (4, 5, "ORG"),
    ]


def test_nested_spans_keep_the_outermost():
    kept, dropped = crf_features.flat_spans([(0, 4, "ORG"), (0, 2, "LOC"), (5, 7, "LOC"), (6, 9, "X")])
    assert kept == [(0, 4, "ORG"), (6, 9, "X")]
    assert dropped == 2


def test_tiny_crf_predicts_its_training_spans(tmp_path):
    pytest.importorskip("pycrfsuite")
    docs = make_docs(FLAT)
    model = tmp_path / "m.crfsuite"
    assert crf.train_crf(docs, model, c1=0.0, c2=0.01, max_iterations=100) == 0
    predicted = crf.predict_spans(model, docs)
    assert predicted == [sorted(spans) for _, spans in FLAT]
    assert crf.score(docs, predicted)["f"] == 1.0
    # an empty prediction scores 0, not an error
    assert crf.score(docs, [[] for _ in docs])["r"] == 0.0


def test_nested_training_counts_what_it_leaves_out(tmp_path):
    pytest.importorskip("pycrfsuite")
    docs = make_docs(NESTED)
    record = crf.select_and_score(docs, docs, docs, tmp_path, c1_grid=(0.0,), c2_grid=(0.01,), max_iterations=100)
    assert record["trained_on"] == "outermost flat spans (3 of 8 nested gold spans left out)"
    assert record["r"] == pytest.approx(5 / 8)  # scored on all gold spans, nested ones too
    assert record["p"] == 1.0


def test_crf_refuses_to_choose_on_anything_but_dev(tmp_path):
    docs = make_docs(FLAT)
    with pytest.raises(ValueError, match="dev split is empty"):
        crf.select_and_score(docs, [], docs, tmp_path)
    write_docbin(docs, tmp_path / "train.spacy")
    with pytest.raises(SystemExit, match="no dev split"):
        crf.main(
            [
                "--train",
                str(tmp_path / "train.spacy"),
                "--dev",
                str(tmp_path / "dev.spacy"),
                "--test",
                str(tmp_path / "train.spacy"),
                "--output",
                str(tmp_path / "out"),
            ]
        )


def test_benchmark_refuses_crf_without_dev(tmp_path):
    import accuracy

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_docbin(make_docs(FLAT), corpus / "train_250.spacy")
    write_docbin(make_docs(FLAT), corpus / "test.spacy")
    with pytest.raises(RuntimeError, match="no dev split"):
        accuracy.train_and_evaluate("crf", corpus, "250", 0, tmp_path / "run", 1200, 200, 0)
    assert not (tmp_path / "run").exists()
    assert accuracy.run_seeds("crf", [0, 1, 2]) == [0]
    assert accuracy.run_seeds("knowfree", [1, 2]) == [1, 2]
