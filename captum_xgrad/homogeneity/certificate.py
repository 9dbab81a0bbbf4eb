r"""A proof of homogeneity: degree propagation over the model's traced graph.

:func:`certify_homogeneity` traces the model with :func:`torch.fx.symbolic_trace` and
gives every node of the graph an *abstract value* that describes how it depends on
the input scale :math:`\alpha` when the inputs are :math:`b + \alpha z` (the baseline
:math:`b` is 0 unless given):

- ``hom(d, c)``: the value is :math:`h(\alpha z) + c` with :math:`h` nonnegatively
  homogeneous of degree :math:`d` and :math:`c` a constant *offset* (exactly zero,
  a known tensor, or known only to be non-zero);
- ``const``: it does not depend on the inputs (parameters, buffers, additional
  forward arguments, literals);
- ``bad``: it is not homogeneous, for a structural reason recorded as a finding;
- ``unknown``: no rule covers the operation.

The rules (each one exact, so that a proof is sound):

- linear maps (bias-free Linear/Conv/ConvTranspose, average pooling, flatten, view,
  permute, indexing, sum/mean, eval-mode BatchNorm, ...) keep the degree and carry the
  offset, which is computed on the known constants (a bias or a BatchNorm shift *is*
  an offset);
- positively homogeneous nonlinearities (ReLU, LeakyReLU, PReLU, ``clamp(min=0)``,
  max pooling, abs, max/min) keep the degree, but only if the offset is exactly zero:
  ``relu(h + c)`` is not homogeneous for :math:`c \ne 0`;
- add/sub need equal degrees (or a constant, which becomes offset); mul adds degrees
  (a constant has degree 0); division subtracts them; ``pow(h, p)`` multiplies by
  :math:`p`; cat/stack need equal degrees; ``torch.where`` needs a scale-invariant
  condition;
- every other function of the input (sigmoid, tanh, GELU, softmax, exp, log, clamp
  with a max, ReLU6, LayerNorm/GroupNorm, train-mode BatchNorm, ...) is ``bad``,
  except when its argument is itself scale-invariant (degree 0).

The model is proved homogeneous of degree :math:`k` if its output is ``hom(k, 0)``
with :math:`k > 0`: then :math:`f(b + \alpha z) = \alpha^k f(b + z)` for every input
and every :math:`\alpha \ge 0`, and X-Gradient equals Integrated Gradients with the
baseline :math:`b`. Tracing is not a forward pass: no module's ``forward`` runs on
real tensors and no hook fires.

Why :mod:`torch.fx` rather than :func:`torch.export.export`: fx keeps the
``torch.nn`` modules as leaves, so a finding names the module (``layer1.0.bn1``) and
its rule reads the module's own parameters, and symbolic tracing runs no kernel at
all (export runs the model on fake tensors, decomposes modules into aten ops and
takes seconds on a ResNet-50). What fx cannot trace (data-dependent control flow) is
"unknown", and the guard then falls back to the empirical check.
"""

from __future__ import annotations

import builtins
import inspect
import numbers
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, fx, nn

from .._core.state import model_of
from .._core.types import AVG_POOL, BATCH_NORM, CONSTANT_PAD, CONV, DROPOUT, LAYOUT, MAX_POOL, PER_EXAMPLE_NORMS
from .report import CertificateFinding, DegreeCertificate
from .static import _activation_reason

__all__ = ["certify_homogeneity", "certify_layer"]

# ----------------------------------------------------------------- abstract values
ZERO = None  # an offset that is exactly zero


