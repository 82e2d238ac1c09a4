"""Batch inference over many files, on one machine or on Ray: ``knowfree apply``.

:func:`apply_model` reads the inputs (see :mod:`.inputs`), cuts each file into
shards of ``shard_size`` documents, runs a trained pipeline over the shards
not written yet and writes each one, the moment it is complete, as a DocBin
(``.spacy``) or as JSONL with the predicted spans and their scores.

Both engines run ``nlp.pipe`` over the same batches: the documents of a
shard, ``batch_size`` at a time, from the shard's first document. The local
engine calls ``nlp.pipe(shard, batch_size=..., n_process=...)``; the Ray
engine sends every such batch as one row to ``map_batches``, whose actors
each hold one loaded pipeline. With the same ``threads`` per worker the two
engines give the same spans and the same scores, shard for shard.
"""

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from tqdm import tqdm

from ..constants import TARGET_SPANS_KEY
from ..converters import doc_to_record
from ..docbin_io import write_docbin
from ..errors import Errors
from .inputs import (
    Manifest,
    PathLike,
    ReadOptions,
    Record,
    Shard,
    atomic_write_bytes,
    chunks,
    find_inputs,
    plan_shards,
    read_records,
)

ENGINES = ("local", "ray")
#: output format -> shard file suffix
FORMATS = {"spacy": ".spacy", "jsonl": ".jsonl"}


@dataclass
class ApplySummary:
    """What a run did: documents and characters processed now, shards written
    now and shards found finished (skipped), wall-clock seconds."""

    engine: str
    docs: int = 0
    chars: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    files: List[str] = field(default_factory=list)

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "chars_per_s": self.chars_per_s}


def load_pipeline(model: PathLike, threads: Optional[int] = None, gpu: bool = False) -> Language:
    """``spacy.load(model)`` with ``threads`` torch threads (None: torch's
    default), on the GPU with ``gpu``. RAISES ValueError: KF705."""
    import spacy
    import torch

    if threads:
        torch.set_num_threads(threads)
    if gpu:
        spacy.require_gpu()
    try:
        return spacy.load(model)
    except Exception as err:  # missing path, bad config, unsafe weights (KF010) ...
        raise ValueError(Errors.KF705.format(model=model, error=str(err).strip() or type(err).__name__)) from None


def predicted_record(doc: Doc, spans_key: str = TARGET_SPANS_KEY) -> Dict[str, Any]:
    """A Doc as a KnowFREE JSONL record (:func:`doc_to_record`: tokens and
    the spans of ``doc.spans[spans_key]`` as entities) with each entity's
    ``score`` from the group's ``attrs["scores"]`` (None without scores)."""
    record = doc_to_record(doc, spans_key=spans_key, include_extension=False, with_tags=False)
    group = doc.spans.get(spans_key)
    scores = list(group.attrs.get("scores", [])) if group is not None else []
    for i, entity in enumerate(record["entities"]):
        entity["score"] = float(scores[i]) if i < len(scores) else None
    return record


def write_shard(docs: Sequence[Doc], path: Path, fmt: str, spans_key: str = TARGET_SPANS_KEY) -> None:
    """Write one shard atomically: a killed run leaves either the whole shard
    or no shard (at most a ``.partial`` file that the rerun replaces)."""
    tmp = path.with_name(path.name + ".partial")
    if fmt == "spacy":
        write_docbin(docs, tmp)
        os.replace(tmp, path)
        return
    lines = [srsly.json_dumps(predicted_record(doc, spans_key)) + "\n" for doc in docs]
    atomic_write_bytes(path, "".join(lines).encode("utf8"))


def encode_records(records: Sequence[Record]) -> Tuple[str, bytes]:
    """Records as ``(kind, bytes)`` to send to an actor: msgpack of the
    strings, or a DocBin of the Docs (user data kept)."""
    if records and isinstance(records[0], Doc):
        return "docbin", DocBin(docs=cast(Sequence[Doc], records), store_user_data=True).to_bytes()
    return "text", srsly.msgpack_dumps(list(records))


def decode_records(kind: str, payload: bytes, vocab: Vocab) -> List[Record]:
    """The records of :func:`encode_records`, Docs sharing ``vocab``."""
    if kind == "docbin":
        return list(DocBin().from_bytes(payload).get_docs(vocab))
    return list(srsly.msgpack_loads(payload))


