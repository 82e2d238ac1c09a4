"""Safe serialization of the torch part of the model: tensors only, never code.

thinc's ``PyTorchShim`` saves a module with ``torch.save`` and loads it with
``torch.load``, which unpickles arbitrary objects on torch < 2.6 (and on any
torch when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set), so a crafted
``knowfree/model`` file could run code during ``spacy.load``. ``StateDictShim``
saves the module's state dict of tensors and loads it with
``torch.load(..., weights_only=True)`` whatever the torch and thinc versions;
anything else in the file raises KF010. Pipelines saved by thinc's own shim
(also a state dict) load unchanged.

It also makes ``use_averages = true`` reach the torch weights: thinc's
optimizer keeps their averages under ``(shim id, parameter name)``
(``PyTorchShim.finish_update``), while ``PyTorchShim.use_params`` looks for
``"pytorch_{id}_{name}"``, so spaCy's evaluation and ``model-best`` used the
averaged tok2vec with the last (not averaged) span head.
"""

import contextlib
from io import BytesIO
from typing import Any, Dict, Iterator, Mapping

import srsly
import torch
from thinc.shims import PyTorchShim
from thinc.util import get_torch_default_device, xp2torch

from ..errors import Errors


class StateDictShim(PyTorchShim):
    """thinc's PyTorchShim, serialized with :func:`serialize_state_dict` and
    :func:`deserialize_state_dict` whatever the thinc and torch versions."""

    def to_bytes(self) -> bytes:
        return srsly.msgpack_dumps({"config": self.cfg, "state": serialize_state_dict(self._model)})

    def from_bytes(self, bytes_data: bytes) -> "StateDictShim":
        device = get_torch_default_device()
        data = srsly.msgpack_loads(bytes_data)
        self.cfg = data["config"]
        self._model = deserialize_state_dict(self._model, data["state"], device)
        self._grad_scaler.to_(device)
        return self

    @contextlib.contextmanager
    def use_params(self, params: Dict[Any, Any]) -> Iterator[None]:
        """Use the weights in ``params`` (e.g. the optimizer's averages) inside
        the block: found under the key ``finish_update`` stores them with,
        ``(shim id, parameter name)``, or under thinc's ``"pytorch_{id}_{name}"``."""
        state = {}
        for name, _ in self._model.named_parameters():
            value = params.get((self.id, name), params.get(f"pytorch_{self.id}_{name}"))
            if value is not None:
                state[name] = xp2torch(value, device=self.device)
        if not state:
            yield
            return
        backup = {name: tensor.detach().clone() for name, tensor in self._model.state_dict().items()}
        self._model.load_state_dict(state, strict=False)
        try:
            yield
        finally:
            self._model.load_state_dict(backup)


def serialize_state_dict(module: "torch.nn.Module") -> bytes:
    """The module's parameters and buffers as ``torch.save`` bytes of tensors only."""
    state = {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}
    buffer = BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def deserialize_state_dict(module: "torch.nn.Module", state_bytes: bytes, device: "torch.device") -> "torch.nn.Module":
    """Load weights saved by :func:`serialize_state_dict` (or thinc's default
    serializer, also a state dict) into ``module``, whatever the torch
    version's ``torch.load`` default; anything but tensors raises KF010."""
    try:
        state = torch.load(BytesIO(state_bytes), map_location=device, weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError of a bad file
        raise ValueError(Errors.KF010.format(error=_first_line(err))) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(Errors.KF010.format(error="the file holds no state dict of tensors"))
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # missing, unexpected or mis-shaped weights
        raise ValueError(Errors.KF010.format(error=_first_line(err))) from None
    module.to(device)
    return module


def _first_line(err: Exception, limit: int = 300) -> str:
    text = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