class _Offset:
    """An offset whose value is not computed: ``NZ`` (non-zero) or ``UNK`` (maybe zero)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NZ = _Offset("NZ")
UNK = _Offset("UNK")


class AV:
    """The abstract value of one graph node (see the module docstring)."""

    __slots__ = ("kind", "degree", "offset", "origin", "value", "findings", "bypass")

    def __init__(
        self,
        kind: str,
        degree: float = 0.0,
        offset: Any = ZERO,
        origin: Optional[CertificateFinding] = None,
        value: Any = None,
        findings: Tuple[CertificateFinding, ...] = (),
        bypass: Optional[CertificateFinding] = None,
    ) -> None:
        self.kind = kind
        self.degree = float(degree)
        self.offset = offset
        self.origin = origin
        self.value = value
        self.findings = findings
        self.bypass = bypass

    @property
    def scale_invariant(self) -> bool:
        return self.kind == "const" or (self.kind == "hom" and self.degree == 0.0)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"AV({self.kind}, d={self.degree:g}, offset={self.offset!r})"


def _hom(d: float, offset: Any = ZERO, origin: Optional[CertificateFinding] = None) -> AV:
    if d == 0.0:
        return AV("hom", 0.0)
    if isinstance(offset, Tensor) and _is_zero(offset):
        offset, origin = ZERO, None
    return AV("hom", d, offset, origin if offset is not ZERO else None)


def _const(value: Any = None, bypass: Optional[CertificateFinding] = None) -> AV:
    return AV("const", value=value if bypass is None else None, bypass=bypass)


def _is_zero(t: Any) -> bool:
    if isinstance(t, Tensor):
        return t.device.type != "meta" and bool(torch.count_nonzero(t.detach()) == 0)
    if isinstance(t, bool):
        return not t
    if isinstance(t, numbers.Number):
        return t == 0
    return False


def _value_known(av: AV) -> bool:
    return av.kind == "const" and av.bypass is None and av.value is not None


# ------------------------------------------------------------------- the tracer
class _Tracer(fx.Tracer):
    """fx's tracer with chosen extra leaves (the certified layer, ``Normalize``)."""

    def __init__(self, extra_leaves: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self._extra = {id(m) for m in extra_leaves}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if id(m) in self._extra or _is_normalize(m) or getattr(m, "xgrad_rule", None) == "linear":
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _is_torch_leaf(m: nn.Module) -> bool:
    return type(m).__module__.startswith("torch.nn") and not isinstance(m, nn.Sequential)


def _is_normalize(m: nn.Module) -> bool:
    cls = type(m)
    return cls.__name__ == "Normalize" and cls.__module__.startswith("torchvision.transforms")


def _trace(
    model: nn.Module,
    num_inputs: int,
    extra_args: Tuple[Any, ...],
    extra_leaves: Sequence[nn.Module] = (),
) -> Tuple[fx.GraphModule, List[str], Dict[str, Any]]:
    """Trace ``model``; return the graph, the placeholder roles and extra-arg values.

    The first ``num_inputs`` positional parameters of ``forward`` are the attributed
    inputs; the next are the additional forward arguments (tensors stay placeholders,
    other values are baked in as ``concrete_args``); parameters with defaults that
    were not given keep their defaults.
    """
    sig = inspect.signature(model.forward)
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_var = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    if len(params) < num_inputs + len(extra_args) and not has_var:
        raise TypeError(
            f"forward takes {len(params)} positional argument(s), but {num_inputs} "
            f"input(s) and {len(extra_args)} additional argument(s) were given"
        )
    concrete: Dict[str, Any] = {}
    roles: Dict[str, Any] = {}
    for i, p in enumerate(params):
        if i < num_inputs:
            roles[p.name] = ("input", i)
        elif i < num_inputs + len(extra_args):
            value = extra_args[i - num_inputs]
            if isinstance(value, Tensor):
                roles[p.name] = ("arg", value)
            else:
                concrete[p.name] = value
        elif p.default is not p.empty:
            concrete[p.name] = p.default
    tracer = _Tracer(extra_leaves)
    graph = tracer.trace(model, concrete_args=concrete or None)
    gm = fx.GraphModule(tracer.root, graph)
    return gm, list(roles), roles


# ---------------------------------------------------------------- op vocabulary
_OPERATORS: Dict[Any, str] = {
    operator.add: "add", operator.iadd: "add", operator.sub: "sub", operator.isub: "sub",
    operator.mul: "mul", operator.imul: "mul", operator.truediv: "div",
    operator.itruediv: "div", operator.floordiv: "floordiv", operator.mod: "remainder",
    operator.neg: "neg", operator.pos: "identity", operator.pow: "pow",
    operator.matmul: "matmul", operator.getitem: "getitem", operator.gt: "gt",
    operator.lt: "lt", operator.ge: "ge", operator.le: "le", operator.eq: "eq",
    operator.ne: "ne", operator.abs: "abs", builtins.getattr: "getattr",
}
_ALIASES = {
    "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub",
    "negative": "neg", "absolute": "abs", "clip": "clamp", "clamp_max": "clamp_max",
    "greater": "gt", "less": "lt", "greater_equal": "ge", "less_equal": "le",
    "not_equal": "ne", "linalg_norm": "norm", "linalg_vector_norm": "norm",
    "max_pool1d_with_indices": "max_pool1d", "max_pool2d_with_indices": "max_pool2d",
    "max_pool3d_with_indices": "max_pool3d", "adaptive_max_pool1d_with_indices":
    "adaptive_max_pool1d", "adaptive_max_pool2d_with_indices": "adaptive_max_pool2d",
    "upsample": "interpolate", "upsample_nearest": "interpolate",
    "upsample_bilinear": "interpolate", "swapaxes": "transpose", "swapdims": "transpose",
    "concat": "cat", "concatenate": "cat", "rsub": "rsub", "conv_transpose1d": "conv",
    "conv_transpose2d": "conv", "conv_transpose3d": "conv", "conv1d": "conv",
    "conv2d": "conv", "conv3d": "conv", "feature_alpha_dropout": "dropout",
    "alpha_dropout": "dropout", "dropout1d": "dropout", "dropout2d": "dropout",
    "dropout3d": "dropout",
}
#: layout and other linear maps of their first argument (other arguments are static)
_LINEAR = {
    "view", "reshape", "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze",
    "contiguous", "expand", "expand_as", "repeat", "narrow", "select", "flip", "roll",
    "clone", "detach", "to", "float", "double", "half", "bfloat16", "type", "type_as",
    "unflatten", "movedim", "moveaxis", "view_as", "reshape_as", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "identity", "tile",
    "repeat_interleave", "diagonal", "cpu", "cuda", "chunk", "split", "tensor_split",
    "unbind", "sum", "mean", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "interpolate",
    "cumsum", "nansum", "trace", "triu", "tril", "contiguous", "requires_grad_",
    "squeeze_", "unsqueeze_", "neg", "fold", "unfold",
}
#: positively homogeneous but nonlinear: need a zero offset
_PIECEWISE = {
    "relu", "leaky_relu", "prelu", "abs", "max_pool1d", "max_pool2d", "max_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "amax", "amin",
    "norm", "lp_pool1d", "lp_pool2d", "sort", "topk", "cummax", "cummin", "logcumsumexp",
}
_COMPARE = {"gt", "lt", "ge", "le", "eq", "ne"}
_SCALE_INVARIANT = {"sign", "argmax", "argmin", "signbit", "heaviside"}
_STATIC = {"size", "dim", "numel", "ndimension", "nelement", "_assert", "len", "is_floating_point", "get_device", "stride", "data_ptr"}
_RANDOM = {"rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "normal", "bernoulli", "multinomial", "randperm", "rrelu"}
_NONHOMOGENEOUS = {
    "sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "softplus", "softmax",
    "log_softmax", "softmin", "exp", "exp2", "log", "log2", "log10", "log1p", "expm1",
    "sin", "cos", "tan", "relu6", "hardtanh", "hardswish", "hardsigmoid", "mish",
    "layer_norm", "group_norm", "instance_norm", "local_response_norm", "rms_norm",
    "erf", "erfc", "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink",
    "normalize", "glu", "logsumexp", "sinh", "cosh", "atan", "asin", "acos", "round",
    "floor", "ceil", "trunc", "frac", "fmod", "remainder", "floordiv", "sigmoid_",
    "scaled_dot_product_attention", "logit", "xlogy", "cosine_similarity",
}
_NONHOMOGENEOUS_HINT = {
    "relu6": "ReLU6 clips at 6 (use relu)",
    "hardtanh": "hardtanh clips at its max (use relu)",
    "layer_norm": "layer normalisation divides by per-example statistics plus eps",
    "group_norm": "group normalisation divides by per-example statistics plus eps",
    "instance_norm": "instance normalisation divides by per-example statistics plus eps",
    "normalize": "F.normalize divides by max(||x||, eps)",
}

_INPLACE_OPERATORS = (operator.iadd, operator.isub, operator.imul, operator.itruediv)
_CONV_LIKE = (nn.Linear,) + CONV
_AVG_POOL = AVG_POOL
_MAX_POOL = MAX_POOL
_LAYOUT_MODULES = LAYOUT
_DROPOUT = DROPOUT
_NORMS = PER_EXAMPLE_NORMS


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        name = str(node.target)
    else:
        name = _OPERATORS.get(node.target) or getattr(node.target, "__name__", str(node.target))
    if name.endswith("_") and not name.startswith("_") and name not in ("requires_grad_",):
        name = name[:-1]
    return _ALIASES.get(name, name)


# ------------------------------------------------------------------ interpreter
class _Interpreter:
    """Assign an abstract value to every node of a traced graph."""

    def __init__(
        self,
        gm: fx.GraphModule,
        roles: Dict[str, Any],
        input_values: Dict[int, AV],
        layer_target: Optional[str] = None,
        layer_mode: Optional[str] = None,
    ) -> None:
        self.gm = gm
        self.roles = roles
        self.input_values = input_values
        self.layer_target = layer_target
        self.layer_mode = layer_mode  # None, "output" or "input"
        self.env: Dict[fx.Node, Any] = {}
        self.layer_nodes: List[fx.Node] = []

    # ---- findings
    def finding(self, node: fx.Node, reason: str, module: Any = "auto") -> CertificateFinding:
        if module == "auto":
            module = _module_of(node)
        return CertificateFinding(node.name, _describe(node, self.gm), module, reason)

    def bad(self, node: fx.Node, reason: str, *, origin: Optional[CertificateFinding] = None) -> AV:
        if origin is not None:
            named = origin.node is not None
            return AV("bad", findings=(CertificateFinding(
                origin.node if named else node.name,
                origin.op if named else _describe(node, self.gm),
                origin.module if named else _module_of(node),
                f"{origin.reason}; it reaches the nonlinearity {_describe(node, self.gm)} "
                f"(node {node.name}), where a constant offset breaks homogeneity",
            ),))
        if not reason:
            reason = "a non-zero constant offset reaches this nonlinearity"
        return AV("bad", findings=(self.finding(node, reason),))

    def bad_with_offsets(self, node: fx.Node, reason: str, avs: Sequence[Any]) -> AV:
        """``bad`` at ``node``, listing first where a non-zero offset of its input came from."""
        own = self.bad(node, reason)
        origins = []
        for a in avs:
            if isinstance(a, AV) and a.kind == "hom" and a.offset is not ZERO and a.origin is not None:
                if a.origin.node is not None and a.origin not in origins:
                    origins.append(a.origin)
        return AV("bad", findings=tuple(origins) + own.findings) if origins else own

    def unknown(self, node: fx.Node, reason: str) -> AV:
        return AV("unknown", findings=(self.finding(node, reason),))

    # ---- main loop
    def run(self) -> Any:
        for node in self.gm.graph.nodes:
            if node.op == "output":
                return self._map(node.args[0])
            try:
                self.env[node] = self.visit(node)
            except Exception as exc:  # a rule's own arithmetic failed: no proof
                self.env[node] = self.unknown(
                    node, f"the rule raised {type(exc).__name__}: {exc}"
                )
        return None  # pragma: no cover - every fx graph has an output node

    def _map(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            items = [self._map(a) for a in arg]
            return type(arg)(items) if isinstance(arg, list) else tuple(items)
        if isinstance(arg, dict):
            return {k: self._map(v) for k, v in arg.items()}
        if isinstance(arg, slice):
            return slice(*(self._static(self._map(v)) for v in (arg.start, arg.stop, arg.step)))
        if isinstance(arg, AV):  # pragma: no cover
            return arg
        return _const(arg)

    @staticmethod
    def _static(v: Any) -> Any:
        if isinstance(v, AV):
            return v.value
        return v

    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            role = self.roles.get(node.target)
            if role is None:
                return _const(None)
            if role[0] == "input":
                return self.input_values[role[1]]
            return _const(role[1])
        if node.op == "get_attr":
            return _const(_fetch_attr(self.gm, str(node.target)))
        args = self._map(node.args)
        kwargs = self._map(node.kwargs)
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            if self.layer_target is not None and str(node.target) == self.layer_target:
                self.layer_nodes.append(node)
                if self.layer_mode == "output":
                    return _hom(1.0)
                if self.layer_mode == "input":
                    args = (_hom(1.0),) + tuple(args[1:])
            if self.layer_target is not None and str(node.target) == self.layer_target and not _is_torch_leaf(module):
                return self.submodule(node, module, list(args))
            return self.module_rule(node, module, list(args), kwargs)
        return self.function_rule(node, _op_name(node), list(args), kwargs)

    def submodule(self, node: fx.Node, module: nn.Module, args: List[Any]) -> Any:
        """Interpret a custom module kept as a leaf (the certified layer) on its own graph."""
        try:
            gm, _, roles = _trace(module, len(args), ())
        except Exception as exc:
            return self.unknown(node, f"the layer's own forward could not be traced ({type(exc).__name__})")
        values = {i: a if isinstance(a, AV) else _const(a) for i, a in enumerate(args)}
        inner = _Interpreter(gm, roles, values)
        out = inner.run()
        prefix = str(node.target)
        if isinstance(out, AV) and out.kind in ("bad", "unknown"):
            return AV(out.kind, findings=tuple(
                CertificateFinding(f.node, f.op, f"{prefix}.{f.module}" if f.module else prefix, f.reason)
                for f in out.findings
            ))
        return out

    # ---- helpers on abstract values
    @staticmethod
    def leaves(obj: Any) -> List[AV]:
        if isinstance(obj, AV):
            return [obj]
        if isinstance(obj, _Repeat):
            return [obj.part]
        if isinstance(obj, (list, tuple)):
            return [x for o in obj for x in _Interpreter.leaves(o)]
        if isinstance(obj, dict):
            return [x for o in obj.values() for x in _Interpreter.leaves(o)]
        return []

    def propagate_failure(self, avs: Sequence[AV]) -> Optional[AV]:
        bad = [f for a in avs if a.kind == "bad" for f in a.findings]
        if bad:
            return AV("bad", findings=tuple(dict.fromkeys(bad)))
        unk = [f for a in avs if a.kind == "unknown" for f in a.findings]
        if unk:
            return AV("unknown", findings=tuple(dict.fromkeys(unk)))
        return None

    def const_result(self, node: fx.Node, avs: Sequence[AV], compute: Callable[[], Any]) -> AV:
        bypass = next((a.bypass for a in avs if a.bypass is not None), None)
        if bypass is not None:
            return _const(None, bypass=bypass)
        if node.target in _INPLACE_OPERATORS:
            return _const(None)
        try:
            return _const(compute())
        except Exception:
            return _const(None)

    def offset_apply(self, av: AV, fn: Callable[[Tensor], Any]) -> Tuple[Any, Optional[CertificateFinding]]:
        """The offset after a linear map ``fn`` (computed when it is a known tensor)."""
        if av.offset is ZERO or isinstance(av.offset, _Offset):
            return av.offset, av.origin
        try:
            out = fn(av.offset)
        except Exception:
            return NZ, av.origin
        if not isinstance(out, Tensor):
            return NZ, av.origin
        return (ZERO, None) if _is_zero(out) else (out, av.origin)

    def require_zero_offset(self, node: fx.Node, av: AV) -> Optional[AV]:
        if av.kind != "hom" or av.offset is ZERO:
            return None
        if av.offset is UNK:
            return AV("unknown", findings=(CertificateFinding(
                av.origin.node if av.origin else node.name,
                av.origin.op if av.origin else _describe(node, self.gm),
                av.origin.module if av.origin else _module_of(node),
                (av.origin.reason if av.origin else "a constant of unknown value")
                + f"; it reaches the nonlinearity at node {node.name}, so whether the "
                "offset is zero cannot be decided",
            ),))
        return self.bad(node, "", origin=av.origin)

    # ---- modules
    def module_rule(self, node: fx.Node, m: nn.Module, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        avs = [a for a in self.leaves(args) + self.leaves(kwargs)]
        failed = self.propagate_failure(avs)
        if failed is not None:
            return failed
        tensors = [a for a in avs if a.kind == "hom"]
        x = args[0] if args else None
        name = str(node.target)
        if not tensors:  # nothing here depends on the inputs
            return self.const_result(node, avs, lambda: None)
        if isinstance(m, _DROPOUT):
            if m.training and getattr(m, "p", 0) > 0:
                return self.bad(node, f"{type(m).__name__} in training mode is random; call model.eval()")
            return x
        if isinstance(m, BATCH_NORM):
            if m.training or not m.track_running_stats or m.running_mean is None:
                return self.bad(
                    node,
                    f"{type(m).__name__} in training mode normalises with batch statistics "
                    "(plus eps), which is not homogeneous; call model.eval()",
                )
            scale, shift = _bn_affine(m)
            return self.affine(node, x, scale, shift, "eval-mode BatchNorm with a non-zero shift (bias - running_mean * weight / sqrt(running_var + eps)); fold it with captum_xgrad.make_x_dnn")
        if _is_normalize(m):
            mean = torch.as_tensor(m.mean, dtype=torch.float64)
            std = torch.as_tensor(m.std, dtype=torch.float64)
            scale, shift = 1.0 / std, -mean / std
            return self.affine(node, x, scale, shift, "Normalize subtracts a non-zero mean, so the model is homogeneous about its centre, not about 0")
        if all(a.scale_invariant for a in tensors):
            return _hom(0.0)
        if isinstance(m, _CONV_LIKE):
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, "a weight depends on the inputs")
            bias = getattr(m, "bias", None)
            if x.offset is ZERO:
                if bias is None or _is_zero(bias):
                    return _hom(x.degree)
                b = bias.detach().clone()
                if isinstance(m, CONV):
                    b = b.reshape(1, -1, *([1] * (len(m.kernel_size))))
                return _hom(x.degree, b, self.finding(node, "has a bias (y = W x + b) that is not zero; remove it with captum_xgrad.make_x_dnn", module=name))
            off, origin = self.offset_apply(x, lambda c: m.forward(c.to(m.weight.dtype)))
            return _hom(x.degree, off, origin)
        if isinstance(m, nn.Bilinear):
            a, b = args[0], args[1]
            for v in (a, b):
                if v.kind == "hom":
                    bad = self.require_zero_offset(node, v)
                    if bad is not None:
                        return bad
            d = sum(v.degree for v in (a, b) if v.kind == "hom")
            if m.bias is not None and not _is_zero(m.bias):
                return _hom(d, m.bias.detach(), self.finding(node, "Bilinear has a bias that is not zero", module=name))
            return _hom(d)
        if isinstance(m, _NORMS):
            return self.bad(node, f"{type(m).__name__} divides by per-example statistics (plus eps), which is not homogeneous")
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU)) or (
            isinstance(m, nn.Threshold) and m.threshold == 0 and m.value == 0
        ) or isinstance(m, _MAX_POOL):
            bad = self.require_zero_offset(node, x)
            return bad if bad is not None else _hom(x.degree)
        if isinstance(m, _AVG_POOL + _LAYOUT_MODULES) or getattr(m, "xgrad_rule", None) == "linear":
            off, origin = self.offset_apply(x, m.forward)
            return _hom(x.degree, off, origin)
        if isinstance(m, CONSTANT_PAD):
            if m.value != 0:
                return self.bad(node, f"{type(m).__name__} pads with the non-zero constant {m.value}")
            off, origin = self.offset_apply(x, m.forward)
            return _hom(x.degree, off, origin)
        if isinstance(m, (nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin)) and all(
            a.scale_invariant for a in tensors
        ):  # pragma: no cover - handled above
            return _hom(0.0)
        why = _activation_reason(m)
        if why is not None:
            return self.bad_with_offsets(node, why, args)
        return self.unknown(node, f"no rule for the module type {type(m).__name__}")

    def affine(self, node: fx.Node, x: AV, scale: Any, shift: Any, reason: str) -> AV:
        """``y = x * scale + shift`` per channel (dimension 1)."""
        if x.kind != "hom":
            return x  # pragma: no cover
        ndim = x.offset.dim() if isinstance(x.offset, Tensor) else None

        def bcast(t: Any, nd: Optional[int]) -> Any:
            t = torch.as_tensor(t)
            if t.dim() == 0:
                return t
            return t.reshape(1, -1, *([1] * ((nd or 2) - 2)))

        if x.offset is ZERO:
            if _is_zero(shift):
                return _hom(x.degree)
            return _hom(x.degree, bcast(shift, None), self.finding(node, reason, module=str(node.target)))
        if isinstance(x.offset, Tensor):
            c = x.offset.double() * bcast(scale, ndim).double() + bcast(shift, ndim).double()
            c = _cancel(c, x.offset.double() * bcast(scale, ndim).double(), bcast(shift, ndim).double())
            if _is_zero(c):
                return _hom(x.degree)
            origin = x.origin or self.finding(node, reason, module=str(node.target))
            return _hom(x.degree, c.to(x.offset.dtype), origin)
        return _hom(x.degree, x.offset, x.origin)

    # ---- functions and methods
    def function_rule(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        if name == "getitem" and args and not isinstance(args[0], AV):
            return args[0][self._static(args[1])]
        if name == "getattr":
            obj, attr = args[0], self._static(args[1])
            if isinstance(obj, AV) and obj.kind == "hom" and attr in ("T", "mT", "data"):
                return self.linear(node, obj, lambda c: getattr(c, attr))
            if isinstance(obj, AV) and obj.kind == "const" and obj.value is not None:
                try:
                    return _const(getattr(obj.value, attr))
                except Exception:
                    return _const(None)
            if isinstance(obj, AV) and obj.kind in ("bad", "unknown") and attr not in ("shape", "dtype", "device", "ndim"):
                return obj
            return _const(None)
        avs = self.leaves(args) + self.leaves(kwargs)
        if name in _STATIC:
            return _const(None)
        failed = self.propagate_failure(avs)
        if failed is not None:
            return failed
        homs = [a for a in avs if a.kind == "hom"]
        call = self._caller(node, name, args, kwargs)
        if not homs:
            if name in _RANDOM:
                return _const(None)
            inplace = node.op == "call_method" and str(node.target).endswith("_")
            if inplace or kwargs.get("inplace") is not None and self._static(kwargs.get("inplace")):
                return _const(None)
            return self.const_result(node, avs, call)
        if name in _RANDOM:
            return self.unknown(node, f"{name} is random")
        if name in _SCALE_INVARIANT:
            x = args[0]
            bad = self.require_zero_offset(node, x) if isinstance(x, AV) else None
            return bad if bad is not None else _hom(0.0)
        if name in _COMPARE:
            return self.compare(node, name, args)
        if name in ("dropout",):
            training = self._static(kwargs.get("training", args[2] if len(args) > 2 else True))
            p = self._static(kwargs.get("p", args[1] if len(args) > 1 else 0.5))
            if training and p:
                return self.bad(node, "dropout in training mode is random; call model.eval()")
            return args[0]
        if name == "batch_norm":
            return self.functional_batch_norm(node, args, kwargs)
        if name in _NONHOMOGENEOUS:
            if all(a.scale_invariant for a in avs):
                return _hom(0.0)
            hint = _NONHOMOGENEOUS_HINT.get(name, f"{name} is not homogeneous")
            return self.bad_with_offsets(node, f"{hint}; use a ReLU-family function or remove it", args)
        if name in ("clamp", "clamp_min", "clamp_max", "threshold", "hardtanh"):
            return self.clamp(node, name, args, kwargs)
        if name in ("max", "min", "maximum", "minimum", "fmax", "fmin"):
            return self.maxmin(node, name, args, kwargs)
        if name in _PIECEWISE:
            x = args[0]
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, f"{name} of a value that is not a tensor")
            for other in homs[1:]:
                if other is not x and not other.scale_invariant:
                    return self.unknown(node, f"{name} with an input-dependent parameter")
            bad = self.require_zero_offset(node, x)
            if bad is not None:
                return bad
            if name in ("sort", "topk", "cummax", "cummin"):
                return (_hom(x.degree), _hom(0.0))
            if name == "logcumsumexp":
                return self.bad(node, "logcumsumexp is not homogeneous")
            return _hom(x.degree)
        if name in _LINEAR:
            x = args[0]
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, f"{name} whose tensor argument is not the first")
            for other in homs:
                if other is not x and name not in ("expand_as", "type_as", "view_as", "reshape_as"):
                    return self.unknown(node, f"{name} with an input-dependent argument")
            return self.linear(node, x, lambda c: call(c))
        if name == "pad":
            value = self._static(kwargs.get("value", args[3] if len(args) > 3 else None))
            if value not in (None, 0, 0.0):
                return self.bad(node, f"pads with the non-zero constant {value}")
            return self.linear(node, args[0], lambda c: call(c))
        if name in ("add", "sub", "rsub"):
            return self.add(node, name, args, kwargs)
        if name == "neg":  # pragma: no cover - in _LINEAR
            return self.linear(node, args[0], lambda c: -c)
        if name == "mul":
            return self.mul(node, args[0], args[1])
        if name == "div":
            if self._static(kwargs.get("rounding_mode")) is not None:
                return self.bad(node, "division with rounding is not homogeneous")
            return self.div(node, args[0], args[1])
        if name in ("pow", "square", "sqrt", "rsqrt", "reciprocal"):
            p = {"square": 2.0, "sqrt": 0.5, "rsqrt": -0.5, "reciprocal": -1.0}.get(name)
            base = args[0]
            if p is None:
                exp = args[1] if len(args) > 1 else kwargs.get("exponent")
                if isinstance(exp, AV) and exp.kind == "hom":
                    return self.bad(node, "an input-dependent exponent is not homogeneous")
                p = self._static(exp)
                if isinstance(p, Tensor) and p.numel() == 1:
                    p = float(p)
                if not isinstance(p, numbers.Real):
                    return self.unknown(node, "pow with an exponent of unknown value")
            if not isinstance(base, AV) or base.kind != "hom":
                return self.bad(node, "a constant raised to an input-dependent power is not homogeneous")
            if float(p) == 1.0:
                return base
            bad = self.require_zero_offset(node, base)
            return bad if bad is not None else _hom(base.degree * float(p))
        if name in ("matmul", "mm", "bmm", "einsum", "linear", "conv", "bilinear", "outer", "dot", "mv", "baddbmm", "addmm", "kron", "tensordot", "inner"):
            return self.multilinear(node, name, args, kwargs, call)
        if name in ("cat", "stack", "hstack", "vstack", "dstack"):
            return self.cat(node, name, args, kwargs, call)
        if name == "where":
            return self.where(node, args)
        if name == "masked_fill":
            x, mask, value = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("value")
            if isinstance(mask, AV) and not mask.scale_invariant:
                return self.bad(node, "masked_fill with a mask that is not scale-invariant")
            if not _is_zero(self._static(value)):
                return self.bad(node, "masked_fill with a non-zero value")
            bad = self.require_zero_offset(node, x)
            return bad if bad is not None else _hom(x.degree)
        if name == "getitem":
            x, idx = args[0], args[1]
            for i in self.leaves(idx):
                if i.kind == "hom" and not i.scale_invariant:
                    return self.unknown(node, "indexing with input-dependent indices")
            idx_v = self._static_index(idx)
            return self.linear(node, x, lambda c: c[idx_v])
        if name in ("abs",):  # pragma: no cover - in _PIECEWISE
            return _hom(args[0].degree)
        return self.unknown(
            node, f"no rule for {node.op} {name}; the model may still be homogeneous, "
            "but this cannot be proved (the guard falls back to the empirical check)"
        )

    def _static_index(self, idx: Any) -> Any:
        if isinstance(idx, AV):
            return idx.value
        if isinstance(idx, tuple):
            return tuple(self._static_index(i) for i in idx)
        if isinstance(idx, list):
            return [self._static_index(i) for i in idx]
        return idx

    def _caller(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Callable[..., Any]:
        """A function of the first argument that runs the node's op on concrete values."""

        def concrete(a: Any) -> Any:
            if isinstance(a, AV):
                if a.kind == "const" and a.value is not None:
                    return a.value
                raise ValueError("not concrete")
            if isinstance(a, (list, tuple)):
                return type(a)(concrete(x) for x in a)
            if isinstance(a, dict):
                return {k: concrete(v) for k, v in a.items()}
            return a

        def run(first: Any = None) -> Any:
            rest = [concrete(a) for a in args[1:]]
            kw = {k: concrete(v) for k, v in kwargs.items()}
            head = concrete(args[0]) if first is None else first
            if node.op == "call_method":
                return getattr(head, str(node.target))(*rest, **kw)
            return node.target(head, *rest, **kw)

        def run_all() -> Any:
            if node.op == "call_method":
                return run()
            return node.target(*[concrete(a) for a in args], **{k: concrete(v) for k, v in kwargs.items()})

        return lambda first=None: run_all() if first is None else run(first)

    def linear(self, node: fx.Node, x: AV, fn: Callable[[Tensor], Any]) -> Any:
        if x.kind != "hom":
            return x  # pragma: no cover
        if x.offset is ZERO or isinstance(x.offset, _Offset):
            sample = None
        else:
            sample = x.offset
        name = _op_name(node)
        if name in ("chunk", "split", "tensor_split", "unbind"):

            if sample is not None:
                try:
                    parts = fn(sample)
                    return tuple(_hom(x.degree, p, x.origin) for p in parts)
                except Exception:
                    pass
            part = _hom(x.degree, x.offset if x.offset is ZERO else NZ, x.origin)
            return _Repeat(part)
        off, origin = self.offset_apply(x, fn)
        return _hom(x.degree, off, origin)

    def add(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        alpha = self._static(kwargs.get("alpha", args[2] if len(args) > 2 else 1))
        if name == "rsub":
            a, b = b, a
        sign = -1.0 if name in ("sub", "rsub") else 1.0
        a = a if isinstance(a, AV) else _const(a)
        b = b if isinstance(b, AV) else _const(b)
        coef = sign * (alpha if isinstance(alpha, numbers.Number) else 1.0)
        if a.kind == "const":
            a, b, flip = b, a, True
        else:
            flip = False
        # a is hom now
        if b.kind == "hom":
            if a.degree != b.degree:
                if a.scale_invariant and b.scale_invariant:  # pragma: no cover
                    return _hom(0.0)
                return self.bad(
                    node,
                    f"adds values of different degrees ({a.degree:g} and {b.degree:g}), "
                    "which is not homogeneous",
                )
            if a.degree == 0.0:
                return _hom(0.0)
            ca, cb = a.offset, b.offset
            if flip:  # pragma: no cover - both hom: no flip
                ca, cb = cb, ca
            return self._sum_offsets(node, a.degree, a, b, coef if not flip else 1.0, flip)
        # b is a constant
        if a.degree == 0.0:
            return _hom(0.0)
        if b.bypass is not None:
            origin = CertificateFinding(
                node.name, _describe(node, self.gm), _module_of(node),
                f"adds {b.bypass.reason}, which does not pass through the layer (a skip "
                "connection or another input bypasses it)",
            )
            return _hom(a.degree, NZ, a.origin or origin)
        if b.value is None:
            origin = self.finding(node, "adds a constant of unknown value")
            if a.offset is ZERO or a.offset is UNK:
                return _hom(a.degree, UNK, a.origin or origin)
            return _hom(a.degree, UNK, a.origin)
        c = b.value
        if _is_zero(c):
            return _hom(a.degree, a.offset, a.origin)
        c_t = torch.as_tensor(c, dtype=torch.float64)
        if flip and sign < 0:
            # const - hom: the hom part changes sign (still degree d), offset = c - ca
            scaled_c = c_t
            neg_a = True
        else:
            scaled_c = coef * c_t
            neg_a = False
        origin = self.finding(node, f"adds a non-zero constant ({_short(c)})")
        if a.offset is ZERO:
            return _hom(a.degree, scaled_c, origin)
        if isinstance(a.offset, Tensor):
            base = -a.offset.double() if neg_a else a.offset.double()
            total = _cancel(base + scaled_c, base, scaled_c)
            return _hom(a.degree, total, a.origin or origin)
        return _hom(a.degree, a.offset, a.origin)

    def _sum_offsets(self, node: fx.Node, d: float, a: AV, b: AV, coef: float, flip: bool) -> AV:
        ca, cb = a.offset, b.offset
        if ca is ZERO and cb is ZERO:
            return _hom(d)
        if ca is UNK or cb is UNK:
            return _hom(d, UNK, a.origin or b.origin)
        if isinstance(ca, Tensor) or ca is ZERO:
            if isinstance(cb, Tensor) or cb is ZERO:
                ta = ca.double() if isinstance(ca, Tensor) else torch.zeros((), dtype=torch.float64)
                tb = coef * (cb.double() if isinstance(cb, Tensor) else torch.zeros((), dtype=torch.float64))
                try:
                    total = _cancel(ta + tb, ta, tb)
                except Exception:
                    return _hom(d, NZ, a.origin or b.origin)
                return _hom(d, total, a.origin or b.origin)
        return _hom(d, NZ, a.origin or b.origin)

    def mul(self, node: fx.Node, a: Any, b: Any) -> AV:
        a = a if isinstance(a, AV) else _const(a)
        b = b if isinstance(b, AV) else _const(b)
        if a.kind == "const":
            a, b = b, a
        if b.kind == "hom":
            for v in (a, b):
                bad = self.require_zero_offset(node, v)
                if bad is not None:
                    return bad
            return _hom(a.degree + b.degree)
        # hom * const
        if a.offset is ZERO:
            return _hom(a.degree)
        if isinstance(a.offset, Tensor) and _value_known(b):
            try:
                return _hom(a.degree, a.offset * torch.as_tensor(b.value).to(a.offset.dtype), a.origin)
            except Exception:
                return _hom(a.degree, NZ, a.origin)
        return _hom(a.degree, a.offset if a.offset is UNK else NZ, a.origin)

    def div(self, node: fx.Node, a: Any, b: Any) -> AV:
        a = a if isinstance(a, AV) else _const(a)
        b = b if isinstance(b, AV) else _const(b)
        if a.kind == "hom" and b.kind == "hom":
            for v in (a, b):
                bad = self.require_zero_offset(node, v)
                if bad is not None:
                    return bad
            return _hom(a.degree - b.degree)
        if b.kind == "hom":  # constant / tensor
            bad = self.require_zero_offset(node, b)
            return bad if bad is not None else _hom(-b.degree)
        if _value_known(b):
            v = torch.as_tensor(b.value)
            if bool((v == 0).any()):
                return self.unknown(node, "divides by a constant that contains zeros")
            if a.offset is ZERO:
                return _hom(a.degree)
            if isinstance(a.offset, Tensor):
                try:
                    return _hom(a.degree, a.offset / v.to(a.offset.dtype), a.origin)
                except Exception:
                    return _hom(a.degree, NZ, a.origin)
        return _hom(a.degree, a.offset if a.offset in (ZERO, UNK) else NZ, a.origin)

    def multilinear(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any], call: Callable[..., Any]) -> AV:
        operands = [a for a in self.leaves(args) + self.leaves(kwargs) if a.kind == "hom"]
        bias = None
        if name in ("linear", "conv"):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        weights_const = len(operands) == 1
        if weights_const:
            x = operands[0]
            if name in ("linear", "conv") and x is not args[0]:
                return self.unknown(node, f"{name} whose weight depends on the inputs")
            if x.offset is ZERO:
                b = self._static(bias) if isinstance(bias, AV) else bias
                if b is None or _is_zero(b):
                    return _hom(x.degree)
                if isinstance(bias, AV) and bias.value is None:
                    return _hom(x.degree, UNK, self.finding(node, f"{name} adds a bias of unknown value"))
                bt = b.detach().clone()
                if name == "conv":
                    w = self._static(args[1])
                    bt = bt.reshape(1, -1, *([1] * (w.dim() - 2))) if isinstance(w, Tensor) else bt
                return _hom(x.degree, bt, self.finding(node, f"{name} has a bias (y = W x + b) that is not zero"))
            if name in ("einsum",):
                return _hom(x.degree, NZ if x.offset is not UNK else UNK, x.origin)
            pos = next(i for i, a in enumerate(args) if a is x)

            def fn(c: Tensor) -> Any:
                vals = []
                for i, a in enumerate(args):
                    if i == pos:
                        vals.append(c)
                    else:
                        vals.append(self._static(a) if isinstance(a, AV) else a)
                kw = {k: self._static(v) if isinstance(v, AV) else v for k, v in kwargs.items()}
                if node.op == "call_method":
                    return getattr(vals[0], str(node.target))(*vals[1:], **kw)
                return node.target(*vals, **kw)

            off, origin = self.offset_apply(x, fn)
            return _hom(x.degree, off, origin)
        for v in operands:
            bad = self.require_zero_offset(node, v)
            if bad is not None:
                return bad
        if bias is not None and isinstance(bias, AV) and not _is_zero(bias.value):
            return self.unknown(node, f"{name} with input-dependent weights and a bias")
        return _hom(sum(v.degree for v in operands))

    def cat(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any], call: Callable[..., Any]) -> AV:
        parts = args[0] if args else kwargs.get("tensors")
        parts = [p if isinstance(p, AV) else _const(p) for p in (parts or [])]
        homs = [p for p in parts if p.kind == "hom"]
        degrees = {p.degree for p in homs}
        if len(degrees) > 1:
            return self.bad(node, f"{name} of values of different degrees ({', '.join(f'{d:g}' for d in sorted(degrees))})")
        d = degrees.pop()
        if d == 0.0:
            return _hom(0.0)
        consts = [p for p in parts if p.kind == "const"]
        for p in consts:
            if p.bypass is not None:
                return _hom(d, NZ, CertificateFinding(node.name, _describe(node, self.gm), _module_of(node), f"concatenates {p.bypass.reason}, which bypasses the layer"))
            if p.value is None:
                return _hom(d, UNK, self.finding(node, f"{name} with a constant of unknown value"))
            if not _is_zero(p.value):
                return _hom(d, NZ, self.finding(node, f"{name} with a non-zero constant"))
        if all(p.offset is ZERO for p in homs):
            return _hom(d)
        if any(p.offset is UNK for p in homs):
            return _hom(d, UNK, next(p.origin for p in homs if p.offset is not ZERO))
        if all(isinstance(p.offset, Tensor) for p in homs) and not consts:
            dim = self._static(args[1] if len(args) > 1 else kwargs.get("dim", 0))
            try:
                off = getattr(torch, name)([p.offset for p in homs], dim)
                return _hom(d, off, homs[0].origin)
            except Exception:
                pass
        origin = next(p.origin for p in homs if p.offset is not ZERO)
        return _hom(d, NZ, origin)

    def where(self, node: fx.Node, args: List[Any]) -> AV:
        if len(args) < 3:
            return self.unknown(node, "torch.where with one argument")
        cond, a, b = args[0], args[1], args[2]
        cond = cond if isinstance(cond, AV) else _const(cond)
        if not cond.scale_invariant:
            return self.bad(node, "torch.where with a condition that is not scale-invariant (it depends on the input's magnitude)")
        branches = [v if isinstance(v, AV) else _const(v) for v in (a, b)]
        homs = [v for v in branches if v.kind == "hom"]
        if not homs:
            return self.const_result(node, branches, lambda: None)
        for v in branches:
            if v.kind == "const" and not (_value_known(v) and _is_zero(v.value)):
                return self.bad(node, "torch.where selects a non-zero constant, which is not homogeneous")
        if len({v.degree for v in homs}) > 1:
            return self.bad(node, "torch.where between values of different degrees")
        for v in homs:
            bad = self.require_zero_offset(node, v)
            if bad is not None:
                return bad
        return _hom(homs[0].degree)

    def compare(self, node: fx.Node, name: str, args: List[Any]) -> AV:
        a, b = [v if isinstance(v, AV) else _const(v) for v in args[:2]]
        homs = [v for v in (a, b) if v.kind == "hom"]
        for v in homs:
            bad = self.require_zero_offset(node, v)
            if bad is not None:
                return bad
        if len(homs) == 2:
            if a.degree == b.degree:
                return _hom(0.0)
            return self.bad(node, f"compares values of different degrees ({name})")
        other = b if a.kind == "hom" else a
        if homs[0].degree == 0.0:
            return _hom(0.0)
        if _value_known(other) and _is_zero(other.value):
            return _hom(0.0)
        return self.bad(node, f"compares with a non-zero threshold ({name}), which is not scale-invariant")

    def clamp(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        x = args[0]
        if name == "threshold":
            t, v = (self._static(a) for a in (args[1], args[2]))
            ok = t == 0 and v == 0
            lo, hi = (0, None) if ok else (t, v)
        elif name == "hardtanh":
            return self.bad(node, "hardtanh clips at its max (use relu)")
        elif name == "clamp_min":
            lo = self._static(args[1] if len(args) > 1 else kwargs.get("min"))
            hi = None
        elif name == "clamp_max":
            lo, hi = None, self._static(args[1] if len(args) > 1 else kwargs.get("max"))
        else:
            lo = self._static(args[1] if len(args) > 1 else kwargs.get("min"))
            hi = self._static(args[2] if len(args) > 2 else kwargs.get("max"))
        if hi is not None:
            return self.bad(node, f"{name} with a max ({_short(hi)}) is not homogeneous (only clamp(min=0) is: a ReLU)")
        if lo is None:
            return x
        if not _is_zero(lo):
            return self.bad(node, f"{name} with min={_short(lo)} is not homogeneous (only min=0 is)")
        bad = self.require_zero_offset(node, x)
        return bad if bad is not None else _hom(x.degree)

    def maxmin(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        x = args[0]
        if len(args) > 1:
            other = args[1]
        else:
            other = kwargs.get("other", kwargs.get("dim"))
        if isinstance(other, AV) and other.kind == "hom":
            for v in (x, other):
                bad = self.require_zero_offset(node, v)
                if bad is not None:
                    return bad
            if not isinstance(x, AV) or x.kind != "hom" or x.degree != other.degree:
                return self.bad(node, f"{name} of values of different degrees")
            return _hom(x.degree)
        if not isinstance(x, AV) or x.kind != "hom":
            return self.unknown(node, f"{name} with an input-dependent second argument")
        bad = self.require_zero_offset(node, x)
        if bad is not None:
            return bad
        o = self._static(other)
        if other is None:
            return _hom(x.degree)  # a reduction
        if isinstance(o, int) and not isinstance(o, bool) and name in ("max", "min"):
            return (_hom(x.degree), _hom(0.0))  # (values, indices) along a dim
        if _is_zero(o):
            return _hom(x.degree)  # max(x, 0) is a ReLU
        return self.bad(node, f"{name} with a non-zero constant is not homogeneous")

    def functional_batch_norm(self, node: fx.Node, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        names = ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"]
        vals = dict(zip(names, args))
        vals.update(kwargs)
        x = vals["input"]
        if self._static(vals.get("training", False)):
            return self.bad(node, "batch_norm in training mode normalises with batch statistics; call model.eval()")
        rm, rv = self._static(vals.get("running_mean")), self._static(vals.get("running_var"))
        w, b = self._static(vals.get("weight")), self._static(vals.get("bias"))
        eps = self._static(vals.get("eps", 1e-5))
        if rm is None or rv is None:
            return self.unknown(node, "batch_norm with statistics of unknown value")
        scale = (w if w is not None else 1.0) / torch.sqrt(rv + eps)
        shift = (b if b is not None else 0.0) - rm * scale
        return self.affine(node, x, scale, shift, "batch_norm with a non-zero shift")


class _Repeat:
    """The parts of a split whose number is not known: every part is the same value."""

    def __init__(self, part: AV) -> None:
        self.part = part

    def __getitem__(self, index: Any) -> AV:
        return self.part


def _cancel(total: Tensor, a: Any, b: Any) -> Tensor:
    """``total`` with the entries that cancel to within float rounding set to 0."""
    total = torch.as_tensor(total)
    mag = torch.as_tensor(a).abs() + torch.as_tensor(b).abs()
    tiny = total.abs() <= 1e-6 * mag
    return torch.where(tiny, torch.zeros_like(total), total)


def _short(v: Any) -> str:
    if isinstance(v, Tensor):
        if v.numel() == 1:
            return f"{float(v):.4g}"
        return f"tensor of shape {tuple(v.shape)}, max |.| {float(v.abs().max()):.3g}"
    return repr(v)


def _fetch_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, Tensor) else obj


def _bn_affine(m: nn.Module) -> Tuple[Tensor, Tensor]:
    rm = m.running_mean.detach().double()
    rv = m.running_var.detach().double()
    w = m.weight.detach().double() if m.affine and m.weight is not None else torch.ones_like(rm)
    b = m.bias.detach().double() if m.affine and m.bias is not None else torch.zeros_like(rm)
    scale = w / torch.sqrt(rv + m.eps)
    shift = b - rm * scale
    # exact zero where the shift is exactly zero in the model's own terms
    exact = (b == 0) & (rm == 0)
    shift = torch.where(exact, torch.zeros_like(shift), shift)
    return scale, shift


def _module_of(node: fx.Node) -> Optional[str]:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    key = list(stack.keys())[-1]
    name = key.split("@")[0]
    return name or None


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        try:
            return f"call_module {type(gm.get_submodule(str(node.target))).__name__}"
        except AttributeError:  # pragma: no cover
            return f"call_module {node.target}"
    if node.op in ("call_function", "call_method"):
        return f"{node.op} {_op_name(node)}"
    return f"{node.op} {node.target}"


# ------------------------------------------------------------------ entry points
def _format(inputs: Any) -> Tuple[Tensor, ...]:
    t = inputs if isinstance(inputs, tuple) else (inputs,)
    for i, x in enumerate(t):
        if not isinstance(x, Tensor):
            raise TypeError(
                f"example input #{i} is a {type(x).__name__}; certify_homogeneity takes a "
                "tensor or a tuple of tensors (they serve tracing only)."
            )
    return t


def _format_args(additional_forward_args: Any) -> Tuple[Any, ...]:
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def _baseline_offsets(
    inputs: Tuple[Tensor, ...], baselines: Any
) -> Tuple[List[Any], str]:
    if baselines is None:
        return [ZERO] * len(inputs), "0"
    bs = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(bs) != len(inputs):
        raise ValueError(f"got {len(bs)} baselines for {len(inputs)} inputs; pass one per input.")
    offsets: List[Any] = []
    shown = []
    for x, b in zip(inputs, bs):
        if b is None or (isinstance(b, numbers.Number) and b == 0) or (isinstance(b, Tensor) and _is_zero(b)):
            offsets.append(ZERO)
            shown.append("0")
            continue
        t = torch.as_tensor(b, dtype=x.dtype, device=x.device).detach()
        if t.dim() == 0:
            t = t.expand(1, *x.shape[1:])
        elif t.dim() == x.dim() - 1:
            t = t.unsqueeze(0)
        t = t.expand(t.shape[0], *x.shape[1:]).clone()
        offsets.append(t)
        shown.append(_short(b) if isinstance(b, Tensor) else repr(b))
    return offsets, "(" + ", ".join(shown) + ")" if len(shown) > 1 else shown[0]


def _verdict(
    interp: _Interpreter, out: Any, what: str = "the inputs"
) -> Tuple[str, Optional[float], Tuple[CertificateFinding, ...]]:
    leaves = _Interpreter.leaves(out)
    if not leaves:
        return "unknown", None, (CertificateFinding(None, "output", None, "the model returns no tensor"),)
    failed = interp.propagate_failure(leaves)
    if failed is not None:
        status = "not_homogeneous" if failed.kind == "bad" else "unknown"
        return status, None, failed.findings
    output_node = next(n for n in interp.gm.graph.nodes if n.op == "output")
    producer = output_node.args[0] if isinstance(output_node.args[0], fx.Node) else output_node
    findings: List[CertificateFinding] = []
    status = "proved"
    degrees = set()
    for leaf in leaves:
        if leaf.kind == "const":
            if _value_known(leaf) and _is_zero(leaf.value):
                continue
            findings.append(CertificateFinding(
                producer.name, _describe(producer, interp.gm), _module_of(producer),
                f"the output does not depend on {what} (degree 0)",
            ))
            status = "not_homogeneous"
            continue
        if leaf.offset is UNK:
            o = leaf.origin
            findings.append(CertificateFinding(
                o.node if o else producer.name, o.op if o else "output", o.module if o else None,
                (o.reason if o else "a constant") + "; it reaches the output, so f(baseline) = 0 cannot be decided",
            ))
            status = "unknown" if status == "proved" else status
            continue
        if leaf.offset is not ZERO:
            o = leaf.origin
            findings.append(CertificateFinding(
                o.node if o else producer.name, o.op if o else "output", o.module if o else _module_of(producer),
                (o.reason if o else "a constant offset") + "; it reaches the output, so f(baseline) != 0",
            ))
            status = "not_homogeneous"
            continue
        degrees.add(leaf.degree)
    if status == "proved":
        if len(degrees) > 1:
            return "not_homogeneous", None, (CertificateFinding(
                producer.name, _describe(producer, interp.gm), _module_of(producer),
                f"the outputs have different degrees ({', '.join(f'{d:g}' for d in sorted(degrees))})",
            ),)
        d = degrees.pop() if degrees else 0.0
        if d <= 0:
            return "not_homogeneous", None, (CertificateFinding(
                producer.name, _describe(producer, interp.gm), _module_of(producer),
                f"the output has degree {d:g} (it is scale-invariant or shrinks as the "
                "input grows); X-Gradient needs a positive degree",
            ),)
        return "proved", float(d), ()
    return status, None, tuple(dict.fromkeys(findings))


def _centre(gm: fx.GraphModule, interp: _Interpreter, roles: Dict[str, Any], inputs: Tuple[Tensor, ...]) -> Tuple[Any, Optional[str]]:
    """The point that a leading elementwise affine map sends to zero, per input."""
    centres: List[Optional[Tensor]] = [None] * len(inputs)
    exprs: List[str] = []
    for node in gm.graph.nodes:
        if node.op != "placeholder" or roles.get(node.target, ("",))[0] != "input":
            continue
        i = roles[node.target][1]
        scale: Any = torch.ones((), dtype=torch.float64)
        shift: Any = torch.zeros((), dtype=torch.float64)
        expr = str(node.target)
        cur = node
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            if user.op == "call_module":
                m = gm.get_submodule(str(user.target))
                if not _is_normalize(m):
                    break
                mean = torch.as_tensor(m.mean, dtype=torch.float64).reshape(-1, 1, 1)
                std = torch.as_tensor(m.std, dtype=torch.float64).reshape(-1, 1, 1)
                scale, shift = scale / std, (shift - mean) / std
                expr = f"Normalize(mean, std)({expr})"
                cur = user
                continue
            if user.op not in ("call_function", "call_method"):
                break
            name = _op_name(user)
            if name not in ("add", "sub", "mul", "div") or len(user.args) != 2 or user.kwargs:
                break
            other = user.args[1] if user.args[0] is cur else user.args[0]
            if other is cur:
                break
            o = interp.env.get(other) if isinstance(other, fx.Node) else _const(other)
            if o is None or not _value_known(o):
                break
            v = torch.as_tensor(o.value, dtype=torch.float64)
            label = str(other.target) if isinstance(other, fx.Node) and other.op == "get_attr" else _short(o.value)
            first = user.args[0] is cur
            if name == "add":
                shift, expr = shift + v, f"{expr} + {label}"
            elif name == "sub" and first:
                shift, expr = shift - v, f"({expr} - {label})"
            elif name == "sub":
                scale, shift, expr = -scale, v - shift, f"({label} - {expr})"
            elif name == "mul":
                scale, shift, expr = scale * v, shift * v, f"{expr} * {label}"
            elif name == "div" and first:
                scale, shift, expr = scale / v, shift / v, f"{expr} / {label}"
            else:
                break
            cur = user
        if _is_zero(shift) or bool((torch.as_tensor(scale) == 0).any()):
            continue
        c = -shift / scale
        x = inputs[i]
        try:
            centres[i] = torch.broadcast_to(c, (1, *x.shape[1:])).to(x.dtype).clone()
        except RuntimeError:
            continue
        exprs.append(expr)
    if all(c is None for c in centres):
        return None, None
    return (centres[0] if len(centres) == 1 else tuple(centres)), "; ".join(exprs)


def certify_homogeneity(
    model: Callable[..., Any],
    example_inputs: Union[Tensor, Tuple[Tensor, ...]],
    *,
    additional_forward_args: Any = None,
    baselines: Any = None,
) -> DegreeCertificate:
    r"""Prove (or refute) that ``model`` is nonnegatively homogeneous, from its graph.

    The model is traced with :func:`torch.fx.symbolic_trace` and a degree is
    propagated through every node (rules in :mod:`captum_xgrad.homogeneity.certificate`).
    All inputs are scaled together, as Integrated Gradients' path does; additional
    forward arguments are fixed constants. With ``baselines`` the question is whether
    :math:`g(z) = f(b + z)` is homogeneous, i.e. whether X-Gradient equals Integrated
    Gradients with that baseline:

    .. math::

        \mathrm{IG}(x; b) = (x - b) \odot \int_0^1 \nabla f(b + \alpha (x - b))\,d\alpha
                          = \frac{1}{k}\,(x - b) \odot \nabla f(x).

    The verdict is about the model in its current train/eval mode and does not depend
    on the values of ``example_inputs`` (only their number and, for baselines, their
    shape matter). Nothing on the model changes and no forward pass runs.

    Parameters
    ----------
    model : nn.Module or callable
        The model (an ``nn.Module`` or its bound ``forward``). Other callables cannot
        be traced and get ``"unknown"``.
    example_inputs : Tensor or tuple of Tensor
        Inputs as they would be passed to ``model``; used for tracing only.
    additional_forward_args : Any, optional
        Extra arguments after the inputs, as in Captum; treated as constants.
    baselines : scalar, Tensor or tuple, optional
        The baseline :math:`b` per input (a scalar, a tensor of one example's shape,
        or one per example); ``None`` means 0.

    Returns
    -------
    DegreeCertificate
        ``status`` is ``"proved"`` (with the ``degree``), ``"not_homogeneous"`` (with
        findings that name the node and module) or ``"unknown"``.

    Raises
    ------
    TypeError
        If ``example_inputs`` are not tensors.
    ValueError
        If the number of baselines does not match the inputs.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import certify_homogeneity
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 3, bias=False)
    ...     def forward(self, x):
    ...         return torch.nn.functional.gelu(self.fc(x))
    >>> cert = certify_homogeneity(Net(), torch.randn(2, 4))
    >>> cert.status, cert.findings[0].node, cert.findings[0].op
    ('not_homogeneous', 'gelu', 'call_function gelu')
    >>> certify_homogeneity(nn.Bilinear(3, 3, 1, bias=False), (torch.randn(2, 3), torch.randn(2, 3))).degree
    2.0
    """
    inputs = _format(example_inputs)
    extra = _format_args(additional_forward_args)
    offsets, shown = _baseline_offsets(inputs, baselines)
    root = model_of(model)
    name = type(root).__name__ if root is not None else getattr(model, "__qualname__", type(model).__name__)
    if root is None:
        return DegreeCertificate(
            model=name, status="unknown", degree=None,
            findings=(CertificateFinding(None, "trace", None, "only an nn.Module (or its bound forward) can be traced; a lambda or partial around a model cannot"),),
            method="not traced: not an nn.Module", baselines=shown,
        )
    traced = _trace_or_finding(root, len(inputs), extra)
    if isinstance(traced, CertificateFinding):
        return DegreeCertificate(name, "unknown", None, (traced,), f"not traced: {traced.reason}", baselines=shown)
    gm, _, roles = traced
    values = {i: _hom(1.0, off, _input_origin(i, off)) for i, off in enumerate(offsets)}
    interp = _Interpreter(gm, roles, values)
    out = interp.run()
    status, degree, findings = _verdict(interp, out)
    centre, expr = _centre(gm, interp, roles, inputs)
    return DegreeCertificate(
        model=name, status=status, degree=degree, findings=findings,
        method="torch.fx.symbolic_trace", centre=centre, centre_expression=expr,
        baselines=shown,
    )


def _input_origin(i: int, offset: Any) -> Optional[CertificateFinding]:
    if offset is ZERO:
        return None
    return CertificateFinding(
        None, "placeholder", None,
        f"the baseline of input #{i} is not a point the model is homogeneous about "
        "(its offset is not cancelled before the first nonlinearity)",
    )


def _trace_or_finding(root: nn.Module, n: int, extra: Tuple[Any, ...], leaves: Sequence[nn.Module] = ()) -> Any:
    try:
        return _trace(root, n, extra, leaves)
    except Exception as exc:  # fx raises many types for untraceable code
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CertificateFinding(None, "trace", None, f"torch.fx could not trace the model ({type(exc).__name__}: {msg[:200]})")


def _qualified_name(root: nn.Module, layer: nn.Module) -> Optional[str]:
    for qual, m in root.named_modules():
        if m is layer:
            return qual
    return None


def certify_layer(
    model: nn.Module,
    layer: nn.Module,
    example_inputs: Union[Tensor, Tuple[Tensor, ...]],
    *,
    attribute_to_layer_input: bool = False,
    additional_forward_args: Any = None,
    suggest: bool = True,
) -> DegreeCertificate:
    r"""Prove that layer X-Gradient at ``layer`` equals Captum's LayerIntegratedGradients.

    Write the model as :math:`f(x) = g(h(x), x)`: :math:`h(x)` the layer's activation
    and the second argument everything that reaches the output *without* passing
    through the layer (a skip connection around it, another input). Captum's
    :class:`~captum.attr.LayerIntegratedGradients` scales only the activation and keeps
    the rest at its value for :math:`x`, so the identity
    :math:`\mathrm{LayerIG} = \frac{1}{k}\, h \odot \nabla_h g` holds when

    1. :math:`a \mapsto g(a, x)` is homogeneous of degree :math:`k` with everything
       that bypasses the layer held fixed (true when the layer is a cut of the graph
       and the network after it is homogeneous; a product with another branch is fine,
       a sum is not), and
    2. :math:`h(0) = 0`, so that LayerIG's path from the zero input starts at the zero
       activation.

    Both are checked on the traced graph, with ``layer`` kept as a leaf. When the
    layer is not exact, ``suggestion`` names the nearest enclosing module that is.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module
        A submodule of ``model``.
    example_inputs : Tensor or tuple of Tensor
        Inputs for tracing only.
    attribute_to_layer_input : bool, default False
        Certify for the layer's input instead of its output.
    additional_forward_args : Any, optional
        Extra constant arguments, as in Captum.
    suggest : bool, default True
        Look for an enclosing layer that is exact when this one is not.

    Returns
    -------
    DegreeCertificate
        With ``layer`` set; ``degree`` is the degree of :math:`g` in the activation.

    Raises
    ------
    TypeError
        If ``example_inputs`` are not tensors.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.homogeneity import certify_layer
    >>> from captum_xgrad.models import xfixup_resnet18
    >>> model = xfixup_resnet18(num_classes=10).eval()
    >>> x = torch.randn(1, 3, 32, 32)
    >>> certify_layer(model, model.layer2, x).status
    'proved'
    >>> cert = certify_layer(model, model.layer1[0].conv2, x)
    >>> cert.status, cert.suggestion
    ('not_homogeneous', 'layer1.0')
    """
    inputs = _format(example_inputs)
    extra = _format_args(additional_forward_args)
    root = model_of(model)
    if root is None:
        return DegreeCertificate(type(model).__name__, "unknown", None, (CertificateFinding(None, "trace", None, "only an nn.Module can be traced"),), "not traced")
    name = type(root).__name__
    qual = _qualified_name(root, layer)
    if qual is None:
        return DegreeCertificate(name, "unknown", None, (CertificateFinding(None, "layer", None, "the layer is not a submodule of the model"),), "not traced", layer=type(layer).__name__)
    cert = _certify_layer_once(root, name, qual, layer, inputs, extra, attribute_to_layer_input)
    if cert.proved or not suggest:
        return cert
    parts = qual.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent_name = ".".join(parts[:cut])
        parent = root.get_submodule(parent_name)
        other = _certify_layer_once(root, name, parent_name, parent, inputs, extra, False)
        if other.proved:
            return DegreeCertificate(**{**_fields(cert), "suggestion": parent_name})
    return cert


def _fields(cert: DegreeCertificate) -> Dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cert, f.name) for f in dataclasses.fields(cert)}


