"""Readers and writers that turn the benchmark formats into character-tokenized
spaCy Docs with spans (and KnowFREE JSONL back out of Docs), and raw text into
Docs without spans."""

from .benchmarks import BENCHMARKS, benchmark_path, read_benchmark
from .conll import parse_char_index, read_conll
from .conllu import read_conllu
from .docs import (
    EXTENSION_SPANS_KEY,
    TARGET_SPANS_KEY,
    ReadStats,
    doc_span_tuples,
    make_doc,
    spans_overlap,
)
from .jsonl import (
    doc_to_record,
    read_jsonl,
    read_labels_file,
    record_to_doc,
    write_jsonl,
    write_labels_file,
)
from .sighan import SIGHAN_SPLITS, WORD_LABEL, read_sighan
from .tags import spans_to_tags, tags_to_spans
from .text import TEXT_FORMATS, TextStats, detect_text_format, read_text, split_sentences

__all__ = [
    "BENCHMARKS",
    "TARGET_SPANS_KEY",
    "EXTENSION_SPANS_KEY",
    "ReadStats",
    "SIGHAN_SPLITS",
    "TEXT_FORMATS",
    "TextStats",
    "WORD_LABEL",
    "benchmark_path",
    "detect_text_format",
    "doc_span_tuples",
    "doc_to_record",
    "make_doc",
    "parse_char_index",
    "read_benchmark",
    "read_conll",
    "read_conllu",
    "read_jsonl",
    "read_labels_file",
    "read_sighan",
    "read_text",
    "record_to_doc",
    "spans_overlap",
    "spans_to_tags",
    "split_sentences",
    "tags_to_spans",
    "write_jsonl",
    "write_labels_file",
]
