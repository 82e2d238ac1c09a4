"""Knowledge extension at scale: ``knowfree extend --engine ray``.

The input DocBin is cut into shards of ``shard_size`` documents; Ray Data
actors each build the knowledge pipeline (the jieba lexicon, or any config
such as ``extend_openai.cfg``, whose OpenAI-compatible backend then sends
``concurrency`` requests at a time from every actor) and run it over whole
shards. With an LLM config every shard gets its own response cache file,
``<paths.cache without suffix>.shards/NNNNN.jsonl``: a reply is on disk the
moment it arrives, so a killed job resumes without asking again, and no two
actors ever share (and lock) one cache file.

The driver writes each finished shard to ``OUTPUT.parts/`` and, when all are
there, joins them into OUTPUT in input order and removes the parts. The
documents are those of the local engine: each shard runs ``nlp.pipe`` with
the same batch size, and every knowledge source annotates a doc on its own.
"""

import contextlib
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from spacy.language import Language
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from tqdm import tqdm

from ..constants import EXTENSION_SPANS_KEY, UNLABELED_FLAG
from ..docbin_io import read_docbin, write_docbin
from ..errors import Errors
from ..knowledge.pipeline import extension_label_counts
from .apply import check_positive
from .inputs import Manifest, PathLike, atomic_write_bytes, chunks

RESPONSE_CACHE_FACTORY = "spacy-knowfree.ResponseCache.v1"
MANIFEST_NAME = "knowfree_extend.json"
CALL_KEYS = ("made", "cached", "failed", "dropped")
_SENTINEL = "<knowfree-shard-cache>"


@dataclass
class ExtendSummary:
    """What ``extend_on_ray`` did: documents, shards written now and found
    finished, LLM calls (made, answered from the cache, failed, dropped),
    extension spans per label in the output, the shard cache directory."""

    docs: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    calls: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(CALL_KEYS, 0))
    labels: Counter = field(default_factory=Counter)
    added: Counter = field(default_factory=Counter)
    cache_dir: Optional[str] = None
    seconds: float = 0.0


def shard_cache_dir(cache: PathLike) -> Path:
    """Where the per-shard caches of the cache file ``cache`` go:
    ``cache/llm_replies.jsonl`` -> ``cache/llm_replies.shards/``."""
    path = Path(cache).resolve()
    return path.with_name(path.stem + ".shards")


def config_cache_path(config_path: Path, overrides: Dict[str, Any]) -> Optional[str]:
    """The config's ``[paths] cache`` after ``overrides`` (None when the
    config has no such setting or sets it to null). RAISES ValueError:
    KF706 when an ``spacy-knowfree.ResponseCache.v1`` block does not take its
    path from ``${paths.cache}``: one file would then be shared by every
    actor."""
    import spacy

    raw = spacy.util.load_config(config_path, overrides=overrides, interpolate=False)
    has_cache = "cache" in raw.get("paths", {})
    probe = {**overrides, "paths.cache": _SENTINEL} if has_cache else overrides
    config = spacy.util.load_config(config_path, overrides=probe, interpolate=True)
    for where, block in _blocks(config, ()):
        if block.get("@llm_misc") == RESPONSE_CACHE_FACTORY and block.get("path") not in (_SENTINEL, None):
            raise ValueError(Errors.KF706.format(config=config_path, component=".".join(where), path=block.get("path")))
    if not has_cache:
        return None
    value = overrides.get("paths.cache", raw["paths"]["cache"])
    return None if value in (None, "null", "") else str(value)


def _blocks(block: Any, where: tuple) -> List[tuple]:
    """Every (path, dict) of a nested config."""
    found = []
    if isinstance(block, dict):
        found.append((where, block))
        for key, value in block.items():
            found.extend(_blocks(value, where + (str(key),)))
    return found


