"""Export a PyTorch module as a TF.js layers model: the inverse of `build_model`.

The module is traced with torch.fx, so `nn.Sequential` models and modules whose `forward` is a
plain graph of supported modules and functions (residual additions, concatenations, flatten,
global pooling) both export. Every tensor's layout is tracked: PyTorch images are NCHW, TF.js
images NHWC, so the exported model takes NHWC inputs, convolution kernels are permuted, and a
Dense layer after a Flatten of a feature map gets its kernel rows reordered (PyTorch flattens
C,H,W, TF.js H,W,C): the TF.js model computes exactly what the PyTorch module computes.

Anything else (a module class or an operation without a TF.js layer, data-dependent control
flow, parameters used directly in `forward`) raises `ExportError` naming it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from disco.client.model.errors import UnsupportedLayerError
from disco.client.model.layers import same_padding
from disco.tasks.artifacts import FLOAT32, ModelArtifacts, WeightSpec, write_layers_folder
from disco.tasks.initializers import GLOROT_UNIFORM_JSON, ZEROS_JSON
from disco.tasks.sequential import ARTIFACTS_EXTRA, BACKEND, KERAS_VERSION

Converter = Callable[[torch.Tensor], torch.Tensor]
NodeKey = tuple[str, int]
Shape = tuple[int, ...]

INPUT: Final[NodeKey] = ("__input__", 0)

SUPPORTED_MODULES: Final = (
    "Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, Flatten, "
    "Dropout, BatchNorm1d, BatchNorm2d, Identity, ReLU, ReLU6, LeakyReLU, ELU, SELU, GELU, "
    "SiLU, Mish, Sigmoid, Tanh, Softplus, Softsign, Softmax, LogSoftmax"
)


class ExportError(UnsupportedLayerError):
    """A module or operation the TF.js exporter cannot express; the message names it."""


@dataclass(frozen=True)
class _Binding:
    """One exported weight: its TF.js name, the state_dict entry, the two layouts."""

    tfjs_name: str
    torch_key: str
    to_tfjs: Converter
    to_torch: Converter
    trainable: bool


@dataclass(frozen=True)
class _Value:
    """A tensor of the traced graph: where the TF.js model computes it, and its layout.

    `shape` is the PyTorch shape without the batch axis: rank 3 is an image (C, H, W), held as
    (H, W, C) in TF.js. `perm` (rank 1 only): TF.js feature i is PyTorch feature perm[i].
    """

    key: NodeKey
    shape: Shape
    perm: tuple[int, ...] | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def tfjs_shape(self) -> Shape:
        if self.is_image:
            channels, height, width = self.shape
            return (height, width, channels)
        return self.shape


class _NotTensor:
    """A shape query (`x.size(0)`, `x.shape`) feeding a view or reshape."""


@dataclass
class _Layer:
    name: str
    class_name: str
    config: dict[str, Any]
    inputs: list[NodeKey]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def _inverse(perm: Sequence[int]) -> list[int]:
    inverse = [0] * len(perm)
    for position, source in enumerate(perm):
        inverse[source] = position
    return inverse


def image_to_tfjs(x: torch.Tensor) -> torch.Tensor:
    """A PyTorch NCHW batch as the exported model's NHWC input (other ranks unchanged)."""
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def image_from_tfjs(x: torch.Tensor) -> torch.Tensor:
    """An NHWC batch of the exported model as PyTorch's NCHW (other ranks unchanged)."""
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


# ----------------------------------------------------------------------------- activations

# name -> TF.js `activation` value (what tfjs's model.toJSON writes)
_ACTIVATION_MODULES: Final[dict[type[nn.Module], str]] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.SELU: "selu",
    nn.SiLU: "swish",
    nn.Mish: "mish",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Softsign: "softsign",
}
_ACTIVATION_FUNCTIONS: Final[dict[Any, str]] = {
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu: "relu",
    F.relu_: "relu",
    F.relu6: "relu6",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.selu: "selu",
    torch.selu: "selu",
    F.silu: "swish",
    F.mish: "mish",
    F.softsign: "softsign",
}
_ACTIVATION_METHODS: Final = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}

_ADD: Final = (operator.add, operator.iadd, torch.add)
_MUL: Final = (operator.mul, operator.imul, torch.mul)
_MERGES: Final[dict[Any, str]] = {
    **dict.fromkeys(_ADD, "Add"),
    **dict.fromkeys(_MUL, "Multiply"),
    torch.maximum: "Maximum",
    torch.minimum: "Minimum",
}


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument `name` of a call node, given by position `index` or keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


# ----------------------------------------------------------------------------- tracing


