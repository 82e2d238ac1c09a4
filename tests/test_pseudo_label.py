"""Self-training: ``knowfree pseudo-label`` and :mod:`spacy_knowfree.synthesis.pseudo_labels`
(confidence filter, flags and provenance, counts, bad inputs)."""

import json
import subprocess
import sys
import warnings
from typing import Dict, List, Tuple

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example
from spacy.vocab import Vocab

from spacy_knowfree.constants import EXTENSION_SPANS_KEY, PROVENANCE_KEY, SYNTHETIC_FLAG, UNLABELED_FLAG
from spacy_knowfree.docbin_io import read_docbin, write_docbin
from spacy_knowfree.knowledge.pipeline import build_knowledge_pipeline
from spacy_knowfree.synthesis import PseudoLabeler, is_synthetic_doc
from spacy_knowfree.synthesis.pseudo_labels import pseudo_label, scored_spans

from _cli import quiet, run  # noqa: F401  (quiet: autouse fixture)
from _examples import FLAT, make_examples, make_nlp, train

UNSEEN = ["孙八在广州上班", "周九去了杭州。", "吴十加入了百度公司", "张三和李四在上海见面", "这里风景很好"]
TEXTS = [text for text, _ in FLAT] + UNSEEN

Scored = Tuple[int, int, str, float]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny knowfree pipeline trained on FLAT, saved to disk."""
    nlp = make_nlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train(nlp, make_examples(nlp, FLAT)) == 1.0
    path = tmp_path_factory.mktemp("teacher") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    return spacy.load(teacher_dir)


def unlabeled_docs(nlp, texts=TEXTS):
    """Docs as ``knowfree extend --unlabeled`` writes them: flagged unlabeled,
    with an extension group and further user data."""
    docs = []
    for text in texts:
        doc = nlp.make_doc(text)
        doc.spans[EXTENSION_SPANS_KEY] = [Span(doc, 0, 2, label="SEG:WORD")]
        doc.user_data[UNLABELED_FLAG] = True
        doc.user_data["source"] = "raw.txt"
        docs.append(doc)
    return docs


def kept_spans(docs, key: str = "sc") -> List[List[Scored]]:
    return [[(s.start, s.end, s.label_, score) for s, score in scored_spans(doc, key)] for doc in docs]


@pytest.fixture(scope="module")
def all_scored(teacher) -> List[List[Scored]]:
    """Every span the teacher decodes at a very low confidence, with its probability."""
    docs, _ = PseudoLabeler(teacher, min_confidence=0.01)(unlabeled_docs(teacher))
    return kept_spans(docs)


def middle_confidence(all_scored, above: float) -> float:
    """A confidence between two observed probabilities above ``above`` (spans on both sides)."""
    scores = sorted({round(s, 6) for spans in all_scored for *_, s in spans if s > above})
    assert len(scores) >= 2, scores
    mid = len(scores) // 2
    return (scores[mid - 1] + scores[mid]) / 2


# ----------------------------------------------------------------------------- confidence filter
@pytest.mark.parametrize("regime", ["above the teacher's threshold", "below the teacher's threshold"])
def test_only_spans_above_min_confidence_are_kept_with_their_scores(teacher, all_scored, regime):
    knowfree = teacher.get_pipe("knowfree")
    threshold = knowfree.cfg["threshold"]
    if regime.startswith("above"):
        confidence = middle_confidence(all_scored, threshold)
    else:
        confidence = middle_confidence([[s for s in spans if s[3] < threshold] for spans in all_scored], 0.01)
    docs, stats = PseudoLabeler(teacher, min_confidence=confidence)(unlabeled_docs(teacher))
    got = kept_spans(docs)
    decode_at = min(threshold, confidence)
    dropped: Dict[str, int] = {}
    kept: Dict[str, int] = {}
    for doc, spans, every in zip(docs, got, all_scored):
        expected = [span for span in every if span[3] > confidence]
        assert [s[:3] for s in spans] == [s[:3] for s in expected]
        assert [s[3] for s in spans] == pytest.approx([s[3] for s in expected], abs=1e-5)
        assert all(score > confidence for *_, score in spans)
        for *_, label, score in every:
            if score > confidence:
                kept[label] = kept.get(label, 0) + 1
            elif score > decode_at:
                dropped[label] = dropped.get(label, 0) + 1
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [s[:3] for s in spans]
    assert dict(stats.kept) == kept and sum(kept.values()) > 0
    assert dict(stats.dropped) == dropped
    if regime.startswith("above"):
        assert sum(dropped.values()) > 0  # spans the teacher predicts, but not confidently enough
    else:
        assert sum(dropped.values()) == 0
        assert any(s[3] <= threshold for spans in got for s in spans)  # below the teacher's own threshold
    assert knowfree.cfg["threshold"] == threshold  # the teacher is left as it was


def test_at_the_teachers_threshold_the_pseudo_labels_are_its_predictions(teacher):
    threshold = teacher.get_pipe("knowfree").cfg["threshold"]
    docs, stats = PseudoLabeler(teacher, min_confidence=threshold)(unlabeled_docs(teacher))
    for doc in docs:
        direct = teacher(doc.text)
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [
            (s.start, s.end, s.label_) for s in direct.spans["sc"]
        ]
    assert sum(stats.dropped.values()) == 0


# ----------------------------------------------------------------------------- flags and provenance
def test_pseudo_labeled_docs_are_synthetic_not_unlabeled_and_survive_a_docbin(teacher, tmp_path):
    lexicon = build_knowledge_pipeline(None, ["SEG"], None)
    labeler = PseudoLabeler(teacher, min_confidence=0.6, knowledge=lexicon, model_path="teacher/model-best", round_=2)
    docs, stats = labeler(unlabeled_docs(teacher))
    assert stats.unlabeled_cleared == len(TEXTS) and stats.docs == len(TEXTS)
    write_docbin(docs, tmp_path / "pseudo.spacy")
    back = read_docbin(tmp_path / "pseudo.spacy", Vocab())
    for before, doc in zip(docs, back):
        assert UNLABELED_FLAG not in doc.user_data
        assert doc.user_data[SYNTHETIC_FLAG] is True and is_synthetic_doc(doc)
        assert doc.user_data[PROVENANCE_KEY] == {
            "method": "pseudo_label",
            "model": "teacher/model-best",
            "min_confidence": 0.6,
            "round": 2,
            "spans_key": "sc",
        }
        assert doc.user_data["source"] == "raw.txt"  # other user data is kept
        assert [s.label_ for s in doc.spans["sc"]] == [s.label_ for s in before.spans["sc"]]
        assert list(doc.spans["sc"].attrs["scores"]) == pytest.approx(list(before.spans["sc"].attrs["scores"]))
        ext = {(s.start, s.end, s.label_) for s in doc.spans[EXTENSION_SPANS_KEY]}
        assert (0, 2, "SEG:WORD") in ext and len(ext) > 1  # the input's spans plus the lexicon's
    assert stats.extension_spans == sum(len(doc.spans[EXTENSION_SPANS_KEY]) for doc in back)


def test_the_student_trains_on_pseudo_labels_as_synthetic_docs(teacher):
    """Pseudo-labeled docs are training data with target spans, weighted beta."""
    docs, _ = PseudoLabeler(teacher, min_confidence=0.6)(unlabeled_docs(teacher, [t for t, _ in FLAT]))
    student = make_nlp()
    examples = [Example(student.make_doc(doc.text), doc) for doc in docs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student.initialize(lambda: examples)
    knowfree = student.get_pipe("knowfree")

    def loss(beta: float) -> float:
        knowfree.cfg["beta"] = beta
        return knowfree.get_loss(examples, knowfree.model.predict([eg.predicted for eg in examples]))[0]

    full = loss(1.0)
    assert full > 0 and loss(0.3) == pytest.approx(0.3 * full, rel=1e-5)


def test_other_key_empty_docs_and_accounting(teacher):
    docs_in = unlabeled_docs(teacher)
    docs_in[0].spans["sc"] = [docs_in[0][0:1]]  # a doc that had target spans: they are replaced
    kept_all, stats_all = PseudoLabeler(teacher, min_confidence=0.5, spans_key="pl")(docs_in)
    assert all("sc" not in doc.spans or doc is kept_all[0] for doc in kept_all)
    assert stats_all.replaced_targets == 0  # key "pl" was empty on the input
    empty = sum(1 for doc in kept_all if not len(doc.spans["pl"]))
    assert empty == stats_all.docs_without_spans and empty > 0  # "今天天气很好" has no entity
    dropped_docs, stats = PseudoLabeler(teacher, min_confidence=0.5, drop_empty=True)(unlabeled_docs(teacher))
    assert stats.docs == len(dropped_docs) == len(TEXTS) - empty
    assert stats.docs_dropped_empty == empty and stats.docs_without_spans == 0
    assert all(len(doc.spans["sc"]) for doc in dropped_docs)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, float("nan"), "high", True])
def test_bad_confidence_is_refused(teacher, bad):
    with pytest.raises(ValueError, match=r"\[KF340\].*--min-confidence"):
        PseudoLabeler(teacher, min_confidence=bad)


def test_bad_model_key_and_round_are_refused(teacher):
    with pytest.raises(ValueError, match=r"\[KF341\].*'knowfree' component"):
        PseudoLabeler(spacy.blank("zh"), model_path="blank/model")
    with pytest.raises(ValueError, match=r"\[KF343\].*--spans-key.*knowfree_ext"):
        PseudoLabeler(teacher, spans_key=EXTENSION_SPANS_KEY)
    with pytest.raises(ValueError, match=r"\[KF343\].*--round"):
        PseudoLabeler(teacher, round_=0)


# ----------------------------------------------------------------------------- command line
def test_pseudo_label_cli(teacher, teacher_dir, tmp_path, capsys):
    source = tmp_path / "unlabeled.spacy"
    write_docbin(unlabeled_docs(teacher), source)
    out, summary = tmp_path / "pseudo.spacy", tmp_path / "summary.json"
    code, text = run(
        capsys,
        "pseudo-label",
        teacher_dir,
        source,
        out,
        "--min-confidence",
        "0.7",
        "--no-extension",
        "--round",
        "3",
        "--limit",
        "8",
        "--summary",
        summary,
    )
    assert code == 0, text
    docs = read_docbin(out)
    counts = json.loads(summary.read_text())
    assert len(docs) == counts["docs"] == counts["docs_in"] == 8
    assert sum(counts["kept"].values()) == sum(len(doc.spans["sc"]) for doc in docs) > 0
    assert all(doc.user_data[PROVENANCE_KEY]["round"] == 3 for doc in docs)
    assert all(EXTENSION_SPANS_KEY in doc.spans and len(doc.spans[EXTENSION_SPANS_KEY]) == 1 for doc in docs)
    assert "target spans dropped (low confidence)" in text and "PER" in text
    assert pseudo_label(teacher_dir, source, tmp_path / "again.spacy", limit=8, min_confidence=0.7).to_dict() == counts


def test_pseudo_label_cli_bad_inputs(teacher_dir, tmp_path, capsys):
    source = tmp_path / "unlabeled.spacy"
    write_docbin(unlabeled_docs(spacy.blank("zh"), ["张三在北京"]), source)
    out = tmp_path / "out.spacy"
    code, text = run(capsys, "pseudo-label", teacher_dir, source, out, "--min-confidence", "1.2", "--no-extension")
    assert code == 1 and "[KF340]" in text and "1.2" in text
    blank = tmp_path / "blank"
    spacy.blank("zh").to_disk(blank)
    code, text = run(capsys, "pseudo-label", blank, source, out, "--no-extension")
    assert code == 1 and "[KF341]" in text and str(blank) in text
    empty = tmp_path / "empty.spacy"
    write_docbin([], empty)
    code, text = run(capsys, "pseudo-label", teacher_dir, empty, out, "--no-extension")
    assert code == 1 and "[KF342]" in text and "empty.spacy" in text
    code, text = run(capsys, "pseudo-label", teacher_dir, source, out, "--no-extension", "--limit", "-1")
    assert code == 1 and "[KF343]" in text and "--limit" in text
    assert not out.exists()


def test_pseudo_label_needs_no_llm_extra():
    code = (
        "import sys; sys.modules['spacy_llm'] = None\n"
        "from spacy_knowfree.cli import main\n"
        "main(['pseudo-label', '--help'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--min-confidence" in result.stdout


def test_the_lazy_synthesis_package_resolves_every_public_name():
    import spacy_knowfree.synthesis as synthesis

    assert sorted(synthesis.__all__) == sorted(synthesis._MODULE_OF)
    for name in synthesis.__all__:
        assert getattr(synthesis, name).__name__ == name
    with pytest.raises(AttributeError):
        synthesis.no_such_name  # noqa: B018