class KnowledgeWorker:
    """Ray Data worker of ``extend --engine ray``: runs the knowledge
    pipeline over one shard per row and returns the annotated shard as
    DocBin bytes with the LLM calls it made. With per-shard caches the
    pipeline is built for each shard (cheap: an OpenAI-compatible backend
    loads no weights) with that shard's cache file; otherwise once."""

    def __init__(
        self,
        config_path: Optional[str],
        overrides: Dict[str, Any],
        families: List[str],
        user_dict: Optional[str],
        cache_dir: Optional[str],
        retry_failed: bool,
        batch_size: int,
    ):
        self.config_path = Path(config_path) if config_path else None
        self.overrides = overrides
        self.families = families
        self.user_dict = Path(user_dict) if user_dict else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.retry_failed = retry_failed
        self.batch_size = batch_size
        self.nlp = self.build(None) if self.cache_dir is None else None

    def _shard_cache(self, shard: int) -> Path:
        """The response cache file of one shard (only with a ``cache_dir``)."""
        assert self.cache_dir is not None  # without one, __init__ built the pipeline once
        return self.cache_dir / f"{shard:05d}.jsonl"

    def build(self, cache: Optional[Path]) -> Language:
        """The knowledge pipeline, with the response cache file ``cache`` when given."""
        from ..knowledge.pipeline import build_knowledge_pipeline, set_retry_failed

        overrides = dict(self.overrides)
        if cache is not None:
            overrides["paths.cache"] = str(cache)
        nlp = build_knowledge_pipeline(self.config_path, self.families, self.user_dict, overrides or None)
        set_retry_failed(nlp, self.retry_failed)
        return nlp

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        import numpy

        out: Dict[str, List[Any]] = {"shard": [], "docbin": [], "error": [], **{key: [] for key in CALL_KEYS}}
        for shard, payload in zip(batch["shard"], batch["payload"]):
            shard = int(shard)
            # A failure is returned as the shard's "error", never raised: the
            # driver stops the run with it, and Ray has no task to retry.
            error, docbin, counts = "", b"", {key: 0 for key in CALL_KEYS}
            nlp = None
            try:
                nlp = self.nlp if self.nlp is not None else self.build(self._shard_cache(shard))
                before = call_counts(nlp)
                docs = list(DocBin().from_bytes(bytes(payload)).get_docs(nlp.vocab))
                done = DocBin(store_user_data=True)
                for doc in nlp.pipe(docs, batch_size=self.batch_size):
                    if doc.spans.get(EXTENSION_SPANS_KEY) is None:
                        doc.spans[EXTENSION_SPANS_KEY] = []
                    done.add(doc)
                docbin = done.to_bytes()
                after = call_counts(nlp)
                counts = {key: after[key] - before[key] for key in CALL_KEYS}
            except Exception as err:
                error = str(err).strip() or type(err).__name__
            finally:
                if nlp is not None and self.nlp is None:
                    close_caches(nlp)
            out["shard"].append(shard)
            out["docbin"].append(docbin)
            out["error"].append(error)
            for key in CALL_KEYS:
                out[key].append(counts[key])
        return {
            key: numpy.array(values, dtype=object if key in ("docbin", "error") else None)
            for key, values in out.items()
        }


def call_counts(nlp: Language) -> Dict[str, int]:
    """LLM calls of the pipeline's components so far (zeros without LLMs)."""
    from ..knowledge.pipeline import llm_call_rows

    return {key: int(value) for key, value in llm_call_rows(nlp)[1].items() if key in CALL_KEYS}


def close_caches(nlp: Language) -> None:
    """Close the response caches of the pipeline (releasing their locks)."""
    from ..knowledge.pipeline import llm_backends

    for _, model in llm_backends(nlp):
        cache = getattr(model, "cache", None)
        if cache is not None and hasattr(cache, "close"):
            cache.close()


def _validate(
    config_path: Optional[Path],
    overrides: Dict[str, Any],
    families: List[str],
    user_dict: Optional[Path],
    cache_path: Optional[str],
) -> None:
    """Build the knowledge pipeline once on the driver, with a throw-away
    cache, so that config, override and backend errors come before Ray starts."""
    with tempfile.TemporaryDirectory() as tmp:
        worker = KnowledgeWorker(
            str(config_path) if config_path else None,
            overrides,
            families,
            str(user_dict) if user_dict else None,
            tmp if cache_path else None,
            retry_failed=False,
            batch_size=1,
        )
        if cache_path:
            close_caches(worker.build(Path(tmp) / "validate.jsonl"))


