"""Int8 inference of the span-grid encoder (``int8 = true`` in the knowfree
component, or ``knowfree quantize``).

The local attention's Q/K/V projection, the one ``nn.Linear`` applied to
every cell of the span grid (about nine tenths of the encoder's Linear
multiply-adds at W = 16), runs through torch dynamic quantization: int8
weights, activations quantized per call, int32 accumulation. The layers
applied once per token (the start/end projections and the biaffine's affine
terms) stay float32 with the bilinear tensor, the attention and the layer
norms: quantized as well, they cost 0.4 to 1.3 dev F1 on Weibo for little
speed (``benchmarks/notes/speed.md``). The quantized copy is made from the
float32 weights on first use and made again whenever those change, so the
pipeline on disk keeps float32 weights, training is unaffected, and a
pipeline loads like any other. CPU only.
"""

import copy
import warnings
from typing import Tuple
from weakref import WeakKeyDictionary

import torch
from torch import nn

from ..errors import Errors

_QUANTIZED: "WeakKeyDictionary[nn.Module, Tuple[Tuple[float, ...], nn.Module]]" = WeakKeyDictionary()


#: Submodules of the grid encoder that run in int8.
INT8_LAYERS = frozenset({"attention.qkv"})


def int8_copy(module: nn.Module) -> nn.Module:
    """``module`` with its :data:`INT8_LAYERS` in int8, in eval mode; cached
    per module until its weights change. RETURNS (nn.Module): the copy."""
    device = next(module.parameters()).device
    if device.type != "cpu":
        raise ValueError(Errors.KF314.format(device=device))
    with torch.no_grad():
        signature = tuple(float(p.sum()) for p in module.parameters())
    cached = _QUANTIZED.get(module)
    if cached is not None and cached[0] == signature:
        return cached[1]
    with warnings.catch_warnings():
        # torch >= 2.9 marks torch.ao.quantization deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module).eval(), set(INT8_LAYERS), dtype=torch.qint8
        )
    _QUANTIZED[module] = (signature, quantized)
    return quantized
