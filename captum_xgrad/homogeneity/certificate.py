r"""A proof of homogeneity: degree propagation over the model's :mod:`torch.fx` graph.

Every node gets an abstract value for the inputs :math:`b + \alpha z` (:math:`b` the
baseline): ``hom(d, c)`` is :math:`h(\alpha z) + c`, :math:`h` homogeneous of degree
:math:`d` and :math:`c` a constant offset; ``const`` does not depend on the inputs; ``bad``
is not homogeneous (with a finding); ``unknown`` has no rule. Linear maps keep the degree and
carry the offset (a bias is one); ReLU-like maps need a zero offset; add and cat need equal
degrees, mul adds them, division subtracts them, ``pow(h, p)`` multiplies by :math:`p`; any
other function of the input is ``bad`` unless its argument is scale-invariant. An output
``hom(k, 0)``, :math:`k > 0`, proves :math:`f(b + \alpha z) = \alpha^k f(b + z)` for all
:math:`\alpha \ge 0`. Tracing runs no kernel and keeps ``torch.nn`` modules as leaves.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import inspect
import numbers
import operator
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, fx, nn

from .._core.state import model_of
from .._core.types import AVG_POOL, BATCH_NORM, CONSTANT_PAD, CONV, DROPOUT, LAYOUT, MAX_POOL
from .._core.types import PER_EXAMPLE_NORMS
from .report import CertificateFinding, DegreeCertificate
from .static import _activation_reason

__all__ = ["certify_homogeneity", "certify_layer"]

# ----------------------------------------------------------------- abstract values
ZERO = None  # an offset that is exactly zero


class _Offset:
    """An offset whose value is not computed: ``NZ`` (non-zero) or ``UNK`` (maybe zero)."""


NZ, UNK = _Offset(), _Offset()


class AV:
    """The abstract value of one graph node (see the module docstring)."""

    __slots__ = ("kind", "degree", "offset", "origin", "value", "findings", "bypass")

    def __init__(
        self, kind: str, degree: float = 0.0, offset: Any = ZERO,
        origin: Optional[CertificateFinding] = None, value: Any = None,
        findings: Tuple[CertificateFinding, ...] = (), bypass: Optional[CertificateFinding] = None,
    ) -> None:
        self.kind, self.degree, self.offset, self.origin = kind, float(degree), offset, origin
        self.value, self.findings, self.bypass = value, findings, bypass

    @property
    def scale_invariant(self) -> bool:
        return self.kind == "const" or (self.kind == "hom" and self.degree == 0.0)


def _hom(d: float, offset: Any = ZERO, origin: Optional[CertificateFinding] = None) -> AV:
    if d == 0.0:
        return AV("hom", 0.0)
    if isinstance(offset, Tensor) and _is_zero(offset):
        offset = ZERO
    return AV("hom", d, offset, origin if offset is not ZERO else None)


def _const(value: Any = None, bypass: Optional[CertificateFinding] = None) -> AV:
    return AV("const", value=value if bypass is None else None, bypass=bypass)


def _av(v: Any) -> AV:
    return v if isinstance(v, AV) else _const(v)


def _is_zero(t: Any) -> bool:
    if isinstance(t, Tensor):
        return t.device.type != "meta" and bool(torch.count_nonzero(t.detach()) == 0)
    return isinstance(t, numbers.Number) and t == 0


def _value_known(av: AV) -> bool:
    return av.kind == "const" and av.bypass is None and av.value is not None


def _static(v: Any) -> Any:
    return v.value if isinstance(v, AV) else v


def _arg(args: Sequence[Any], kwargs: Dict[str, Any], i: int, key: str, default: Any = None) -> Any:
    """The static value of argument ``i`` (or keyword ``key``) of a call."""
    return _static(args[i] if len(args) > i else kwargs.get(key, default))


def _static_index(idx: Any) -> Any:
    if isinstance(idx, tuple):
        return tuple(_static_index(i) for i in idx)
    if isinstance(idx, list):
        return [_static_index(i) for i in idx]
    return _static(idx)


def _leaves(obj: Any) -> List[AV]:
    if isinstance(obj, AV):
        return [obj]
    if isinstance(obj, _Repeat):
        return [obj.part]
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _leaves(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _leaves(o)]
    return []


def _failure(avs: Sequence[AV]) -> Optional[AV]:
    """The first ``bad`` (else ``unknown``) among ``avs``, with all their findings."""
    for kind in ("bad", "unknown"):
        found = [f for a in avs if a.kind == kind for f in a.findings]
        if found:
            return AV(kind, findings=tuple(dict.fromkeys(found)))
    return None


def _through(x: AV, fn: Callable[[Tensor], Any]) -> AV:
    """``x`` after a linear map ``fn``: its degree, the offset mapped when it is a tensor."""
    if x.offset is ZERO or isinstance(x.offset, _Offset):
        return _hom(x.degree, x.offset, x.origin)
    try:
        out = fn(x.offset)
    except Exception:
        return _hom(x.degree, NZ, x.origin)
    return _hom(x.degree, out if isinstance(out, Tensor) else NZ, x.origin)


def _concrete(a: Any) -> Any:
    """``a`` with every abstract value replaced by its known value (``ValueError`` if none)."""
    if isinstance(a, AV):
        if a.kind == "const" and a.value is not None:
            return a.value
        raise ValueError("not concrete")
    if isinstance(a, (list, tuple)):
        return type(a)(_concrete(x) for x in a)
    if isinstance(a, dict):
        return {k: _concrete(v) for k, v in a.items()}
    return a


def _apply(node: fx.Node, args: List[Any], kwargs: Dict[str, Any]) -> Any:
    """Run the op of ``node`` on concrete ``args``."""
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _extend(f: CertificateFinding, suffix: str) -> CertificateFinding:
    return CertificateFinding(f.node, f.op, f.module, f.reason + suffix)


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
    model: nn.Module, num_inputs: int, extra_args: Tuple[Any, ...],
    extra_leaves: Sequence[nn.Module] = (),
) -> Tuple[fx.GraphModule, Dict[str, Any]]:
    """The graph of ``model`` and the role of each placeholder (an input, or an extra tensor)."""
    sig = inspect.signature(model.forward)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in sig.parameters.values() if p.kind in kinds]
    has_var = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    if len(params) < num_inputs + len(extra_args) and not has_var:
        raise TypeError(
            f"forward takes {len(params)} positional argument(s), but {num_inputs} "
            f"input(s) and {len(extra_args)} additional argument(s) were given"
        )
    concrete: Dict[str, Any] = {}
    roles: Dict[str, Any] = {}
    for i, p in enumerate(params):
        j = i - num_inputs  # the index among the additional arguments
        if j < 0:
            roles[p.name] = ("input", i)
        elif j < len(extra_args) and isinstance(extra_args[j], Tensor):
            roles[p.name] = ("arg", extra_args[j])
        elif j < len(extra_args):
            concrete[p.name] = extra_args[j]
        elif p.default is not p.empty:
            concrete[p.name] = p.default
    tracer = _Tracer(extra_leaves)
    graph = tracer.trace(model, concrete_args=concrete or None)
    return fx.GraphModule(tracer.root, graph), roles


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
    "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub", "clip": "clamp",
    "negative": "neg", "absolute": "abs", "greater": "gt", "less": "lt", "greater_equal": "ge",
    "less_equal": "le", "not_equal": "ne", "linalg_norm": "norm", "linalg_vector_norm": "norm",
    "upsample": "interpolate", "upsample_nearest": "interpolate", "concatenate": "cat",
    "upsample_bilinear": "interpolate", "swapaxes": "transpose", "swapdims": "transpose",
    "concat": "cat", "max_pool1d_with_indices": "max_pool1d", "max_pool2d_with_indices":
    "max_pool2d", "max_pool3d_with_indices": "max_pool3d", "adaptive_max_pool1d_with_indices":
    "adaptive_max_pool1d", "adaptive_max_pool2d_with_indices": "adaptive_max_pool2d",
    **dict.fromkeys(("feature_alpha_dropout", "alpha_dropout", "dropout1d", "dropout2d",
                     "dropout3d"), "dropout"),
    **{f"conv{t}{n}d": "conv" for t in ("", "_transpose") for n in (1, 2, 3)},
}
#: layout and other linear maps of their first argument (other arguments are static)
_LINEAR = {
    "view", "reshape", "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "to",
    "contiguous", "expand", "expand_as", "repeat", "narrow", "select", "flip", "roll", "clone",
    "detach", "float", "double", "half", "bfloat16", "type", "type_as", "unflatten", "movedim",
    "moveaxis", "view_as", "reshape_as", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "native_channel_shuffle", "identity", "tile", "repeat_interleave", "diagonal", "cpu",
    "cuda", "chunk", "split", "tensor_split", "unbind", "sum", "mean", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "cumsum",
    "adaptive_avg_pool3d", "interpolate", "nansum", "trace", "triu", "tril", "requires_grad_",
    "neg", "fold", "unfold",
}
#: positively homogeneous but nonlinear: need a zero offset
_PIECEWISE = {
    "relu", "leaky_relu", "prelu", "abs", "max_pool1d", "max_pool2d", "max_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "amax", "amin",
    "norm", "lp_pool1d", "lp_pool2d", "sort", "topk", "cummax", "cummin", "logcumsumexp",
}
_SCALE_INVARIANT = {"sign", "argmax", "argmin", "signbit", "heaviside"}
_STATIC = {
    "size", "dim", "numel", "ndimension", "nelement", "_assert", "len", "is_floating_point",
    "get_device", "stride", "data_ptr",
}
_RANDOM = {
    "rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "normal",
    "bernoulli", "multinomial", "randperm", "rrelu",
}
_NONHOMOGENEOUS = {
    "sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "softplus", "softmax", "exp",
    "log_softmax", "softmin", "exp2", "log", "log2", "log10", "log1p", "expm1", "sin", "cos",
    "tan", "relu6", "hardtanh", "hardswish", "hardsigmoid", "mish", "layer_norm", "group_norm",
    "instance_norm", "local_response_norm", "rms_norm", "erf", "erfc", "logsigmoid", "softsign",
    "tanhshrink", "hardshrink", "softshrink", "normalize", "glu", "logsumexp", "sinh", "cosh",
    "atan", "asin", "acos", "round", "floor", "ceil", "trunc", "frac", "fmod", "remainder",
    "floordiv", "scaled_dot_product_attention", "logit", "xlogy", "cosine_similarity",
}
_PER_EXAMPLE = "normalisation divides by per-example statistics plus eps"
_NONHOMOGENEOUS_HINT = {
    "relu6": "ReLU6 clips at 6 (use relu)",
    "hardtanh": "hardtanh clips at its max (use relu)",
    "layer_norm": f"layer {_PER_EXAMPLE}",
    "group_norm": f"group {_PER_EXAMPLE}",
    "instance_norm": f"instance {_PER_EXAMPLE}",
    "normalize": "F.normalize divides by max(||x||, eps)",
}
#: the other functions with a rule: name -> method of :class:`_Interpreter`
_FUNCTION_RULES = {
    "dropout": "dropout", "batch_norm": "functional_batch_norm", "pad": "pad",
    "add": "add", "sub": "add", "rsub": "add", "div": "div", "where": "where",
    "masked_fill": "masked_fill", "getitem": "getitem",
    **dict.fromkeys(("gt", "lt", "ge", "le", "eq", "ne"), "compare"),
    **dict.fromkeys(("clamp", "clamp_min", "clamp_max", "threshold", "hardtanh"), "clamp"),
    **dict.fromkeys(("max", "min", "maximum", "minimum", "fmax", "fmin"), "maxmin"),
    **dict.fromkeys(("pow", "square", "sqrt", "rsqrt", "reciprocal"), "power"),
    **dict.fromkeys(("matmul", "mm", "bmm", "einsum", "linear", "conv", "bilinear", "outer",
                     "dot", "mv", "baddbmm", "addmm", "kron", "tensordot", "inner"), "multilinear"),
    **dict.fromkeys(("cat", "stack", "hstack", "vstack", "dstack"), "cat"),
}
_INPLACE_OPERATORS = (operator.iadd, operator.isub, operator.imul, operator.itruediv)


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        name = str(node.target)
    else:
        name = _OPERATORS.get(node.target) or getattr(node.target, "__name__", str(node.target))
    if name.endswith("_") and not name.startswith("_") and name != "requires_grad_":
        name = name[:-1]
    return _ALIASES.get(name, name)


# ------------------------------------------------------------------ interpreter
class _Interpreter:
    """Abstract values of graph nodes; ``layer_mode`` makes the layer's output/input hom(1)."""

    def __init__(
        self, gm: fx.GraphModule, roles: Dict[str, Any], input_values: Dict[int, AV],
        layer_target: Optional[str] = None, layer_mode: Optional[str] = None,
    ) -> None:
        self.gm, self.roles, self.input_values = gm, roles, input_values
        self.layer_target, self.layer_mode = layer_target, layer_mode
        self.env: Dict[fx.Node, Any] = {}
        self.layer_nodes: List[fx.Node] = []

    def finding(self, node: fx.Node, reason: str) -> CertificateFinding:
        return CertificateFinding(node.name, _describe(node, self.gm), _module_of(node), reason)

    def bad(self, node: fx.Node, reason: str) -> AV:
        return AV("bad", findings=(self.finding(node, reason),))

    def unknown(self, node: fx.Node, reason: str) -> AV:
        return AV("unknown", findings=(self.finding(node, reason),))

    def bad_with_offsets(self, node: fx.Node, reason: str, avs: Sequence[Any]) -> AV:
        """``bad`` at ``node``, listing first where a non-zero offset of its input came from."""
        origins = dict.fromkeys(
            a.origin for a in avs
            if isinstance(a, AV) and a.kind == "hom" and a.offset is not ZERO
            and a.origin is not None and a.origin.node is not None
        )
        return AV("bad", findings=tuple(origins) + (self.finding(node, reason),))

    def require_zero_offset(self, node: fx.Node, *avs: AV) -> Optional[AV]:
        """``bad`` (``unknown``) where a ``hom`` among ``avs`` has a non-zero (unknown) offset."""
        for av in avs:
            if av.kind != "hom" or av.offset is ZERO:
                continue
            o = av.origin
            if av.offset is UNK:
                return AV("unknown", findings=(_extend(
                    o or self.finding(node, "a constant of unknown value"),
                    f"; it reaches the nonlinearity at node {node.name}, so whether the "
                    "offset is zero cannot be decided",
                ),))
            if o is None:
                return self.bad(node, "a non-zero constant offset reaches this nonlinearity")
            return AV("bad", findings=(_extend(
                o if o.node is not None else self.finding(node, o.reason),
                f"; it reaches the nonlinearity {_describe(node, self.gm)} (node {node.name}), "
                "where a constant offset breaks homogeneity",
            ),))
        return None

    def run(self) -> Any:
        for node in self.gm.graph.nodes:
            if node.op == "output":
                return self._map(node.args[0])
            try:
                self.env[node] = self.visit(node)
            except Exception as exc:  # a rule's own arithmetic failed: no proof
                self.env[node] = self.unknown(node, f"the rule raised {type(exc).__name__}: {exc}")

    def _map(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            items = [self._map(a) for a in arg]
            return type(arg)(items) if isinstance(arg, list) else tuple(items)
        if isinstance(arg, dict):
            return {k: self._map(v) for k, v in arg.items()}
        if isinstance(arg, slice):
            return slice(*(_static(self._map(v)) for v in (arg.start, arg.stop, arg.step)))
        return _av(arg)

    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            role = self.roles.get(node.target)
            if role is None:
                return _const(None)
            return self.input_values[role[1]] if role[0] == "input" else _const(role[1])
        if node.op == "get_attr":
            return _const(_fetch_attr(self.gm, str(node.target)))
        args, kwargs = self._map(node.args), self._map(node.kwargs)
        if node.op != "call_module":
            return self.function_rule(node, _op_name(node), list(args), kwargs)
        module = self.gm.get_submodule(str(node.target))
        if str(node.target) == self.layer_target:
            self.layer_nodes.append(node)
            if self.layer_mode == "output":
                return _hom(1.0)
            if self.layer_mode == "input":
                args = (_hom(1.0),) + tuple(args[1:])
            if not _is_torch_leaf(module):
                return self.submodule(node, module, list(args))
        return self.module_rule(node, module, list(args), kwargs)

    def submodule(self, node: fx.Node, module: nn.Module, args: List[Any]) -> Any:
        """Interpret a custom module kept as a leaf (the certified layer) on its own graph."""
        try:
            gm, roles = _trace(module, len(args), ())
        except Exception as exc:
            return self.unknown(
                node, f"the layer's own forward could not be traced ({type(exc).__name__})"
            )
        out = _Interpreter(gm, roles, {i: _av(a) for i, a in enumerate(args)}).run()
        if isinstance(out, AV) and out.kind in ("bad", "unknown"):
            prefix = str(node.target)
            return AV(out.kind, findings=tuple(
                dataclasses.replace(f, module=f"{prefix}.{f.module}" if f.module else prefix)
                for f in out.findings
            ))
        return out

    def const_result(self, node: fx.Node, avs: Sequence[AV], compute: Callable[[], Any]) -> AV:
        bypass = next((a.bypass for a in avs if a.bypass is not None), None)
        if bypass is not None or node.target in _INPLACE_OPERATORS:
            return _const(None, bypass=bypass)
        try:
            return _const(compute())
        except Exception:
            return _const(None)

    def module_rule(
        self, node: fx.Node, m: nn.Module, args: List[Any], kwargs: Dict[str, Any]
    ) -> Any:
        avs = _leaves(args) + _leaves(kwargs)
        if (failed := _failure(avs)) is not None:
            return failed
        tensors = [a for a in avs if a.kind == "hom"]
        x = args[0] if args else None
        kind = type(m).__name__
        if not tensors:  # nothing here depends on the inputs
            return self.const_result(node, avs, lambda: None)
        if isinstance(m, DROPOUT):
            if m.training and getattr(m, "p", 0) > 0:
                return self.bad(node, f"{kind} in training mode is random; call model.eval()")
            return x
        if isinstance(m, BATCH_NORM):
            if m.training or not m.track_running_stats or m.running_mean is None:
                return self.bad(
                    node, f"{kind} in training mode normalises with batch statistics (plus eps), "
                    "which is not homogeneous; call model.eval()",
                )
            return self.affine(
                node, x, *_bn_affine(m), "eval-mode BatchNorm with a non-zero shift (bias - "
                "running_mean * weight / sqrt(running_var + eps)); fold it with "
                "captum_xgrad.make_x_dnn",
            )
        if _is_normalize(m):
            mean = torch.as_tensor(m.mean, dtype=torch.float64)
            std = torch.as_tensor(m.std, dtype=torch.float64)
            return self.affine(
                node, x, 1.0 / std, -mean / std, "Normalize subtracts a non-zero mean, so the "
                "model is homogeneous about its centre, not about 0",
            )
        if all(a.scale_invariant for a in tensors):
            return _hom(0.0)
        if isinstance(m, (nn.Linear,) + CONV):
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, "a weight depends on the inputs")
            bias = getattr(m, "bias", None)
            if x.offset is not ZERO:
                return _through(x, lambda c: m.forward(c.to(m.weight.dtype)))
            if bias is None or _is_zero(bias):
                return _hom(x.degree)
            b = bias.detach().clone()
            if isinstance(m, CONV):
                b = b.reshape(1, -1, *([1] * (len(m.kernel_size))))
            reason = "has a bias (y = W x + b) that is not zero; remove it with "
            return _hom(x.degree, b, self.finding(node, reason + "captum_xgrad.make_x_dnn"))
        if isinstance(m, nn.Bilinear):
            a, b = args[0], args[1]
            if (bad := self.require_zero_offset(node, a, b)) is not None:
                return bad
            d = sum(v.degree for v in (a, b) if v.kind == "hom")
            if m.bias is not None and not _is_zero(m.bias):
                reason = "Bilinear has a bias that is not zero"
                return _hom(d, m.bias.detach(), self.finding(node, reason))
            return _hom(d)
        if isinstance(m, PER_EXAMPLE_NORMS):
            reason = "divides by per-example statistics (plus eps), which is not homogeneous"
            return self.bad(node, f"{kind} {reason}")
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU) + MAX_POOL) or (
            isinstance(m, nn.Threshold) and m.threshold == 0 and m.value == 0
        ):
            return self.require_zero_offset(node, x) or _hom(x.degree)
        if isinstance(m, AVG_POOL + LAYOUT) or getattr(m, "xgrad_rule", None) == "linear":
            return _through(x, m.forward)
        if isinstance(m, CONSTANT_PAD):
            if m.value != 0:
                return self.bad(node, f"{kind} pads with the non-zero constant {m.value}")
            return _through(x, m.forward)
        why = _activation_reason(m)
        if why is not None:
            return self.bad_with_offsets(node, why, args)
        return self.unknown(node, f"no rule for the module type {kind}")

    def affine(self, node: fx.Node, x: AV, scale: Any, shift: Any, reason: str) -> AV:
        """``y = x * scale + shift`` per channel (dimension 1)."""
        if x.kind != "hom":
            return x  # pragma: no cover
        finding = CertificateFinding(node.name, _describe(node, self.gm), str(node.target), reason)
        if x.offset is ZERO:
            return _hom(x.degree, ZERO if _is_zero(shift) else _per_channel(shift), finding)
        if not isinstance(x.offset, Tensor):
            return _hom(x.degree, x.offset, x.origin)
        nd = x.offset.dim()
        a = x.offset.double() * _per_channel(scale, nd).double()
        b = _per_channel(shift, nd).double()
        return _hom(x.degree, _cancel(a + b, a, b).to(x.offset.dtype), x.origin or finding)

    def function_rule(
        self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]
    ) -> Any:
        if name == "getitem" and args and not isinstance(args[0], AV):
            return args[0][_static(args[1])]
        if name == "getattr":
            return self.getattr_rule(node, args[0], _static(args[1]))
        avs = _leaves(args) + _leaves(kwargs)
        if name in _STATIC:
            return _const(None)
        if (failed := _failure(avs)) is not None:
            return failed
        homs = [a for a in avs if a.kind == "hom"]
        call = self._caller(node, args, kwargs)
        if not homs:
            inplace = node.op == "call_method" and str(node.target).endswith("_")
            if name in _RANDOM or inplace or kwargs.get("inplace") is not None and _static(
                kwargs.get("inplace")
            ):
                return _const(None)
            return self.const_result(node, avs, call)
        if name in _RANDOM:
            return self.unknown(node, f"{name} is random")
        if name in _SCALE_INVARIANT:
            x = args[0]
            return (self.require_zero_offset(node, x) if isinstance(x, AV) else None) or _hom(0.0)
        if name in _NONHOMOGENEOUS:
            if all(a.scale_invariant for a in avs):
                return _hom(0.0)
            hint = _NONHOMOGENEOUS_HINT.get(name, f"{name} is not homogeneous")
            return self.bad_with_offsets(
                node, f"{hint}; use a ReLU-family function or remove it", args
            )
        if name in _PIECEWISE:
            x = args[0]
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, f"{name} of a value that is not a tensor")
            if any(other is not x and not other.scale_invariant for other in homs[1:]):
                return self.unknown(node, f"{name} with an input-dependent parameter")
            bad = self.require_zero_offset(node, x)
            if bad is not None or name == "logcumsumexp":
                return bad or self.bad(node, "logcumsumexp is not homogeneous")
            if name in ("sort", "topk", "cummax", "cummin"):
                return (_hom(x.degree), _hom(0.0))
            return _hom(x.degree)
        if name in _LINEAR:
            x = args[0]
            if not isinstance(x, AV) or x.kind != "hom":
                return self.unknown(node, f"{name} whose tensor argument is not the first")
            if name not in ("expand_as", "type_as", "view_as", "reshape_as") and any(
                other is not x for other in homs
            ):
                return self.unknown(node, f"{name} with an input-dependent argument")
            return self.linear(node, x, call)
        if name == "mul":
            return self.mul(node, args[0], args[1])
        rule = _FUNCTION_RULES.get(name)
        if rule is not None:
            return getattr(self, rule)(node, name, args, kwargs)
        return self.unknown(
            node, f"no rule for {node.op} {name}; the model may still be homogeneous, "
            "but this cannot be proved (the guard falls back to the empirical check)"
        )

    def getattr_rule(self, node: fx.Node, obj: Any, attr: Any) -> Any:
        kind = obj.kind if isinstance(obj, AV) else None
        if kind == "hom" and attr in ("T", "mT", "data"):
            return self.linear(node, obj, lambda c: getattr(c, attr))
        if kind == "const" and obj.value is not None:
            try:
                return _const(getattr(obj.value, attr))
            except Exception:
                return _const(None)
        if kind in ("bad", "unknown") and attr not in ("shape", "dtype", "device", "ndim"):
            return obj
        return _const(None)

    @staticmethod
    def _caller(node: fx.Node, args: List[Any], kwargs: Dict[str, Any]) -> Callable[..., Any]:
        """The node's op on concrete values, with ``first`` (when given) as first argument."""

        def run(first: Any = None) -> Any:
            values = [
                first if i == 0 and first is not None else _concrete(a) for i, a in enumerate(args)
            ]
            return _apply(node, values, {k: _concrete(v) for k, v in kwargs.items()})

        return run

    def linear(self, node: fx.Node, x: AV, fn: Callable[[Tensor], Any]) -> Any:
        if x.kind != "hom":
            return x  # pragma: no cover
        if _op_name(node) not in ("chunk", "split", "tensor_split", "unbind"):
            return _through(x, fn)
        if x.offset is not ZERO and not isinstance(x.offset, _Offset):
            try:
                return tuple(_hom(x.degree, p, x.origin) for p in fn(x.offset))
            except Exception:
                pass
        return _Repeat(_hom(x.degree, x.offset if x.offset is ZERO else NZ, x.origin))

    def dropout(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        training = _static(kwargs.get("training", args[2] if len(args) > 2 else True))
        p = _static(kwargs.get("p", args[1] if len(args) > 1 else 0.5))
        if training and p:
            return self.bad(node, "dropout in training mode is random; call model.eval()")
        return args[0]

    def pad(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        value = _static(kwargs.get("value", args[3] if len(args) > 3 else None))
        if value not in (None, 0, 0.0):
            return self.bad(node, f"pads with the non-zero constant {value}")
        return self.linear(node, args[0], self._caller(node, args, kwargs))

    def getitem(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        x, idx = args[0], args[1]
        if any(i.kind == "hom" and not i.scale_invariant for i in _leaves(idx)):
            return self.unknown(node, "indexing with input-dependent indices")
        index = _static_index(idx)
        return self.linear(node, x, lambda c: c[index])

    def add(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        a, b = _av(args[0]), _av(args[1] if len(args) > 1 else kwargs.get("other"))
        alpha = _static(kwargs.get("alpha", args[2] if len(args) > 2 else 1))
        if name == "rsub":
            a, b = b, a
        sign = -1.0 if name in ("sub", "rsub") else 1.0
        coef = sign * (alpha if isinstance(alpha, numbers.Number) else 1.0)
        flip = a.kind == "const"
        if flip:
            a, b = b, a
        d, ca, cb = a.degree, a.offset, b.offset
        if b.kind == "hom":  # both depend on the inputs
            if d != b.degree:
                return self.bad(
                    node, f"adds values of different degrees ({d:g} and {b.degree:g}), which is "
                    "not homogeneous",
                )
            if d == 0.0 or (ca is ZERO and cb is ZERO):
                return _hom(d)
            if ca is UNK or cb is UNK:
                return _hom(d, UNK, a.origin or b.origin)
            if not all(isinstance(c, Tensor) or c is ZERO for c in (ca, cb)):
                return _hom(d, NZ, a.origin or b.origin)
            zero = torch.zeros((), dtype=torch.float64)
            ta = ca.double() if isinstance(ca, Tensor) else zero
            tb = coef * (cb.double() if isinstance(cb, Tensor) else zero)
            try:
                total = _cancel(ta + tb, ta, tb)
            except Exception:
                total = NZ
            return _hom(d, total, a.origin or b.origin)
        if d == 0.0:
            return _hom(0.0)
        if b.bypass is not None:
            return _hom(d, NZ, a.origin or self.finding(
                node, f"adds {b.bypass.reason}, which does not pass through the layer (a skip "
                "connection or another input bypasses it)",
            ))
        if b.value is None:
            if ca is not ZERO and ca is not UNK:
                return _hom(d, UNK, a.origin)
            return _hom(d, UNK, a.origin or self.finding(node, "adds a constant of unknown value"))
        if _is_zero(b.value):
            return _hom(d, ca, a.origin)
        c_t = torch.as_tensor(b.value, dtype=torch.float64)
        neg_a = flip and sign < 0  # const - hom: the hom part changes sign, offset c - ca
        scaled_c = c_t if neg_a else coef * c_t
        origin = self.finding(node, f"adds a non-zero constant ({_short(b.value)})")
        if ca is ZERO:
            return _hom(d, scaled_c, origin)
        if not isinstance(ca, Tensor):
            return _hom(d, ca, a.origin)
        base = -ca.double() if neg_a else ca.double()
        return _hom(d, _cancel(base + scaled_c, base, scaled_c), a.origin or origin)

    def mul(self, node: fx.Node, a: Any, b: Any) -> AV:
        a, b = _av(a), _av(b)
        if a.kind == "const":
            a, b = b, a
        if b.kind == "hom":
            return self.require_zero_offset(node, a, b) or _hom(a.degree + b.degree)
        return _through(a, lambda c: c * torch.as_tensor(b.value).to(c.dtype))  # hom * const

    def div(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        if _static(kwargs.get("rounding_mode")) is not None:
            return self.bad(node, "division with rounding is not homogeneous")
        a, b = _av(args[0]), _av(args[1])
        if a.kind == "hom" and b.kind == "hom":
            return self.require_zero_offset(node, a, b) or _hom(a.degree - b.degree)
        if b.kind == "hom":  # constant / tensor
            return self.require_zero_offset(node, b) or _hom(-b.degree)
        if _value_known(b) and bool((torch.as_tensor(b.value) == 0).any()):
            return self.unknown(node, "divides by a constant that contains zeros")
        return _through(a, lambda c: c / torch.as_tensor(b.value).to(c.dtype))

    def power(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        p = {"square": 2.0, "sqrt": 0.5, "rsqrt": -0.5, "reciprocal": -1.0}.get(name)
        base = args[0]
        if p is None:
            exp = args[1] if len(args) > 1 else kwargs.get("exponent")
            if isinstance(exp, AV) and exp.kind == "hom":
                return self.bad(node, "an input-dependent exponent is not homogeneous")
            p = _static(exp)
            if isinstance(p, Tensor) and p.numel() == 1:
                p = float(p)
            if not isinstance(p, numbers.Real):
                return self.unknown(node, "pow with an exponent of unknown value")
        if not isinstance(base, AV) or base.kind != "hom":
            return self.bad(
                node, "a constant raised to an input-dependent power is not homogeneous"
            )
        if float(p) == 1.0:
            return base
        return self.require_zero_offset(node, base) or _hom(base.degree * float(p))

    def multilinear(
        self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]
    ) -> AV:
        operands = [a for a in _leaves(args) + _leaves(kwargs) if a.kind == "hom"]
        bias = None
        if name in ("linear", "conv"):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if len(operands) != 1:  # input-dependent weights
            if (bad := self.require_zero_offset(node, *operands)) is not None:
                return bad
            if isinstance(bias, AV) and not _is_zero(bias.value):
                return self.unknown(node, f"{name} with input-dependent weights and a bias")
            return _hom(sum(v.degree for v in operands))
        x = operands[0]
        if name in ("linear", "conv") and x is not args[0]:
            return self.unknown(node, f"{name} whose weight depends on the inputs")
        if x.offset is ZERO:
            b = _static(bias)
            if b is None or _is_zero(b):
                return _hom(x.degree)
            bt = b.detach().clone()
            w = _static(args[1]) if name == "conv" else None
            if isinstance(w, Tensor):
                bt = bt.reshape(1, -1, *([1] * (w.dim() - 2)))
            reason = f"{name} has a bias (y = W x + b) that is not zero"
            return _hom(x.degree, bt, self.finding(node, reason))
        if name == "einsum":
            return _hom(x.degree, NZ if x.offset is not UNK else UNK, x.origin)
        pos = next(i for i, a in enumerate(args) if a is x)

        def fn(c: Tensor) -> Any:
            values = [c if i == pos else _static(a) for i, a in enumerate(args)]
            return _apply(node, values, {k: _static(v) for k, v in kwargs.items()})

        return _through(x, fn)

    def cat(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        parts = [_av(p) for p in ((args[0] if args else kwargs.get("tensors")) or [])]
        homs = [p for p in parts if p.kind == "hom"]
        degrees = {p.degree for p in homs}
        if len(degrees) > 1:
            listed = ", ".join(f"{d:g}" for d in sorted(degrees))
            return self.bad(node, f"{name} of values of different degrees ({listed})")
        d = degrees.pop()
        if d == 0.0:
            return _hom(0.0)
        consts = [p for p in parts if p.kind == "const"]
        for p in consts:
            if p.bypass is not None:
                reason = f"concatenates {p.bypass.reason}, which bypasses the layer"
                return _hom(d, NZ, self.finding(node, reason))
            if p.value is None:
                return _hom(d, UNK, self.finding(node, f"{name} with a constant of unknown value"))
            if not _is_zero(p.value):
                return _hom(d, NZ, self.finding(node, f"{name} with a non-zero constant"))
        if all(p.offset is ZERO for p in homs):
            return _hom(d)
        origin = next(p.origin for p in homs if p.offset is not ZERO)
        if any(p.offset is UNK for p in homs):
            return _hom(d, UNK, origin)
        if all(isinstance(p.offset, Tensor) for p in homs) and not consts:
            dim = _arg(args, kwargs, 1, "dim", 0)
            try:
                return _hom(d, getattr(torch, name)([p.offset for p in homs], dim), origin)
            except Exception:
                pass
        return _hom(d, NZ, origin)

    def where(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        if len(args) < 3:
            return self.unknown(node, "torch.where with one argument")
        cond, *branches = (_av(v) for v in args[:3])
        if not cond.scale_invariant:
            return self.bad(
                node, "torch.where with a condition that is not scale-invariant (it depends on "
                "the input's magnitude)",
            )
        homs = [v for v in branches if v.kind == "hom"]
        if not homs:
            return self.const_result(node, branches, lambda: None)
        if any(v.kind == "const" and not (_value_known(v) and _is_zero(v.value)) for v in branches):
            reason = "torch.where selects a non-zero constant, which is not homogeneous"
            return self.bad(node, reason)
        if len({v.degree for v in homs}) > 1:
            return self.bad(node, "torch.where between values of different degrees")
        return self.require_zero_offset(node, *homs) or _hom(homs[0].degree)

    def masked_fill(
        self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]
    ) -> AV:
        x, mask = args[0], args[1]
        if isinstance(mask, AV) and not mask.scale_invariant:
            return self.bad(node, "masked_fill with a mask that is not scale-invariant")
        if not _is_zero(_arg(args, kwargs, 2, "value")):
            return self.bad(node, "masked_fill with a non-zero value")
        return self.require_zero_offset(node, x) or _hom(x.degree)

    def compare(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        a, b = [_av(v) for v in args[:2]]
        homs = [v for v in (a, b) if v.kind == "hom"]
        if (bad := self.require_zero_offset(node, *homs)) is not None:
            return bad
        if len(homs) == 2:
            if a.degree == b.degree:
                return _hom(0.0)
            return self.bad(node, f"compares values of different degrees ({name})")
        other = b if a.kind == "hom" else a
        if homs[0].degree == 0.0 or (_value_known(other) and _is_zero(other.value)):
            return _hom(0.0)
        return self.bad(
            node, f"compares with a non-zero threshold ({name}), which is not scale-invariant"
        )

    def clamp(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> AV:
        x = args[0]
        if name == "hardtanh":
            return self.bad(node, "hardtanh clips at its max (use relu)")
        if name == "threshold":
            t, v = _static(args[1]), _static(args[2])
            lo, hi = (0, None) if t == 0 and v == 0 else (t, v)
        elif name == "clamp_max":
            lo, hi = None, _arg(args, kwargs, 1, "max")
        else:
            lo = _arg(args, kwargs, 1, "min")
            hi = _arg(args, kwargs, 2, "max") if name == "clamp" else None
        if hi is not None:
            return self.bad(
                node, f"{name} with a max ({_short(hi)}) is not homogeneous (only "
                "clamp(min=0) is: a ReLU)",
            )
        if lo is None:
            return x
        if not _is_zero(lo):
            reason = f"{name} with min={_short(lo)} is not homogeneous (only min=0 is)"
            return self.bad(node, reason)
        return self.require_zero_offset(node, x) or _hom(x.degree)

    def maxmin(self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        x = args[0]
        other = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("dim"))
        if isinstance(other, AV) and other.kind == "hom":
            if (bad := self.require_zero_offset(node, x, other)) is not None:
                return bad
            if not isinstance(x, AV) or x.kind != "hom" or x.degree != other.degree:
                return self.bad(node, f"{name} of values of different degrees")
            return _hom(x.degree)
        if not isinstance(x, AV) or x.kind != "hom":
            return self.unknown(node, f"{name} with an input-dependent second argument")
        if (bad := self.require_zero_offset(node, x)) is not None:
            return bad
        o = _static(other)
        if other is None:
            return _hom(x.degree)  # a reduction
        if isinstance(o, int) and not isinstance(o, bool) and name in ("max", "min"):
            return (_hom(x.degree), _hom(0.0))  # (values, indices) along a dim
        if _is_zero(o):
            return _hom(x.degree)  # max(x, 0) is a ReLU
        return self.bad(node, f"{name} with a non-zero constant is not homogeneous")

    def functional_batch_norm(
        self, node: fx.Node, name: str, args: List[Any], kwargs: Dict[str, Any]
    ) -> AV:
        names = (
            "input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"
        )
        vals = {**dict(zip(names, args)), **kwargs}
        x = vals["input"]
        if _static(vals.get("training", False)):
            reason = "batch_norm in training mode normalises with batch statistics; call "
            return self.bad(node, reason + "model.eval()")
        rm, rv, w, b = (_static(vals.get(k)) for k in names[1:5])
        eps = _static(vals.get("eps", 1e-5))
        if rm is None or rv is None:
            return self.unknown(node, "batch_norm with statistics of unknown value")
        scale = (w if w is not None else 1.0) / torch.sqrt(rv + eps)
        shift = (b if b is not None else 0.0) - rm * scale
        return self.affine(node, x, scale, shift, "batch_norm with a non-zero shift")


class _Repeat:
    """The parts of a split whose number is not known: every part is the same value."""

    def __init__(self, part: AV) -> None:
        self.part = part

    def __getitem__(self, index: Any) -> Union[AV, "_Repeat"]:
        return self if isinstance(index, slice) else self.part

    def __iter__(self) -> Iterator[AV]:
        # without this, iteration would go through __getitem__ forever (torch.cat(h.chunk(2)));
        # one part stands for all of them, since every part has the same degree and offset
        yield self.part


def _cancel(total: Tensor, a: Any, b: Any) -> Tensor:
    """``total`` with the entries that cancel to within float rounding set to 0."""
    total = torch.as_tensor(total)
    tiny = total.abs() <= 1e-6 * (torch.as_tensor(a).abs() + torch.as_tensor(b).abs())
    return torch.where(tiny, torch.zeros_like(total), total)


def _per_channel(t: Any, ndim: Optional[int] = None) -> Tensor:
    """``t`` shaped to broadcast along dimension 1 of an ``ndim``-dimensional tensor."""
    t = torch.as_tensor(t)
    return t if t.dim() == 0 else t.reshape(1, -1, *([1] * ((ndim or 2) - 2)))


def _short(v: Any) -> str:
    if not isinstance(v, Tensor):
        return repr(v)
    if v.numel() == 1:
        return f"{float(v):.4g}"
    return f"tensor of shape {tuple(v.shape)}, max |.| {float(v.abs().max()):.3g}"


def _fetch_attr(gm: nn.Module, target: str) -> Any:
    obj = functools.reduce(getattr, target.split("."), gm)
    return obj.detach() if isinstance(obj, Tensor) else obj


def _bn_affine(m: nn.Module) -> Tuple[Tensor, Tensor]:
    rm = m.running_mean.detach().double()
    rv = m.running_var.detach().double()
    w = m.weight.detach().double() if m.affine and m.weight is not None else torch.ones_like(rm)
    b = m.bias.detach().double() if m.affine and m.bias is not None else torch.zeros_like(rm)
    scale = w / torch.sqrt(rv + m.eps)
    # exactly zero where the shift is exactly zero in the model's own terms
    return scale, torch.where((b == 0) & (rm == 0), torch.zeros_like(rm), b - rm * scale)


def _module_of(node: fx.Node) -> Optional[str]:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    return (list(stack)[-1].split("@")[0] or None) if stack else None


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
def _format(inputs: Any, extra: Any) -> Tuple[Tuple[Tensor, ...], Tuple[Any, ...]]:
    """The inputs and the additional forward arguments as tuples."""
    t = inputs if isinstance(inputs, tuple) else (inputs,)
    for i, x in enumerate(t):
        if not isinstance(x, Tensor):
            raise TypeError(
                f"example input #{i} is a {type(x).__name__}; certify_homogeneity takes a "
                "tensor or a tuple of tensors (they serve tracing only)."
            )
    return t, () if extra is None else extra if isinstance(extra, tuple) else (extra,)


def _baseline_offsets(inputs: Tuple[Tensor, ...], baselines: Any) -> Tuple[List[Any], str]:
    if baselines is None:
        return [ZERO] * len(inputs), "0"
    bs = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(bs) != len(inputs):
        raise ValueError(f"got {len(bs)} baselines for {len(inputs)} inputs; pass one per input.")
    offsets: List[Any] = []
    shown = []
    for x, b in zip(inputs, bs):
        if b is None or (isinstance(b, (numbers.Number, Tensor)) and _is_zero(b)):
            offsets.append(ZERO)
            shown.append("0")
            continue
        t = torch.as_tensor(b, dtype=x.dtype, device=x.device).detach()
        if t.dim() == 0:
            t = t.expand(1, *x.shape[1:])
        elif t.dim() == x.dim() - 1:
            t = t.unsqueeze(0)
        offsets.append(t.expand(t.shape[0], *x.shape[1:]).clone())
        shown.append(_short(b) if isinstance(b, Tensor) else repr(b))
    return offsets, "(" + ", ".join(shown) + ")" if len(shown) > 1 else shown[0]


def _verdict(
    interp: _Interpreter, out: Any, what: str = "the inputs"
) -> Tuple[str, Optional[float], Tuple[CertificateFinding, ...]]:
    leaves = _leaves(out)
    if not leaves:
        return "unknown", None, (
            CertificateFinding(None, "output", None, "the model returns no tensor"),
        )
    if (failed := _failure(leaves)) is not None:
        return ("not_homogeneous" if failed.kind == "bad" else "unknown"), None, failed.findings
    output_node = next(n for n in interp.gm.graph.nodes if n.op == "output")
    producer = output_node.args[0] if isinstance(output_node.args[0], fx.Node) else output_node
    findings: List[CertificateFinding] = []
    status = "proved"
    degrees = set()
    for leaf in leaves:
        if leaf.kind == "const":
            if not (_value_known(leaf) and _is_zero(leaf.value)):
                reason = f"the output does not depend on {what} (degree 0)"
                findings.append(interp.finding(producer, reason))
                status = "not_homogeneous"
        elif leaf.offset is UNK:
            findings.append(_extend(
                leaf.origin or CertificateFinding(producer.name, "output", None, "a constant"),
                "; it reaches the output, so f(baseline) = 0 cannot be decided",
            ))
            status = "unknown" if status == "proved" else status
        elif leaf.offset is not ZERO:
            findings.append(_extend(
                leaf.origin or CertificateFinding(
                    producer.name, "output", _module_of(producer), "a constant offset"
                ), "; it reaches the output, so f(baseline) != 0",
            ))
            status = "not_homogeneous"
        else:
            degrees.add(leaf.degree)
    if status != "proved":
        return status, None, tuple(dict.fromkeys(findings))
    if len(degrees) > 1:
        listed = ", ".join(f"{d:g}" for d in sorted(degrees))
        reason = f"the outputs have different degrees ({listed})"
        return "not_homogeneous", None, (interp.finding(producer, reason),)
    d = degrees.pop() if degrees else 0.0
    if d <= 0:
        reason = (
            f"the output has degree {d:g} (it is scale-invariant or shrinks as the input grows); "
            "X-Gradient needs a positive degree"
        )
        return "not_homogeneous", None, (interp.finding(producer, reason),)
    return "proved", float(d), ()


def _centre(
    gm: fx.GraphModule, interp: _Interpreter, roles: Dict[str, Any], inputs: Tuple[Tensor, ...]
) -> Tuple[Any, Optional[str]]:
    """The point that a leading elementwise affine map sends to zero, per input."""
    centres: List[Optional[Tensor]] = [None] * len(inputs)
    exprs: List[str] = []
    for node in gm.graph.nodes:
        if node.op != "placeholder" or roles.get(node.target, ("",))[0] != "input":
            continue
        scale: Any = torch.ones((), dtype=torch.float64)
        shift: Any = torch.zeros((), dtype=torch.float64)
        expr, cur = str(node.target), node
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            if user.op == "call_module":
                m = gm.get_submodule(str(user.target))
                if not _is_normalize(m):
                    break
                mean = torch.as_tensor(m.mean, dtype=torch.float64).reshape(-1, 1, 1)
                std = torch.as_tensor(m.std, dtype=torch.float64).reshape(-1, 1, 1)
                scale, shift, cur = scale / std, (shift - mean) / std, user
                expr = f"Normalize(mean, std)({expr})"
                continue
            name = _op_name(user) if user.op in ("call_function", "call_method") else None
            if name not in ("add", "sub", "mul", "div") or len(user.args) != 2 or user.kwargs:
                break
            first = user.args[0] is cur
            other = user.args[1] if first else user.args[0]
            if other is cur:
                break
            o = interp.env.get(other) if isinstance(other, fx.Node) else _const(other)
            if o is None or not _value_known(o):
                break
            v = torch.as_tensor(o.value, dtype=torch.float64)
            attr = isinstance(other, fx.Node) and other.op == "get_attr"
            label = str(other.target) if attr else _short(o.value)
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
        i = roles[node.target][1]
        try:
            centre = torch.broadcast_to(c, (1, *inputs[i].shape[1:]))
            centres[i] = centre.to(inputs[i].dtype).clone()
        except RuntimeError:
            continue
        exprs.append(expr)
    if all(c is None for c in centres):
        return None, None
    return (centres[0] if len(centres) == 1 else tuple(centres)), "; ".join(exprs)


def _unknown(
    name: str, method: str, findings: Sequence[CertificateFinding], **fields: Any
) -> DegreeCertificate:
    return DegreeCertificate(name, "unknown", None, tuple(findings), method, **fields)


def _trace_or_finding(
    root: nn.Module, n: int, extra: Tuple[Any, ...], leaves: Sequence[nn.Module] = ()
) -> Any:
    try:
        return _trace(root, n, extra, leaves)
    except Exception as exc:  # fx raises many types for untraceable code
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"torch.fx could not trace the model ({type(exc).__name__}: {msg[:200]})"
        return CertificateFinding(None, "trace", None, reason)


def certify_homogeneity(
    model: Callable[..., Any],
    example_inputs: Union[Tensor, Tuple[Tensor, ...]],
    *,
    additional_forward_args: Any = None,
    baselines: Any = None,
) -> DegreeCertificate:
    r"""Prove (or refute) that ``model`` is nonnegatively homogeneous, from its traced graph.

    A degree is propagated through every node of the :mod:`torch.fx` graph (rules in
    :mod:`captum_xgrad.homogeneity.certificate`), all inputs scaled together, additional forward
    arguments held constant. With ``baselines`` :math:`b` it proves that :math:`f(b + z)` is
    homogeneous, so that X-Gradient equals Integrated Gradients with that baseline:

    .. math::

        \mathrm{IG}(x; b) = (x - b) \odot \int_0^1 \nabla f(b + \alpha (x - b))\,d\alpha
                          = \frac{1}{k}\,(x - b) \odot \nabla f(x).

    The verdict is about the model in its current train/eval mode, not the values of
    ``example_inputs``; nothing on the model changes and no forward pass runs.

    Parameters
    ----------
    model : nn.Module or callable
        The model or its bound ``forward``; other callables get ``"unknown"``.
    example_inputs : Tensor or tuple of Tensor
        Inputs as they would be passed to ``model``; used for tracing only.
    additional_forward_args : Any, optional
        Extra arguments after the inputs, as in Captum; treated as constants.
    baselines : scalar, Tensor or tuple, optional
        The baseline per input (a scalar, one example's shape, or per example); ``None``: 0.

    Returns
    -------
    DegreeCertificate
        ``"proved"`` with the ``degree``, ``"not_homogeneous"`` with findings naming node and
        module, or ``"unknown"``.

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
    >>> pair = (torch.randn(2, 3), torch.randn(2, 3))
    >>> certify_homogeneity(nn.Bilinear(3, 3, 1, bias=False), pair).degree
    2.0
    """
    inputs, extra = _format(example_inputs, additional_forward_args)
    offsets, shown = _baseline_offsets(inputs, baselines)
    root = model_of(model)
    if root is None:
        name = getattr(model, "__qualname__", type(model).__name__)
        finding = CertificateFinding(
            None, "trace", None, "only an nn.Module (or its bound forward) can be traced; a "
            "lambda or partial around a model cannot",
        )
        return _unknown(name, "not traced: not an nn.Module", [finding], baselines=shown)
    name = type(root).__name__
    traced = _trace_or_finding(root, len(inputs), extra)
    if isinstance(traced, CertificateFinding):
        return _unknown(name, f"not traced: {traced.reason}", [traced], baselines=shown)
    gm, roles = traced
    reason = (
        "the baseline of input #{} is not a point the model is homogeneous about (its offset is "
        "not cancelled before the first nonlinearity)"
    )
    values = {  # _hom drops the origin of a zero offset
        i: _hom(1.0, off, CertificateFinding(None, "placeholder", None, reason.format(i)))
        for i, off in enumerate(offsets)
    }
    interp = _Interpreter(gm, roles, values)
    status, degree, findings = _verdict(interp, interp.run())
    centre, expr = _centre(gm, interp, roles, inputs)
    return DegreeCertificate(
        name, status, degree, findings, "torch.fx.symbolic_trace", centre=centre,
        centre_expression=expr, baselines=shown,
    )


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

    With :math:`f(x) = g(h(x), x)`, :math:`h` the layer's activation and the second argument
    what bypasses the layer, :math:`\mathrm{LayerIG} = \frac{1}{k}\, h \odot \nabla_h g` holds
    when :math:`a \mapsto g(a, x)` is homogeneous of degree :math:`k` with the bypass held fixed
    (a product with another branch is fine, a sum is not) and :math:`h(0) = 0`. Both are
    checked on the graph traced with ``layer`` kept as a leaf.

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
        If the layer is not exact, set ``suggestion`` to the nearest enclosing one that is.

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
    inputs, extra = _format(example_inputs, additional_forward_args)
    root = model_of(model)
    if root is None:
        finding = CertificateFinding(None, "trace", None, "only an nn.Module can be traced")
        return _unknown(type(model).__name__, "not traced", [finding])
    name = type(root).__name__
    qual = next((q for q, m in root.named_modules() if m is layer), None)
    if qual is None:
        reason = "the layer is not a submodule of the model"
        finding = CertificateFinding(None, "layer", None, reason)
        return _unknown(name, "not traced", [finding], layer=type(layer).__name__)
    cert = _certify_layer_once(root, name, qual, layer, inputs, extra, attribute_to_layer_input)
    if cert.proved or not suggest:
        return cert
    parts = qual.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:cut])
        enclosing = root.get_submodule(parent)
        if _certify_layer_once(root, name, parent, enclosing, inputs, extra, False).proved:
            return dataclasses.replace(cert, suggestion=parent)
    return cert


def _certify_layer_once(
    root: nn.Module, name: str, qual: str, layer: nn.Module,
    inputs: Tuple[Tensor, ...], extra: Tuple[Any, ...], to_input: bool,
) -> DegreeCertificate:
    traced = _trace_or_finding(root, len(inputs), extra, leaves=(layer,) if qual else ())
    if isinstance(traced, CertificateFinding):
        return _unknown(name, f"not traced: {traced.reason}", [traced], layer=qual)
    gm, roles = traced
    method = "torch.fx.symbolic_trace (layer kept as a leaf)"
    # 1. the part before the layer maps 0 to 0
    upstream = _Interpreter(gm, roles, {i: _hom(1.0) for i in range(len(inputs))}, qual)
    upstream.run()
    calls = len(upstream.layer_nodes)
    if calls != 1:
        how = "is not called" if not calls else f"is called {calls} times"
        finding = CertificateFinding(None, "layer", qual, f"the layer {how} in the traced forward")
        return _unknown(name, method, [finding], layer=qual)
    lnode = upstream.layer_nodes[0]
    has_input = bool(lnode.args) and isinstance(lnode.args[0], fx.Node)
    at = upstream.env[lnode]
    if to_input:
        at = upstream.env[lnode.args[0]] if has_input else _const(None)
    if isinstance(at, AV) and at.kind in ("bad", "unknown"):
        suffix = " (before the layer, so h(0) = 0, where LayerIG's path starts, cannot be proved)"
        return _unknown(name, method, [_extend(f, suffix) for f in at.findings], layer=qual)
    if isinstance(at, AV) and at.kind == "hom" and at.offset is not ZERO:
        finding = _extend(
            at.origin or CertificateFinding(lnode.name, "layer", qual, "a constant"),
            "; before the layer, so its activation at the zero input is not zero and LayerIG's "
            "path does not start at 0",
        )
        status = "not_homogeneous" if at.offset is not UNK else "unknown"
        return DegreeCertificate(name, status, None, (finding,), method, layer=qual)
    # 2. the part after the layer, with everything that bypasses it held fixed
    bypass = {
        i: _const(None, bypass=CertificateFinding(
            None, "placeholder", None, f"input #{i}" if len(inputs) > 1 else "the input"
        ))
        for i in range(len(inputs))
    }
    downstream = _Interpreter(gm, roles, bypass, qual, "input" if to_input else "output")
    status, degree, findings = _verdict(downstream, downstream.run(), "the layer's activation")
    return DegreeCertificate(name, status, degree, findings, method, layer=qual)