class _Tracer(fx.Tracer):
    """Traces through user modules (keeping torch.nn ones as leaves), naming where it fails."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True
        self.path: list[str] = []

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self.path.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.path.pop()


def _trace(module: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as error:
        where = tracer.path[-1] if tracer.path else ""
        name = type(module.get_submodule(where)).__name__ if where else type(module).__name__
        raise ExportError(
            f"cannot trace the forward of {name}"
            + (f" (module {where!r})" if where else "")
            + f": {type(error).__name__}: {error}. The exporter needs a forward without "
            "data-dependent control flow"
        ) from None
    return fx.GraphModule(module, graph)


def _source_line(node: fx.Node) -> str:
    """The user's source line that produced `node` (the first frame outside torch and us)."""
    trace = str(node.meta.get("stack_trace") or node.stack_trace or "")
    lines = trace.strip().splitlines()
    ignored = (str(Path(torch.__file__).parent), str(Path(__file__)))
    for header, code in zip(lines[::2], lines[1::2], strict=False):
        match = re.match(r'\s*File "(.+)", line (\d+)', header)
        if match and not match.group(1).startswith(ignored):
            return f" at {Path(match.group(1)).name}:{match.group(2)} ({code.strip()})"
    return ""


# ----------------------------------------------------------------------------- the exporter