class PipelineWorker:
    """Ray Data worker of ``knowfree apply --engine ray``: loads the pipeline
    once per actor, then runs each row (one batch of documents) through
    ``nlp.pipe`` and returns the annotated Docs as DocBin bytes."""

    def __init__(self, model: str, threads: int, gpu: bool, batch_size: int):
        self.nlp = load_pipeline(model, threads=threads, gpu=gpu)
        self.batch_size = batch_size

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        results = []
        for kind, payload in zip(batch["kind"], batch["payload"]):
            records = decode_records(str(kind), bytes(payload), self.nlp.vocab)
            docs = list(self.nlp.pipe(records, batch_size=self.batch_size))
            results.append(DocBin(docs=docs, store_user_data=True).to_bytes())
        return {"shard": batch["shard"], "chunk": batch["chunk"], "docbin": numpy.array(results, dtype=object)}


def check_positive(**values: int) -> None:
    """RAISES ValueError: KF703 for a value that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                Errors.KF703.format(option="--" + name.replace("_", "-"), expected="a positive integer", value=value)
            )


@dataclass
class _RunSettings:
    """What every engine of :func:`apply_pipeline` needs, besides its own options."""

    fmt: str
    shard_size: int
    batch_size: int
    threads: int
    spans_key: str
    options: ReadOptions
    gpu: bool
    progress: bool


def apply_model(
    model: PathLike,
    inputs: PathLike,
    output: PathLike,
    *,
    engine: str = "local",
    fmt: str = "spacy",
    shard_size: int = 1000,
    batch_size: int = 64,
    n_process: int = 1,
    threads: int = 1,
    spans_key: str = TARGET_SPANS_KEY,
    read_options: Optional[ReadOptions] = None,
    num_actors: int = 1,
    gpu: bool = False,
    ray_address: Optional[str] = None,
    ray_init: Optional[Dict[str, Any]] = None,
    progress: bool = True,
) -> ApplySummary:
    """Apply the pipeline ``model`` to every document of ``inputs`` and write
    the shards to the directory ``output``; finished shards are skipped.

    model (PathLike): a trained pipeline (directory or package name).
    inputs (PathLike): a file, directory or glob (see :func:`find_inputs`).
    output (PathLike): directory of the shards and of ``knowfree_apply.json``.
    engine (str): ``"local"`` (``nlp.pipe`` with ``n_process``) or ``"ray"``.
    fmt (str): ``"spacy"`` (DocBin shards) or ``"jsonl"`` (spans and scores).
    shard_size (int): documents per shard (the unit of output and resumption).
    batch_size (int): documents per ``nlp.pipe`` batch, for both engines.
    n_process (int): local engine: processes of ``nlp.pipe``.
    threads (int): torch threads per process or actor (CPUs per actor on Ray).
    spans_key (str): ``doc.spans`` key whose spans and scores JSONL gets.
    read_options (Optional[ReadOptions]): how text and JSONL files are read.
    num_actors (int): Ray engine: actors, each with its own pipeline.
    gpu (bool): one GPU per actor (Ray) or for the process (local).
    ray_address (Optional[str]): Ray cluster to use; None starts a local Ray.
    ray_init (Optional[Dict[str, Any]]): ``ray.init`` arguments for a local start.
    progress (bool): show a progress bar.
    RETURNS (ApplySummary): what was done.
    """
    if engine not in ENGINES:
        raise ValueError(Errors.KF707.format(engine=engine))
    if fmt not in FORMATS:
        raise ValueError(Errors.KF703.format(option="--format", expected=" or ".join(FORMATS), value=fmt))
    check_positive(
        shard_size=shard_size, batch_size=batch_size, n_process=n_process, threads=threads, num_actors=num_actors
    )
    if engine == "ray":
        from .ray_engine import require_ray

        require_ray("apply --engine ray")  # before any input is read
    output = Path(output)
    if output.is_file():
        raise ValueError(Errors.KF702.format(output=output))
    options = read_options or ReadOptions()
    files = find_inputs(inputs)
    settings = {
        "model": str(Path(model).resolve()) if Path(model).exists() else str(model),
        "format": fmt,
        "shard_size": shard_size,
        **asdict(options),
    }
    manifest = Manifest.for_run(settings, files).resume(output)
    manifest.save(output)
    summary = ApplySummary(engine=engine, files=[str(f) for f in files])
    start = time.perf_counter()
    run = _RunSettings(
        fmt=fmt,
        shard_size=shard_size,
        batch_size=batch_size,
        threads=threads,
        spans_key=spans_key,
        options=options,
        gpu=gpu,
        progress=progress,
    )
    if engine == "local":
        _run_local(model, manifest, output, summary, run, n_process=n_process)
    else:
        _run_ray(
            model,
            manifest,
            output,
            summary,
            run,
            num_actors=num_actors,
            ray_address=ray_address,
            ray_init=ray_init or {},
        )
    summary.seconds = time.perf_counter() - start
    return summary


def _pending_shards(
    manifest: Manifest,
    output: Path,
    suffix: str,
    shard_size: int,
    options: ReadOptions,
    vocab: Optional[Vocab],
    summary: ApplySummary,
    bar: tqdm,
) -> Iterator[Tuple[Shard, List[Record]]]:
    """The shards not written yet, with their documents, file by file; a file
    whose shards are all written is not read again."""
    for index, state in enumerate(manifest.inputs):
        path = Path(state.path)
        if state.docs is not None:
            shards = plan_shards(path, index, state.docs, shard_size)
            if all((output / (s.name + suffix)).exists() for s in shards):
                summary.shards_skipped += len(shards)
                continue
        records = read_records(path, options, vocab)
        if state.docs != len(records):
            state.docs = len(records)
            manifest.save(output)
        shards = plan_shards(path, index, len(records), shard_size)
        todo = [shard for shard in shards if not (output / (shard.name + suffix)).exists()]
        summary.shards_skipped += len(shards) - len(todo)
        bar.total = (bar.total or 0) + sum(shard.size for shard in todo)
        bar.refresh()
        for shard in todo:
            yield shard, records[shard.start : shard.stop]


def _finish_shard(
    docs: Sequence[Doc], shard: Shard, output: Path, fmt: str, spans_key: str, summary: ApplySummary
) -> None:
    write_shard(docs, output / (shard.name + FORMATS[fmt]), fmt, spans_key)
    summary.shards_written += 1
    summary.docs += len(docs)
    summary.chars += sum(len(doc.text) for doc in docs)


def _progress(enabled: bool) -> tqdm:
    return tqdm(total=0, desc="apply", unit="doc", disable=not enabled, dynamic_ncols=True)


def _run_local(
    model: PathLike, manifest: Manifest, output: Path, summary: ApplySummary, run: _RunSettings, *, n_process: int
) -> None:
    """The local engine: ``nlp.pipe`` over each shard in this process, or in
    ``n_process`` worker processes that each load the pipeline once for the
    whole run (spaCy's own ``n_process`` would start new processes for every
    ``nlp.pipe`` call, that is for every shard)."""
    import torch

    if n_process > 1:
        _run_local_pool(model, manifest, output, summary, run, n_process=n_process)
        return
    saved_threads = torch.get_num_threads()
    nlp = load_pipeline(model, threads=run.threads, gpu=run.gpu)
    try:
        with _progress(run.progress) as bar:
            pending = _pending_shards(
                manifest, output, FORMATS[run.fmt], run.shard_size, run.options, nlp.vocab, summary, bar
            )
            for shard, records in pending:
                docs = []
                for doc in nlp.pipe(records, batch_size=run.batch_size):
                    docs.append(doc)
                    bar.update(1)
                _finish_shard(docs, shard, output, run.fmt, run.spans_key, summary)
    finally:
        torch.set_num_threads(saved_threads)


_LOCAL_WORKER: Dict[str, PipelineWorker] = {}


def _init_local_worker(model: str, threads: int, gpu: bool, batch_size: int) -> None:
    """Initializer of a local worker process: load the pipeline once."""
    _LOCAL_WORKER["worker"] = PipelineWorker(model, threads, gpu, batch_size)


def _run_local_batch(task: Tuple[str, bytes]) -> bytes:
    """One batch in a local worker process: the annotated docs as DocBin bytes."""
    result = _LOCAL_WORKER["worker"]({"shard": [0], "chunk": [0], "kind": [task[0]], "payload": [task[1]]})
    return result["docbin"][0]


def _run_local_pool(
    model: PathLike, manifest: Manifest, output: Path, summary: ApplySummary, run: _RunSettings, *, n_process: int
) -> None:
    """``n_process`` worker processes (the platform's default start method,
    as for spaCy's ``n_process``) run the batches of the shards in order
    (``Pool.imap``); this process writes each shard when its batches are back."""
    import multiprocessing

    model_ref = str(Path(model).resolve()) if Path(model).exists() else str(model)
    load_pipeline(model_ref, threads=run.threads)  # a bad model fails here, with KF705, before any worker starts
    vocab = Vocab()
    plan: List[Tuple[Shard, int]] = []  # (shard, number of batches) in the order of the tasks

    with _progress(run.progress) as bar:

        def tasks() -> Iterator[Tuple[str, bytes]]:
            for shard, records in _pending_shards(
                manifest, output, FORMATS[run.fmt], run.shard_size, run.options, None, summary, bar
            ):
                batches = list(chunks(records, run.batch_size))
                plan.append((shard, len(batches)))
                for batch in batches:
                    yield encode_records(batch)

        context = multiprocessing.get_context()
        with context.Pool(
            n_process, initializer=_init_local_worker, initargs=(model_ref, run.threads, run.gpu, run.batch_size)
        ) as pool:
            docs: List[Doc] = []
            done_batches = 0
            for payload in pool.imap(_run_local_batch, tasks()):
                batch = list(DocBin().from_bytes(payload).get_docs(vocab))
                docs.extend(batch)
                done_batches += 1
                bar.update(len(batch))
                shard, n_batches = plan[0]
                if done_batches == n_batches:
                    _finish_shard(docs, shard, output, run.fmt, run.spans_key, summary)
                    plan.pop(0)
                    docs, done_batches = [], 0


def _run_ray(
    model: PathLike,
    manifest: Manifest,
    output: Path,
    summary: ApplySummary,
    run: _RunSettings,
    *,
    num_actors: int,
    ray_address: Optional[str],
    ray_init: Dict[str, Any],
) -> None:
    """The Ray engine: every batch of every pending shard is a row of a Ray
    Dataset; ``map_batches`` runs :class:`PipelineWorker` actors over them and
    the driver writes each shard as soon as its last batch is back."""
    from .ray_engine import map_rows, ray_error_message, ray_session

    model_ref = str(Path(model).resolve()) if Path(model).exists() else str(model)
    vocab = Vocab()
    with _progress(run.progress) as bar:
        rows: List[Dict[str, Any]] = []
        shards: List[Shard] = []
        for shard, records in _pending_shards(
            manifest, output, FORMATS[run.fmt], run.shard_size, run.options, None, summary, bar
        ):
            for j, chunk in enumerate(chunks(records, run.batch_size)):
                kind, payload = encode_records(chunk)
                rows.append({"shard": len(shards), "chunk": j, "kind": kind, "payload": payload})
            shards.append(shard)
        if not rows:
            return
        expected = [len(range(0, s.size, run.batch_size)) for s in shards]
        received: Dict[int, Dict[int, bytes]] = {}
        worker_kwargs = {"model": model_ref, "threads": run.threads, "gpu": run.gpu, "batch_size": run.batch_size}
        with ray_session(ray_address, **ray_init):
            try:
                results = map_rows(
                    rows, PipelineWorker, worker_kwargs, num_actors=num_actors, cpus_per_actor=run.threads, gpu=run.gpu
                )
                with contextlib.closing(results):  # stops the actors however the loop ends
                    for row in results:
                        k, j = int(row["shard"]), int(row["chunk"])
                        got = received.setdefault(k, {})
                        got[j] = bytes(row["docbin"])
                        if len(got) < expected[k]:
                            continue
                        docs = [doc for i in range(expected[k]) for doc in DocBin().from_bytes(got[i]).get_docs(vocab)]
                        del received[k]
                        _finish_shard(docs, shards[k], output, run.fmt, run.spans_key, summary)
                        bar.update(len(docs))
            except Exception as err:
                raise RuntimeError(
                    Errors.KF704.format(
                        engine="Ray",
                        error=ray_error_message(err),
                        done=summary.shards_written + summary.shards_skipped,
                        total=len(shards) + summary.shards_skipped,
                        output=output,
                    )
                ) from err
