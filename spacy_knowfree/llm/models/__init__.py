"""spacy-llm model backends of spacy-knowfree: an OpenAI-compatible HTTP
client (vLLM, Ollama, llama.cpp, hosted APIs) and a local causal LM
(transformers or GGUF weights), both with the response cache of :mod:`..cache`."""

from .local_causal_lm import LocalCausalLM, make_local_causal_lm
from .openai_compatible import BackendRequestError, OpenAICompatibleModel, make_openai_compatible_model

__all__ = [
    "BackendRequestError",
    "LocalCausalLM",
    "OpenAICompatibleModel",
    "make_local_causal_lm",
    "make_openai_compatible_model",
]
