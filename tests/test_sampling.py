"""K-shot samplers: nested K subsets, seeds, n-way k-shot guarantees, CLI."""

from collections import Counter

import pytest
import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

from spacy_knowfree.cli import app
from spacy_knowfree.converters import make_doc, read_benchmark
from spacy_knowfree.sampling import (
    kshot_indices,
    label_counts,
    nway_kshot_indices,
    sample_kshot,
    sample_nway_kshot,
)

_CACHE = {}


def _pool(datasets_dir, name="weibo"):
    if name not in _CACHE:
        _CACHE[name] = read_benchmark(name, "train", datasets_dir, warn=False)
    return _CACHE[name]


def _toy_pool(n=60):
    """Docs with labels of very different frequency: A in every doc, B in every
    5th, C in every 20th, D in exactly one doc (twice)."""
    vocab = Vocab()
    docs = []
    for i in range(n):
        spans = [(0, 1, "A")]
        if i % 5 == 0:
            spans.append((1, 2, "B"))
        if i % 20 == 0:
            spans.append((2, 3, "C"))
        if i == 7:
            spans += [(3, 4, "D"), (4, 5, "D")]
        docs.append(make_doc(vocab, list("abcdef"), spans))
    return docs


def test_kshot_nested_and_seeded():
    subsets = kshot_indices(1350, [1000, 250, 500], seed=0)
    assert list(subsets) == [250, 500, 1000]
    assert [len(v) for v in subsets.values()] == [250, 500, 1000]
    assert subsets[500][:250] == subsets[250] and subsets[1000][:500] == subsets[500]
    assert set(subsets[250]) < set(subsets[500]) < set(subsets[1000])
    assert len(set(subsets[1000])) == 1000 and all(0 <= i < 1350 for i in subsets[1000])
    assert kshot_indices(1350, [250, 500, 1000], seed=0) == subsets
    other = kshot_indices(1350, [250], seed=1)[250]
    assert other != subsets[250]
    assert subsets[250] != list(range(250))  # shuffled, not the head of the file


def test_kshot_errors():
    with pytest.raises(ValueError, match="KF118"):
        kshot_indices(100, [50, 101])
    for bad in ([0], [-5], [], [2.5]):
        with pytest.raises(ValueError, match="KF119"):
            kshot_indices(100, bad)
    assert kshot_indices(100, [100])[100] != list(range(100))
    assert sorted(kshot_indices(100, [100])[100]) == list(range(100))


def test_sample_kshot_real_docs(datasets_dir):
    docs = _pool(datasets_dir)
    subsets = sample_kshot(docs, [250, 500, 1000], seed=3)
    assert [len(s) for s in subsets.values()] == [250, 500, 1000]
    assert all(a is b for a, b in zip(subsets[1000], subsets[250]))
    ids = {k: {id(d) for d in v} for k, v in subsets.items()}
    assert ids[250] < ids[500] < ids[1000]


def _replay(docs, idx, k, labels):
    """Check that each chosen doc held a label still below k when it was added."""
    have = Counter()
    for i in idx:
        counts = Counter(s.label_ for s in docs[i].spans["sc"] if s.label_ in labels)
        assert any(have[label] < k for label in counts), f"doc {i} helped no label below k"
        have.update(counts)
    return have


@pytest.mark.parametrize("k", [1, 5, 10])
def test_nway_kshot_guarantees_weibo(datasets_dir, k):
    docs = _pool(datasets_dir)
    pool = label_counts(docs)
    idx = nway_kshot_indices(docs, k, seed=0)
    assert len(idx) == len(set(idx))
    have = _replay(docs, idx, k, set(pool))
    assert have == label_counts(docs[i] for i in idx)
    for label in pool:
        assert have[label] >= min(k, pool[label])
    assert len(idx) <= k * len(pool)  # each doc raises a label that was below k
    assert nway_kshot_indices(docs, k, seed=0) == idx
    assert nway_kshot_indices(docs, k, seed=1) != idx


def test_nway_kshot_resume_and_label_subset(datasets_dir):
    docs = _pool(datasets_dir, "resume")
    idx = nway_kshot_indices(docs, 5, seed=2)
    have = _replay(docs, idx, 5, set(label_counts(docs)))
    assert min(have.values()) >= 5 and len(have) == 8
    chosen = nway_kshot_indices(docs, 3, labels=["RACE", "LOC"], seed=2)
    have = _replay(docs, chosen, 3, {"RACE", "LOC"})
    assert have["RACE"] >= 3 and have["LOC"] >= 3
    assert all({"RACE", "LOC"} & {s.label_ for s in docs[i].spans["sc"]} for i in chosen)


def test_nway_kshot_rare_labels_and_warning(capsys):
    docs = _toy_pool()
    sample = sample_nway_kshot(docs, 4, seed=0)
    counts = label_counts(sample)
    assert counts["D"] == 2 and counts["C"] == 3  # fewer than k in the pool: all taken
    assert counts["A"] >= 4 and counts["B"] >= 4
    out = capsys.readouterr().out
    assert "KW103" in out and "'C': 3" in out and "'D': 2" in out
    assert len(sample) <= 4 * 4
    # the rarest labels come first: the doc with D is picked before any other
    assert sample[0] is docs[7]
    nway_kshot_indices(docs, 2, seed=0, warn=False)
    assert "KW103" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="KF119"):
        nway_kshot_indices(docs, 0)
    # a label absent from the pool: nothing can help it, so nothing is added
    assert nway_kshot_indices(docs, 2, labels=["Z"], warn=False) == []


def test_sample_cli(datasets_dir, tmp_path):
    runner = CliRunner()
    docs = read_benchmark("weibo", "dev", datasets_dir, warn=False)
    pool = tmp_path / "dev.spacy"
    docbin = DocBin(store_user_data=True, docs=docs)
    docbin.to_disk(pool)
    out = tmp_path / "kshot"
    result = runner.invoke(app, ["sample", str(pool), str(out), "--k", "50", "--k", "100", "--seed", "7"])
    assert result.exit_code == 0, result.output
    meta = srsly.read_json(out / "sample.json")
    assert meta["seed"] == 7 and meta["pool_size"] == 270 and meta["mode"] == "sentences"
    assert meta["subsets"]["k100"]["indices"][:50] == meta["subsets"]["k50"]["indices"]
    assert meta["subsets"]["k50"]["indices"] == kshot_indices(270, [50], seed=7)[50]
    k50 = list(DocBin().from_disk(out / "k50.spacy").get_docs(Vocab()))
    assert [d.text for d in k50] == [docs[i].text for i in meta["subsets"]["k50"]["indices"]]
    assert "k100" in result.output
    result = runner.invoke(app, ["sample", str(pool), str(out), "--k", "2", "--mode", "nway"])
    assert result.exit_code == 0, result.output
    nway = srsly.read_json(out / "sample.json")["subsets"]["nway_k2"]
    pool_counts = label_counts(docs)
    assert all(nway["spans"].get(label, 0) >= min(2, n) for label, n in pool_counts.items())
    assert (out / "nway_k2.spacy").exists()
    assert nway["indices"] == nway_kshot_indices(docs, 2, seed=0, warn=False)
    result = runner.invoke(app, ["sample", str(pool), str(out), "--k", "300"])
    assert result.exit_code == 1 and "KF118" in result.output