def extend_on_ray(
    input_path: PathLike,
    output_path: PathLike,
    *,
    config_path: Optional[PathLike] = None,
    families: Optional[List[str]] = None,
    user_dict: Optional[PathLike] = None,
    overrides: Optional[Dict[str, Any]] = None,
    batch_size: int = 32,
    shard_size: int = 500,
    num_actors: int = 1,
    unlabeled: bool = False,
    retry_failed: bool = False,
    ray_address: Optional[str] = None,
    ray_init: Optional[Dict[str, Any]] = None,
    progress: bool = True,
) -> ExtendSummary:
    """Add extension spans to every doc of ``input_path`` on Ray actors and
    write the fused DocBin ``output_path`` (see the module docstring).

    config_path, families, user_dict, overrides: the knowledge pipeline, as
        for ``knowfree extend`` (None: the offline jieba lexicon).
    batch_size (int): documents per ``nlp.pipe`` batch.
    shard_size (int): documents per shard: the unit of work, of resumption
        and of a response cache file (keep it when resuming).
    num_actors (int): Ray actors, each with its own knowledge pipeline.
    unlabeled (bool): flag the docs as unlabeled text (KF276 for gold spans).
    retry_failed (bool): ask again for prompts cached as dropped or cut.
    ray_address, ray_init: the Ray cluster, or ``ray.init`` arguments for a local one.
    RETURNS (ExtendSummary): what was done.
    """
    from .ray_engine import map_rows, ray_error_message, ray_session, require_ray

    require_ray("extend --engine ray")
    check_positive(batch_size=batch_size, shard_size=shard_size, num_actors=num_actors)
    start = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    config = Path(config_path).resolve() if config_path is not None else None
    user = Path(user_dict).resolve() if user_dict is not None else None
    families = list(families or ["SEG", "POS", "ENT"])
    overrides = dict(overrides or {})
    cache_path = config_cache_path(config, overrides) if config is not None else None
    cache_dir = shard_cache_dir(cache_path) if cache_path else None
    _validate(config, overrides, families, user, cache_path)

    vocab = Vocab()
    docs = read_docbin(input_path, vocab)
    if unlabeled:
        labelled = sum(
            1 for doc in docs if any(len(group) for key, group in doc.spans.items() if key != EXTENSION_SPANS_KEY)
        )
        if labelled:
            raise ValueError(Errors.KF276.format(path=input_path, count=labelled))
        for doc in docs:
            doc.user_data[UNLABELED_FLAG] = True
    labels_before = extension_label_counts(docs)
    parts = output_path.with_name(output_path.name + ".parts")
    settings = {
        "shard_size": shard_size,
        "config": str(config) if config else None,
        "overrides": json.loads(json.dumps(overrides, default=str, sort_keys=True)),
        "families": families if config is None else None,
        "user_dict": str(user) if user else None,
        "unlabeled": unlabeled,
    }
    manifest = Manifest.for_run(settings, [input_path], name=MANIFEST_NAME).resume(parts)
    manifest.inputs[0].docs = len(docs)
    manifest.save(parts)

    summary = ExtendSummary(cache_dir=str(cache_dir) if cache_dir else None)
    shards = list(chunks(docs, shard_size))
    part_paths = [parts / f"{k:05d}.spacy" for k in range(len(shards))]
    rows: List[Dict[str, Any]] = [
        {"shard": k, "payload": DocBin(docs=shard, store_user_data=True).to_bytes()}
        for k, shard in enumerate(shards)
        if not part_paths[k].exists()
    ]
    summary.shards_skipped = len(shards) - len(rows)
    worker_kwargs = {
        "config_path": str(config) if config else None,
        "overrides": overrides,
        "families": families,
        "user_dict": str(user) if user else None,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "retry_failed": retry_failed,
        "batch_size": batch_size,
    }
    if rows:
        total = sum(len(shards[row["shard"]]) for row in rows)
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(total=total, desc="extend", unit="doc", disable=not progress))
            stack.enter_context(ray_session(ray_address, command="extend --engine ray", **(ray_init or {})))
            try:
                results = map_rows(rows, KnowledgeWorker, worker_kwargs, num_actors=num_actors)
                failure = ""
                with contextlib.closing(results):  # stops the actors however the loop ends
                    for row in results:
                        k = int(row["shard"])
                        for key in CALL_KEYS:
                            summary.calls[key] += int(row[key])
                        if row["error"]:  # keep what the other shards finished
                            failure = failure or str(row["error"])
                            continue
                        atomic_write_bytes(part_paths[k], bytes(row["docbin"]))
                        summary.shards_written += 1
                        bar.update(len(shards[k]))
                if failure:
                    raise RuntimeError(failure)
            except Exception as err:
                cached = f" LLM replies are kept in {cache_dir}." if cache_dir else ""
                raise RuntimeError(
                    Errors.KF704.format(
                        engine="Ray",
                        error=ray_error_message(err) + "." + cached,
                        done=summary.shards_written + summary.shards_skipped,
                        total=len(shards),
                        output=parts,
                    )
                ) from err
    fused = [doc for path in part_paths for doc in read_docbin(path, vocab, allow_empty=True)]
    write_docbin(fused, output_path)
    shutil.rmtree(parts)
    summary.docs = len(fused)
    summary.labels = extension_label_counts(fused)
    summary.added = summary.labels - labels_before
    summary.seconds = time.perf_counter() - start
    return summary
