"""spacy-knowfree.Corpus.v1: labeled docs repeated to a share of each epoch."""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Corpus
from spacy.util import registry

from spacy_knowfree.constants import UNLABELED_FLAG
from spacy_knowfree.corpus import repeats
from spacy_knowfree.packaged_configs import config_dir


def write_docbin(path, n_labeled: int, n_unlabeled: int):
    nlp = spacy.blank("zh")
    db = DocBin(store_user_data=True)
    for i in range(n_labeled):
        doc = nlp(f"张三在北京工作第{i}天")
        doc.spans["sc"] = [doc.char_span(0, 2, label="PER")]
        db.add(doc)
    for i in range(n_unlabeled):
        doc = nlp(f"没有标注的文本第{i}行")
        doc.user_data[UNLABELED_FLAG] = True
        db.add(doc)
    db.to_disk(path)
    return nlp


def read(path, **settings):
    reader = registry.resolve({"r": {"@readers": "spacy-knowfree.Corpus.v1", "path": str(path), **settings}})["r"]
    return reader


@pytest.mark.parametrize(
    "n_labeled,n_unlabeled,share,expected",
    [(250, 3553, 0.5, 15), (250, 1000, 0.5, 4), (250, 1000, 0.8, 16), (10, 5, 0.5, 1), (10, 0, 0.9, 1), (4, 9, 0.0, 1)],
)
def test_repeats_reach_the_share_with_the_fewest_copies(n_labeled, n_unlabeled, share, expected):
    r = repeats(n_labeled, n_unlabeled, share)
    assert r == expected
    if n_unlabeled and share:
        assert r * n_labeled / (r * n_labeled + n_unlabeled) >= share
        if r > 1:  # one copy fewer would fall short
            assert (r - 1) * n_labeled / ((r - 1) * n_labeled + n_unlabeled) < share


def test_labeled_docs_are_repeated_and_every_unlabeled_doc_comes_once(tmp_path):
    path = tmp_path / "train.spacy"
    nlp = write_docbin(path, 3, 9)
    examples = list(read(path, labeled_share=0.5)(nlp))
    texts = Counter(eg.reference.text for eg in examples)
    labeled = [eg for eg in examples if not eg.reference.user_data.get(UNLABELED_FLAG)]
    assert len(examples) == 18 and len(labeled) == 9
    assert all(texts[f"张三在北京工作第{i}天"] == 3 for i in range(3))
    assert all(texts[f"没有标注的文本第{i}行"] == 1 for i in range(9))
    assert all(len(eg.reference.spans["sc"]) == 1 for eg in labeled)


def test_share_zero_yields_what_spacy_corpus_yields(tmp_path):
    path = tmp_path / "train.spacy"
    nlp = write_docbin(path, 3, 9)
    ours = [eg.reference.text for eg in read(path)(nlp)]
    theirs = [eg.reference.text for eg in Corpus(path)(nlp)]
    assert ours == theirs and len(ours) == 12


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5])
def test_a_share_outside_zero_to_one_is_a_clear_error(tmp_path, share):
    path = tmp_path / "train.spacy"
    write_docbin(path, 1, 1)
    with pytest.raises(ValueError, match=r"KF130.*labeled_share"):
        read(path, labeled_share=share)


def test_a_file_of_only_unlabeled_docs_is_a_clear_error(tmp_path):
    path = tmp_path / "train.spacy"
    nlp = write_docbin(path, 0, 4)
    with pytest.raises(ValueError, match=r"KF131.*4 unlabeled docs"):
        list(read(path, labeled_share=0.5)(nlp))


def test_the_packaged_cpu_config_reads_training_data_with_it(tmp_path):
    path = tmp_path / "train.spacy"
    nlp = write_docbin(path, 2, 6)
    config = spacy.util.load_config(config_dir() / "knowfree_zh_cpu.cfg")
    assert config["corpora"]["train"]["@readers"] == "spacy-knowfree.Corpus.v1"
    assert config["corpora"]["train"]["labeled_share"] == 0.0
    section = {**config["corpora"]["train"], "path": str(path), "labeled_share": 0.6}
    examples = list(registry.resolve({"r": section})["r"](nlp))
    assert len(examples) == 2 * 5 + 6  # 5 copies: 10 / 16 >= 0.6, 8 / 14 < 0.6


def _workflow_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "workflow.py"
    spec = importlib.util.spec_from_file_location("knowfree_workflow_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_workflow_passes_a_labeled_share_on_and_drops_it_when_off(tmp_path):
    workflow = _workflow_script()
    pretrain = tmp_path / "pretrain.json"
    pretrain.write_text('{"weights": null}', encoding="utf8")
    head = ["cfg.cfg", "--paths.train", "t.spacy"]
    on = workflow.train_args(pretrain, [*head, "--corpora.train.labeled_share", "0.5", "--gpu-id", "-1"])
    assert on == [*head, "--corpora.train.labeled_share", "0.5", "--gpu-id", "-1"]
    # off: the override is left out, so a config with spacy.Corpus.v1 still trains
    off = workflow.train_args(pretrain, [*head, "--corpora.train.labeled_share", "0.0", "--gpu-id", "-1"])
    assert off == [*head, "--gpu-id", "-1"]