class _Exporter:
    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.layers: list[_Layer] = []
        self.bindings: list[_Binding] = []
        self.values: dict[fx.Node, _Value | _NotTensor] = {}
        self._names: set[str] = set()
        self._weighted_calls: set[str] = set()

    # -- naming and emission

    def _unique(self, base: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or "layer"
        if not name[0].isalnum():
            name = "l" + name
        candidate, n = name, 1
        while candidate in self._names:
            n += 1
            candidate = f"{name}_{n}"
        self._names.add(candidate)
        return candidate

    def emit(
        self,
        base: str,
        class_name: str,
        config: Mapping[str, Any],
        inputs: Sequence[_Value],
        shape: Shape,
        perm: tuple[int, ...] | None = None,
    ) -> _Value:
        name = self._unique(base)
        self.layers.append(
            _Layer(
                name,
                class_name,
                {**config, "name": name, "trainable": True},
                [v.key for v in inputs],
            )
        )
        return _Value((name, 0), shape, perm)

    def bind(
        self,
        layer: str,
        suffix: str,
        torch_key: str,
        to_tfjs: Converter,
        to_torch: Converter,
        trainable: bool = True,
    ) -> None:
        self.bindings.append(_Binding(f"{layer}/{suffix}", torch_key, to_tfjs, to_torch, trainable))

    # -- graph walk

    def run(self, gm: fx.GraphModule) -> _Value:
        output: _Value | None = None
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                if node is self._first_placeholder(gm):
                    self.values[node] = _Value(INPUT, self._shape(node))
                elif not node.args:  # no default value: a second input
                    raise ExportError(
                        f"forward argument {node.target!r}: only single-input models export"
                    )
            elif node.op == "get_attr":
                raise ExportError(
                    f"parameter or buffer {node.target!r} is used directly in forward"
                    f"{_source_line(node)}: only the supported modules may hold weights"
                )
            elif node.op == "call_module":
                self.values[node] = self._call_module(node)
            elif node.op == "call_function":
                self.values[node] = self._call_function(node)
            elif node.op == "call_method":
                self.values[node] = self._call_method(node)
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node) or not isinstance(
                    self.values.get(result), _Value
                ):
                    raise ExportError("the model must return a single tensor")
                value = self.values[result]
                assert isinstance(value, _Value)
                output = value
        if output is None:
            raise ExportError("the traced model has no output")
        if output.perm is not None:
            raise ExportError(
                "the model's output is a flattened feature map, whose element order differs "
                "between PyTorch (C, H, W) and TF.js (H, W, C): end with a Linear layer"
            )
        if output.key == INPUT:
            raise ExportError("the model has no layer to export (its output is its input)")
        return output

    @staticmethod
    def _first_placeholder(gm: fx.GraphModule) -> fx.Node:
        first: fx.Node = next(n for n in gm.graph.nodes if n.op == "placeholder")
        return first

    @staticmethod
    def _shape(node: fx.Node) -> Shape:
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is None:
            raise ExportError(f"{node.format_node()}: the result is not a single tensor")
        return tuple(int(d) for d in shape[1:])

    def _tensor(self, arg: Any, what: str) -> _Value:
        value = self.values.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(value, _Value):
            raise ExportError(f"{what}: expects a tensor computed by the model, got {arg!r}")
        return value

    def _unsupported(self, node: fx.Node, what: str, why: str = "") -> ExportError:
        return ExportError(
            f"{what} is not supported by the TF.js exporter{_source_line(node)}"
            + (f": {why}" if why else "")
        )

    # -- modules

    def _call_module(self, node: fx.Node) -> _Value:
        path = str(node.target)
        module = self.root.get_submodule(path)
        kind = type(module).__name__
        what = f"module {path!r} ({kind})"
        x = self._tensor(node.args[0] if node.args else None, what)
        out_shape = self._shape(node)
        has_weights = any(True for _ in module.parameters(recurse=False)) or any(
            b is not None for b in module.buffers(recurse=False)
        )
        if has_weights:
            if path in self._weighted_calls:
                raise ExportError(
                    f"{what} is called more than once: shared weights do not export "
                    "(TF.js would hold separate copies)"
                )
            self._weighted_calls.add(path)
        if len(node.args) != 1 or node.kwargs:
            raise self._unsupported(node, what, "it is called with more than one input")
        if isinstance(module, nn.Identity):
            return x
        if isinstance(module, nn.Linear):
            return self._linear(path, module, x, out_shape)
        if isinstance(module, nn.Conv2d):
            return self._conv2d(node, path, module, x, out_shape)
        if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            is_max = isinstance(module, nn.MaxPool2d)
            return self._pool(
                node,
                path,
                x,
                out_shape,
                is_max=is_max,
                kernel=module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation if isinstance(module, nn.MaxPool2d) else 1,
                ceil_mode=module.ceil_mode,
                count_include_pad=getattr(module, "count_include_pad", True),
                divisor_override=getattr(module, "divisor_override", None),
                return_indices=getattr(module, "return_indices", False),
            )
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            return self._adaptive_pool(
                node, path, x, out_shape, isinstance(module, nn.AdaptiveMaxPool2d)
            )
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise self._unsupported(node, what, "only Flatten(start_dim=1, end_dim=-1)")
            return self._flatten(path, x, out_shape)
        if type(module) is nn.Dropout:
            return self.emit(path, "Dropout", {"rate": float(module.p)}, [x], out_shape, x.perm)
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            return self._batch_norm(node, path, module, x, out_shape)
        return self._activation_module(node, path, module, x, out_shape)

    def _activation_module(
        self, node: fx.Node, path: str, module: nn.Module, x: _Value, shape: Shape
    ) -> _Value:
        what = f"module {path!r} ({type(module).__name__})"
        name = _ACTIVATION_MODULES.get(type(module))
        if name is not None:
            return self.activation(path, name, x, shape)
        if isinstance(module, nn.LeakyReLU):
            return self.emit(
                path, "LeakyReLU", {"alpha": float(module.negative_slope)}, [x], shape, x.perm
            )
        if isinstance(module, nn.ELU):
            return self._elu(node, path, float(module.alpha), x, shape)
        if isinstance(module, nn.GELU):
            return self._gelu(node, path, module.approximate, x, shape)
        if isinstance(module, nn.Softplus):
            return self._softplus(node, path, float(module.beta), x, shape)
        if isinstance(module, nn.Softmax | nn.LogSoftmax):
            dim = -1 if module.dim is None else int(module.dim)
            return self._softmax(node, path, isinstance(module, nn.LogSoftmax), dim, x, shape)
        raise ExportError(
            f"{what} is not supported by the TF.js exporter "
            f"(supported modules: {SUPPORTED_MODULES})"
        )

    def _linear(self, path: str, module: nn.Linear, x: _Value, shape: Shape) -> _Value:
        if x.is_image:
            raise ExportError(
                f"module {path!r} (Linear) is applied to an image (C, H, W): flatten it first"
            )
        config = {
            "units": int(module.out_features),
            "activation": "linear",
            "use_bias": module.bias is not None,
            "kernel_initializer": GLOROT_UNIFORM_JSON,
            "bias_initializer": ZEROS_JSON,
        }
        out = self.emit(path, "Dense", config, [x], shape)
        perm = x.perm
        if perm is None:
            self.bind(out.key[0], "kernel", f"{path}.weight", lambda t: t.T, lambda t: t.T)
        else:
            rows, inverse = list(perm), _inverse(perm)
            self.bind(
                out.key[0],
                "kernel",
                f"{path}.weight",
                lambda t: t.T[rows],
                lambda t: t[inverse].T,
            )
        if module.bias is not None:
            self.bind(out.key[0], "bias", f"{path}.bias", _same, _same)
        return out

    def _conv2d(
        self, node: fx.Node, path: str, module: nn.Conv2d, x: _Value, shape: Shape
    ) -> _Value:
        what = f"module {path!r} (Conv2d)"
        if not x.is_image:
            raise self._unsupported(node, what, f"its input has shape {list(x.shape)}")
        if module.groups != 1:
            raise self._unsupported(node, what, f"groups={module.groups}")
        if module.padding_mode != "zeros":
            raise self._unsupported(node, what, f"padding_mode={module.padding_mode!r}")
        kernel, stride, dilation = (
            _pair(v) for v in (module.kernel_size, module.stride, module.dilation)
        )
        if max(stride) > 1 and max(dilation) > 1:
            raise self._unsupported(node, what, "TF.js has no strided dilated convolution")
        x, padding = self._padding(
            node, path, x, module.padding, kernel, stride, dilation, what, pad_with_zeros=True
        )
        config = {
            "filters": int(module.out_channels),
            "kernel_size": list(kernel),
            "strides": list(stride),
            "padding": padding,
            "data_format": "channels_last",
            "dilation_rate": list(dilation),
            "activation": "linear",
            "use_bias": module.bias is not None,
            "kernel_initializer": GLOROT_UNIFORM_JSON,
            "bias_initializer": ZEROS_JSON,
        }
        out = self.emit(path, "Conv2D", config, [x], shape)
        self.bind(
            out.key[0],
            "kernel",
            f"{path}.weight",
            lambda t: t.permute(2, 3, 1, 0),
            lambda t: t.permute(3, 2, 0, 1),
        )
        if module.bias is not None:
            self.bind(out.key[0], "bias", f"{path}.bias", _same, _same)
        return out

    def _padding(
        self,
        node: fx.Node,
        path: str,
        x: _Value,
        padding: Any,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int],
        what: str,
        pad_with_zeros: bool,
    ) -> tuple[_Value, str]:
        """TF.js 'valid' or 'same' for PyTorch's padding, with a ZeroPadding2D layer if needed."""
        if padding == "valid":
            return x, "valid"
        if padding == "same":  # PyTorch pads like TF here (stride 1, extra pixel after)
            return x, "same"
        pads = _pair(padding)
        if pads == (0, 0):
            return x, "valid"
        _, height, width = x.shape
        if all(
            same_padding(size, k, s, d)[0] == p
            and math.ceil(size / s) == (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, k, s, d, p in zip(
                (height, width), kernel, stride, dilation, pads, strict=True
            )
        ):
            return x, "same"
        if not pad_with_zeros:
            raise self._unsupported(
                node, what, f"padding={list(pads)} differs from TF.js 'same' padding here"
            )
        return self._padding_layer(path, x, pads), "valid"

    def _pool(
        self,
        node: fx.Node,
        path: str,
        x: _Value,
        shape: Shape,
        *,
        is_max: bool,
        kernel: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: Any,
        return_indices: bool,
    ) -> _Value:
        kind = "MaxPool2d" if is_max else "AvgPool2d"
        what = f"{kind} {path!r}"
        if not x.is_image:
            raise self._unsupported(node, what, f"its input has shape {list(x.shape)}")
        pool = _pair(kernel)
        strides = pool if stride is None or stride == [] else _pair(stride)
        if _pair(dilation) != (1, 1):
            raise self._unsupported(node, what, "dilation")
        if return_indices:
            raise self._unsupported(node, what, "return_indices=True")
        if divisor_override is not None:
            raise self._unsupported(node, what, "divisor_override")
        pads = _pair(padding)
        if ceil_mode:
            _, height, width = x.shape
            for size, k, s, p in zip((height, width), pool, strides, pads, strict=True):
                if (size + 2 * p - k) % s != 0:
                    raise self._unsupported(node, what, "ceil_mode=True changes the output here")
        if pads != (0, 0) and not is_max and count_include_pad:
            # PyTorch averages over the zero padding too: pad explicitly, then pool 'valid'.
            x, mode = self._padding_layer(path, x, pads), "valid"
        else:  # max pooling ignores padding, as TF.js 'same' does; so does this average
            x, mode = self._padding(
                node, path, x, pads, pool, strides, (1, 1), what, pad_with_zeros=False
            )
        config = {
            "pool_size": list(pool),
            "padding": mode,
            "strides": list(strides),
            "data_format": "channels_last",
        }
        class_name = "MaxPooling2D" if is_max else "AveragePooling2D"
        return self.emit(path, class_name, config, [x], shape)

    def _padding_layer(self, path: str, x: _Value, pads: tuple[int, int]) -> _Value:
        channels, height, width = x.shape
        return self.emit(
            f"{path}_pad",
            "ZeroPadding2D",
            {"padding": [[pads[0], pads[0]], [pads[1], pads[1]]], "data_format": "channels_last"},
            [x],
            (channels, height + 2 * pads[0], width + 2 * pads[1]),
        )

    def _adaptive_pool(
        self, node: fx.Node, path: str, x: _Value, shape: Shape, is_max: bool
    ) -> _Value:
        what = f"{'AdaptiveMaxPool2d' if is_max else 'AdaptiveAvgPool2d'} {path!r}"
        if not x.is_image:
            raise self._unsupported(node, what, f"its input has shape {list(x.shape)}")
        _, height, width = x.shape
        _, out_h, out_w = shape
        if height % out_h or width % out_w:
            raise self._unsupported(
                node, what, f"output {out_h}x{out_w} does not divide the input {height}x{width}"
            )
        window = [height // out_h, width // out_w]
        config = {
            "pool_size": window,
            "padding": "valid",
            "strides": window,
            "data_format": "channels_last",
        }
        return self.emit(path, "MaxPooling2D" if is_max else "AveragePooling2D", config, [x], shape)

    def _flatten(self, path: str, x: _Value, shape: Shape) -> _Value:
        perm = x.perm
        if x.is_image:
            channels, height, width = x.shape
            if height * width > 1:
                order = np.arange(channels * height * width).reshape(channels, height, width)
                perm = tuple(int(i) for i in order.transpose(1, 2, 0).ravel())
        if len(x.shape) == 1:
            return x
        return self.emit(path, "Flatten", {}, [x], shape, perm)

    def _batch_norm(
        self,
        node: fx.Node,
        path: str,
        module: nn.BatchNorm1d | nn.BatchNorm2d,
        x: _Value,
        shape: Shape,
    ) -> _Value:
        what = f"module {path!r} ({type(module).__name__})"
        if isinstance(module, nn.BatchNorm2d) != x.is_image or len(x.shape) == 2:
            raise self._unsupported(node, what, f"its input has shape {list(x.shape)}")
        if module.running_mean is None or module.momentum is None:
            raise self._unsupported(
                node, what, "it needs track_running_stats=True and a numeric momentum"
            )
        config = {
            "axis": -1,
            "momentum": 1.0 - float(module.momentum),
            "epsilon": float(module.eps),
            "center": bool(module.affine),
            "scale": bool(module.affine),
        }
        out = self.emit(path, "BatchNormalization", config, [x], shape, x.perm)
        layer = out.key[0]
        to_tfjs: Converter = _same
        to_torch: Converter = _same
        if x.perm is not None:
            rows, inverse = list(x.perm), _inverse(x.perm)
            to_tfjs, to_torch = (lambda t: t[rows]), (lambda t: t[inverse])
        if module.affine:
            self.bind(layer, "gamma", f"{path}.weight", to_tfjs, to_torch)
            self.bind(layer, "beta", f"{path}.bias", to_tfjs, to_torch)
        self.bind(layer, "moving_mean", f"{path}.running_mean", to_tfjs, to_torch, False)
        self.bind(layer, "moving_variance", f"{path}.running_var", to_tfjs, to_torch, False)
        return out

    # -- activations shared by modules, functions and methods

    def activation(self, base: str, name: str, x: _Value, shape: Shape) -> _Value:
        return self.emit(base, "Activation", {"activation": name}, [x], shape, x.perm)

    def _elu(self, node: fx.Node, base: str, alpha: float, x: _Value, shape: Shape) -> _Value:
        if alpha != 1.0:
            raise self._unsupported(node, f"ELU {base!r}", f"alpha={alpha} (TF.js: only 1.0)")
        return self.activation(base, "elu", x, shape)

    def _gelu(self, node: fx.Node, base: str, approximate: str, x: _Value, shape: Shape) -> _Value:
        if approximate != "none":
            raise self._unsupported(
                node,
                f"GELU(approximate={approximate!r}) {base!r}",
                "TF.js layers only load the exact (erf) GELU from JSON",
            )
        return self.activation(base, "gelu", x, shape)

    def _softplus(self, node: fx.Node, base: str, beta: float, x: _Value, shape: Shape) -> _Value:
        if beta != 1.0:
            raise self._unsupported(node, f"Softplus {base!r}", f"beta={beta}")
        return self.activation(base, "softplus", x, shape)

    def _softmax(
        self, node: fx.Node, base: str, log: bool, dim: int, x: _Value, shape: Shape
    ) -> _Value:
        axis = self._tfjs_axis(node, x, dim, "softmax")
        last = axis == len(x.shape)
        if log:
            if not last:
                raise self._unsupported(node, f"log_softmax {base!r}", f"over dim {dim}")
            return self.activation(base, "log_softmax", x, shape)
        if last:
            return self.activation(base, "softmax", x, shape)
        return self.emit(base, "Softmax", {"axis": axis}, [x], shape, x.perm)

    def _tfjs_axis(self, node: fx.Node, x: _Value, dim: int, what: str) -> int:
        """The TF.js axis (batch = 0) of PyTorch dimension `dim` of `x`."""
        rank = len(x.shape) + 1
        if not -rank <= dim < rank or dim % rank == 0:
            raise self._unsupported(node, what, f"over dim {dim}")
        dim %= rank
        if x.is_image:
            return {1: 3, 2: 1, 3: 2}[dim]
        return dim

    # -- functions and methods

    def _call_function(self, node: fx.Node) -> _Value | _NotTensor:
        target = node.target
        name = getattr(target, "__name__", str(target))
        base = node.name
        source = node.args[0] if node.args else None
        shape_query = target is getattr and node.args[1] == "shape"
        if shape_query or (
            target is operator.getitem
            and isinstance(source, fx.Node)
            and isinstance(self.values.get(source), _NotTensor)
        ):
            return _NotTensor()
        if target in _MERGES:
            return self._merge(node, _MERGES[target], list(node.args[:2]), node.kwargs)
        if target in (torch.cat, torch.concat):
            tensors = _arg(node, 0, "tensors")
            dim = _arg(node, 1, "dim", 0)
            return self._concatenate(node, list(tensors), int(dim))
        x = self._tensor(node.args[0] if node.args else node.kwargs.get("input"), name)
        shape = self._shape(node)
        if target in _ACTIVATION_FUNCTIONS:
            return self.activation(base, _ACTIVATION_FUNCTIONS[target], x, shape)
        if target in (F.softmax, torch.softmax, F.log_softmax, torch.log_softmax):
            dim = _arg(node, 1, "dim")
            if dim is None:
                raise self._unsupported(node, f"{name} without dim")
            log = target in (F.log_softmax, torch.log_softmax)
            return self._softmax(node, base, log, int(dim), x, shape)
        if target is F.elu:
            return self._elu(node, base, float(_arg(node, 1, "alpha", 1.0)), x, shape)
        if target is F.leaky_relu:
            alpha = float(_arg(node, 1, "negative_slope", 0.01))
            return self.emit(base, "LeakyReLU", {"alpha": alpha}, [x], shape, x.perm)
        if target is F.gelu:
            return self._gelu(node, base, str(node.kwargs.get("approximate", "none")), x, shape)
        if target is F.softplus:
            return self._softplus(node, base, float(_arg(node, 1, "beta", 1.0)), x, shape)
        if target is F.dropout:
            rate = float(_arg(node, 1, "p", 0.5))
            return self.emit(base, "Dropout", {"rate": rate}, [x], shape, x.perm)
        if target is torch.flatten:
            start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
            if start != 1 or end != -1:
                raise self._unsupported(node, "torch.flatten", "only flatten(x, 1)")
            return self._flatten(base, x, shape)
        if target in (F.max_pool2d, F.avg_pool2d):
            is_max = target is F.max_pool2d
            return self._pool(
                node,
                base,
                x,
                shape,
                is_max=is_max,
                kernel=_arg(node, 1, "kernel_size"),
                stride=_arg(node, 2, "stride"),
                padding=_arg(node, 3, "padding", 0),
                dilation=_arg(node, 4, "dilation", 1) if is_max else 1,
                ceil_mode=bool(_arg(node, 5 if is_max else 4, "ceil_mode", False)),
                count_include_pad=bool(_arg(node, 5, "count_include_pad", True))
                if not is_max
                else True,
                divisor_override=None if is_max else _arg(node, 6, "divisor_override"),
                return_indices=bool(_arg(node, 6, "return_indices", False)) if is_max else False,
            )
        if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            return self._adaptive_pool(node, base, x, shape, target is F.adaptive_max_pool2d)
        if target in (torch.mean, torch.amax):
            return self._global_pool(node, base, x, shape, target is torch.amax)
        raise self._unsupported(node, f"operation {name!r}")

    def _call_method(self, node: fx.Node) -> _Value | _NotTensor:
        method = str(node.target)
        base = node.name
        if method in ("size", "dim"):
            return _NotTensor()
        x = self._tensor(node.args[0], f"method .{method}()")
        if method in ("contiguous",):
            return x
        shape = self._shape(node)
        if method in _ACTIVATION_METHODS:
            return self.activation(base, _ACTIVATION_METHODS[method], x, shape)
        if method in ("softmax", "log_softmax"):
            dim = _arg(node, 1, "dim")
            if dim is None:
                raise self._unsupported(node, f"method .{method}() without dim")
            return self._softmax(node, base, method == "log_softmax", int(dim), x, shape)
        if method in ("add", "add_", "mul", "mul_"):
            class_name = "Add" if method.startswith("add") else "Multiply"
            return self._merge(node, class_name, list(node.args[:2]), node.kwargs)
        if method == "flatten":
            start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
            if start != 1 or end != -1:
                raise self._unsupported(node, "method .flatten()", "only x.flatten(1)")
            return self._flatten(base, x, shape)
        if method in ("view", "reshape"):
            return self._reshape(node, base, x, shape)
        if method in ("mean", "amax"):
            return self._global_pool(node, base, x, shape, method == "amax")
        raise self._unsupported(node, f"method .{method}()")

    def _reshape(self, node: fx.Node, base: str, x: _Value, shape: Shape) -> _Value:
        in_size = math.prod(x.shape)
        if math.prod(shape) != in_size:
            raise self._unsupported(node, f".{node.target}()", "it changes the batch size")
        if len(shape) == 1:
            return self._flatten(base, x, shape)
        if x.is_image or len(shape) == 3 or x.perm is not None:
            raise self._unsupported(
                node,
                f".{node.target}() to {list(shape)}",
                "image tensors are NCHW in PyTorch and NHWC in TF.js",
            )
        if shape == x.shape:
            return x
        return self.emit(base, "Reshape", {"target_shape": list(shape)}, [x], shape)

    def _global_pool(
        self, node: fx.Node, base: str, x: _Value, shape: Shape, is_max: bool
    ) -> _Value:
        what = "amax" if is_max else "mean"
        dims = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        if not x.is_image or dims is None:
            raise self._unsupported(node, what, "only over the spatial dims of an image")
        wanted = {int(d) % 4 for d in (dims if isinstance(dims, list | tuple) else [dims])}
        if wanted != {2, 3}:
            raise self._unsupported(node, what, f"over dims {dims}")
        if keepdim:
            _, height, width = x.shape
            config = {
                "pool_size": [height, width],
                "padding": "valid",
                "strides": [height, width],
                "data_format": "channels_last",
            }
            return self.emit(
                base, "MaxPooling2D" if is_max else "AveragePooling2D", config, [x], shape
            )
        class_name = "GlobalMaxPooling2D" if is_max else "GlobalAveragePooling2D"
        return self.emit(base, class_name, {"data_format": "channels_last"}, [x], shape)

    def _merge(
        self, node: fx.Node, class_name: str, args: list[Any], kwargs: Mapping[str, Any]
    ) -> _Value:
        what = f"{class_name.lower()} ({node.name})"
        if kwargs.get("alpha", 1) != 1 or len(args) != 2:
            raise self._unsupported(node, what, "only two tensors, without alpha")
        values = []
        for arg in args:
            value = self.values.get(arg) if isinstance(arg, fx.Node) else None
            if not isinstance(value, _Value):
                raise self._unsupported(
                    node, what, f"one operand is the constant {arg!r}: only tensor operands"
                )
            values.append(value)
        a, b = values
        if a.shape != b.shape or a.perm != b.perm:
            raise self._unsupported(node, what, "operands of different shapes or layouts")
        return self.emit(node.name, class_name, {}, values, self._shape(node), a.perm)

    def _concatenate(self, node: fx.Node, tensors: list[Any], dim: int) -> _Value:
        values = [self._tensor(t, "torch.cat") for t in tensors]
        if len(values) < 2:
            raise self._unsupported(node, "torch.cat", "of fewer than two tensors")
        axis = self._tfjs_axis(node, values[0], dim, "torch.cat")
        perm: tuple[int, ...] | None = None
        if any(v.perm is not None for v in values):
            if len(values[0].shape) != 1:
                raise self._unsupported(node, "torch.cat", "of permuted features")
            merged: list[int] = []
            for v in values:
                merged.extend(o + len(merged) for o in (v.perm or range(v.shape[0])))
            perm = tuple(merged)
        return self.emit(node.name, "Concatenate", {"axis": axis}, values, self._shape(node), perm)

    # -- the TF.js model

    def topology(self, model_name: str, input_value: _Value, output: _Value) -> dict[str, Any]:
        input_shape = [None, *input_value.tfjs_shape()]
        chain = all(
            layer.inputs == [(self.layers[i - 1].name, 0) if i else INPUT]
            for i, layer in enumerate(self.layers)
        ) and output.key == (self.layers[-1].name, 0)
        if chain:
            configs = []
            for i, layer in enumerate(self.layers):
                config = dict(layer.config)
                if i == 0:
                    config = {"batch_input_shape": input_shape, "dtype": "float32", **config}
                configs.append({"class_name": layer.class_name, "config": config})
            body: dict[str, Any] = {
                "class_name": "Sequential",
                "config": {"name": model_name, "layers": configs},
            }
        else:
            input_name = self._unique("input")
            rename = {INPUT: (input_name, 0)}
            nodes: list[dict[str, Any]] = [
                {
                    "name": input_name,
                    "class_name": "InputLayer",
                    "config": {
                        "batch_input_shape": input_shape,
                        "dtype": "float32",
                        "sparse": False,
                        "name": input_name,
                    },
                    "inbound_nodes": [],
                }
            ]
            for layer in self.layers:
                sources = [rename.get(key, key) for key in layer.inputs]
                nodes.append(
                    {
                        "name": layer.name,
                        "class_name": layer.class_name,
                        "config": layer.config,
                        "inbound_nodes": [[[name, index, 0, {}] for name, index in sources]],
                    }
                )
            body = {
                "class_name": "Model",
                "config": {
                    "name": model_name,
                    "layers": nodes,
                    "input_layers": [[input_name, 0, 0]],
                    "output_layers": [[output.key[0], output.key[1], 0]],
                },
            }
        return {**body, "keras_version": KERAS_VERSION, "backend": BACKEND}


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class TfjsExport:
    """A PyTorch module as a TF.js layers model, and the way back to the module's state_dict.

    `input_shape` is the TF.js input shape without the batch axis (images as (H, W, C)).
    """

    artifacts: ModelArtifacts
    input_shape: Shape
    torch_input_shape: Shape
    _bindings: tuple[_Binding, ...] = field(repr=False)

    @property
    def weight_names(self) -> list[str]:
        """TF.js weight names in exchange order (trainable first, as tfjs's `model.weights`)."""
        return [spec.name for spec in self.artifacts.weight_specs]

    def weights(self) -> list[npt.NDArray[np.float32]]:
        """The weights in TF.js layout and exchange order (copies)."""
        return [np.array(w, dtype=np.float32) for w in self.artifacts.weights()]

    def state_dict_from_tfjs(
        self, weights: Sequence[npt.NDArray[np.float32]]
    ) -> dict[str, torch.Tensor]:
        """The module's state_dict entries for TF.js-layout weights (e.g. after training)."""
        if len(weights) != len(self._bindings):
            raise ExportError(f"expected {len(self._bindings)} weight tensors, got {len(weights)}")
        return {
            b.torch_key: b.to_torch(torch.from_numpy(np.array(w, np.float32))).contiguous()
            for b, w in zip(self._bindings, weights, strict=True)
        }

    def save(self, folder: str | Path) -> Path:
        """Write `model.json` and `weights.bin` into `folder`; returns the model.json path."""
        return write_layers_folder(self.artifacts, Path(folder))


def export_tfjs(
    module: nn.Module,
    input_shape: Sequence[int],
    name: str = "model",
    output_activation: str | None = None,
) -> TfjsExport:
    """Export `module` (taking batches of `input_shape`, PyTorch layout) as a TF.js model.

    `output_activation` (e.g. "softmax") appends that activation, for modules returning logits
    when the task's loss reads probabilities. Raises ExportError naming the first module or
    operation TF.js layers cannot express.
    """
    torch_shape = tuple(int(d) for d in input_shape)
    if not torch_shape or len(torch_shape) > 3 or any(d <= 0 for d in torch_shape):
        raise ExportError(
            f"input shape {list(torch_shape)}: give the shape of one sample, (features,) "
            "or (channels, height, width)"
        )
    gm = _trace(module)
    was_training = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(2, *torch_shape))
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(
            f"the model does not run on inputs of shape {[None, *torch_shape]}: {error}"
        ) from None
    finally:
        for m, training in was_training.items():
            m.training = training
    exporter = _Exporter(module)
    output = exporter.run(gm)
    if output_activation is not None:
        output = exporter.activation("output", output_activation, output, output.shape)
    input_value = _Value(INPUT, torch_shape)
    topology = exporter.topology(name, input_value, output)
    state = module.state_dict(keep_vars=False)
    ordered = [b for b in exporter.bindings if b.trainable] + [
        b for b in exporter.bindings if not b.trainable
    ]
    specs: list[WeightSpec] = []
    chunks: list[bytes] = []
    for binding in ordered:
        tensor = binding.to_tfjs(state[binding.torch_key].detach().to(torch.float32).cpu())
        array = np.ascontiguousarray(tensor.numpy(), dtype=FLOAT32)
        specs.append(WeightSpec(binding.tfjs_name, tuple(int(d) for d in array.shape)))
        chunks.append(array.tobytes())
    artifacts = ModelArtifacts(topology, specs, b"".join(chunks), dict(ARTIFACTS_EXTRA))
    return TfjsExport(artifacts, input_value.tfjs_shape(), torch_shape, tuple(ordered))