def _certify_layer_once(
    root: nn.Module, name: str, qual: str, layer: nn.Module,
    inputs: Tuple[Tensor, ...], extra: Tuple[Any, ...], to_input: bool,
) -> DegreeCertificate:
    traced = _trace_or_finding(root, len(inputs), extra, leaves=(layer,) if qual else ())
    if isinstance(traced, CertificateFinding):
        return DegreeCertificate(name, "unknown", None, (traced,), f"not traced: {traced.reason}", layer=qual)
    gm, _, roles = traced
    method = "torch.fx.symbolic_trace (layer kept as a leaf)"
    # 1. the part before the layer maps 0 to 0
    upstream = _Interpreter(gm, roles, {i: _hom(1.0) for i in range(len(inputs))}, qual, None)
    upstream.run()
    if len(upstream.layer_nodes) != 1:
        how = "is not called" if not upstream.layer_nodes else f"is called {len(upstream.layer_nodes)} times"
        return DegreeCertificate(name, "unknown", None, (CertificateFinding(None, "layer", qual, f"the layer {how} in the traced forward"),), method, layer=qual)
    lnode = upstream.layer_nodes[0]
    at = upstream.env[lnode.args[0]] if to_input and lnode.args and isinstance(lnode.args[0], fx.Node) else upstream.env[lnode]
    if to_input and not (lnode.args and isinstance(lnode.args[0], fx.Node)):
        at = _const(None)  # pragma: no cover
    if isinstance(at, AV):
        if at.kind in ("bad", "unknown"):
            return DegreeCertificate(name, "unknown", None, tuple(
                CertificateFinding(f.node, f.op, f.module, f"{f.reason} (before the layer, so h(0) = 0, where LayerIG's path starts, cannot be proved)")
                for f in at.findings
            ), method, layer=qual)
        if at.kind == "hom" and at.offset is not ZERO:
            o = at.origin
            finding = CertificateFinding(
                o.node if o else lnode.name, o.op if o else "layer", o.module if o else qual,
                (o.reason if o else "a constant") + "; before the layer, so its activation at the zero input is not zero and LayerIG's path does not start at 0",
            )
            return DegreeCertificate(name, "not_homogeneous" if at.offset is not UNK else "unknown", None, (finding,), method, layer=qual)
    # 2. the part after the layer, with everything that bypasses it held fixed
    bypass = {
        i: _const(None, bypass=CertificateFinding(None, "placeholder", None, f"input #{i}" if len(inputs) > 1 else "the input"))
        for i in range(len(inputs))
    }
    downstream = _Interpreter(gm, roles, bypass, qual, "input" if to_input else "output")
    out = downstream.run()
    status, degree, findings = _verdict(downstream, out, what="the layer's activation")
    return DegreeCertificate(name, status, degree, findings, method, layer=qual)
