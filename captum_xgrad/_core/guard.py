"""The one homogeneity guard of the attribution entry points (certificate, else module scan and
empirical check; verdicts cached per model state, inputs and baselines), and :func:`warn`."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import sys
import warnings
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence, Tuple

import captum
import torch
from torch import Tensor, nn

from ..homogeneity.static import static_findings
from .state import model_of
from ..errors import NonHomogeneousError, NonHomogeneousWarning

__all__ = ["HomogeneityGuard", "warn"]

_SKIP_DIRS = tuple(
    os.path.dirname(os.path.abspath(module.__file__))
    for module in (sys.modules[__name__.split(".")[0]], captum, torch)
) + (os.path.abspath(contextlib.__file__),)


def warn(message: str, category: type = NonHomogeneousWarning) -> None:
    """Warn with the stack level of the first caller outside captum-xgrad, Captum and torch."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_SKIP_DIRS):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)


def _state_key(model: Optional[nn.Module], track_parameters: bool = True) -> Hashable:
    if model is None:
        return None
    flags = tuple(m.training for m in model.modules())
    if not track_parameters:
        return (id(model), flags)
    params = tuple((id(t), t._version) for t in model.parameters())
    buffers = tuple((id(t), t._version) for t in model.buffers())
    return (id(model), flags, params, buffers)


def _baseline_key(baselines: Optional[Sequence[Any]]) -> Hashable:
    if baselines is None:
        return None
    out = []
    for b in baselines:
        if isinstance(b, Tensor):
            data = b.detach().cpu().contiguous()
            raw = (data.float() if data.dtype == torch.bfloat16 else data).numpy().tobytes()
            b = (tuple(data.shape), str(data.dtype), hashlib.sha1(raw).hexdigest())
        out.append(b)
    return tuple(out)


def _one_or_tuple(values: Sequence[Any]) -> Any:
    return tuple(values) if len(values) > 1 else values[0]


def _bullets(items: Iterable[Any]) -> str:
    return "\n".join(f"  - {item}" for item in items)


class HomogeneityGuard:
    """Verify once per model state (``track_parameters``: and parameter versions) that
    X-Gradient is exact; warn or raise as ``check`` says (see :class:`~captum_xgrad.XGradient`)."""

    def __init__(
        self, check: str, who: str, cache_size: int = 8, silence: Optional[str] = None,
        track_parameters: bool = True,
    ) -> None:
        self.check = check
        self.who = who
        self.silence = silence or f"{who}(model, check='off')"
        self.track_parameters = track_parameters
        self._cache: "collections.OrderedDict[Hashable, Any]" = collections.OrderedDict()
        self._cache_size = cache_size
        self._warned: set = set()

    def _cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._cache[key] = compute()
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def certificate(
        self, forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
        additional_forward_args: Any, baselines: Optional[Sequence[Any]] = None,
    ) -> Any:
        """The (cached) :class:`~captum_xgrad.DegreeCertificate` of the model."""
        from ..homogeneity.certificate import certify_homogeneity
        model = model_of(forward_func)
        if model is not None and getattr(forward_func, "__self__", None) is None:
            forward_func = model
        args = tuple(additional_forward_args) if additional_forward_args is not None else ()
        described = tuple(
            (type(a).__name__, tuple(a.shape) if isinstance(a, Tensor) else repr(a)[:50])
            for a in args
        )
        key = ("cert", _state_key(model, self.track_parameters), len(inputs), described,
               _baseline_key(baselines))
        return self._cached(key, lambda: certify_homogeneity(
            forward_func, _one_or_tuple(inputs), additional_forward_args=args or None,
            baselines=None if baselines is None else _one_or_tuple(baselines),
        ))

    def verify(
        self, forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
        additional_forward_args: Any, target: Any, degree: Any,
        baselines: Optional[Sequence[Any]] = None,
    ) -> Optional[float]:
        """Check the model (and explicit baselines); the proved degree or None. ``"static"``
        runs the empirical check only where the model does not trace."""
        if self.check == "off":
            return None
        cert = self.certificate(forward_func, inputs, additional_forward_args, baselines)
        explicit = baselines is not None
        if cert.proved and degree != "auto" and float(degree) != cert.degree:
            raise ValueError(
                f"{self.who}: the model is proved homogeneous of degree {cert.degree:g}, but "
                f"degree={degree!r} was given, so the attributions would be off by a factor "
                f"{cert.degree / float(degree):g}. Pass degree={cert.degree:g} or degree=\"auto\"."
            )
        report = None
        if self.check in ("warn", "raise") or cert.status == "unknown":
            report = self.empirical(forward_func, inputs, additional_forward_args, target,
                                    None if cert.proved else degree, baselines)
        measured_ok = report is None or report.is_homogeneous
        if cert.proved and measured_ok:
            return cert.degree
        model = model_of(forward_func)
        unknown = cert.status == "unknown"
        static = static_findings(model) if unknown and model is not None and not explicit else []
        if unknown and measured_ok and not static:
            return None
        text = f"{self.who}: "
        if cert.status == "not_homogeneous" and explicit:
            text += (
                f"the model is not homogeneous about the given baselines ({cert.baselines}), "
                "so X-Gradient would not equal Integrated Gradients with them:\n"
            )
        elif cert.status == "not_homogeneous":
            text += (
                f"{cert.model} is not nonnegatively homogeneous (proved from its graph), "
                "so its X-Gradient differs from Integrated Gradients:\n"
            )
        elif unknown:
            text += "homogeneity could not be proved from the graph:\n"
        else:
            text += f"{cert.model} is proved homogeneous, but the empirical check fails:\n"
        if cert.status in ("not_homogeneous", "unknown"):
            text += _bullets(cert.findings) + "\n"
        if not measured_ok:
            check = "f(b) = 0, f(b + a(x - b)) = a^k f(x)" if explicit else "f(a x) = a^k f(x)"
            text += f"The empirical check {check} fails on these inputs:\n{report}\n"
        if static:
            text += "Modules that break homogeneity:\n" + _bullets(static) + "\n"
        if cert.centre is not None:
            text += (
                f" The model begins with {cert.centre_expression}, so it is homogeneous about the "
                "point this map sends to zero: pass baselines=captum_xgrad.certify_homogeneity("
                "model, inputs).centre (for a normalising wrapper, its `mean`)."
            )
        if explicit:
            raise ValueError(
                f"{text} Otherwise use captum.attr.IntegratedGradients for this baseline."
            )
        self._report(
            text + " X-Gradient may differ from Integrated Gradients. Use a bias-free model "
            "(captum_xgrad.make_x_dnn(model), then fine-tune), or silence this with "
            f"{self.silence}."
        )
        return None

    def _report(self, message: str) -> None:
        """Raise (``"raise"``) or warn: ``"static"`` says each message once, ``"warn"`` always."""
        if self.check == "raise":
            raise NonHomogeneousError(message)
        if self.check == "static" and message in self._warned:
            return
        if len(self._warned) > 64:
            self._warned.clear()
        self._warned.add(message)
        warn(message)

    def empirical(
        self, forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
        additional_forward_args: Any, target: Any, degree: Any,
        baselines: Optional[Sequence[Any]],
    ) -> Any:
        """The (cached) empirical check; about baselines ``b``, :math:`f(b + z)` at ``x - b``."""
        from ..homogeneity.empirical import check_homogeneity
        model = model_of(forward_func)
        key = ("empirical", _state_key(model, self.track_parameters),
               tuple((tuple(x.shape), x.dtype, x.device) for x in inputs),
               _baseline_key(baselines))

        def run() -> Any:
            func: Callable[..., Any] = forward_func
            points = inputs
            if baselines is not None:
                bs = tuple(
                    b if isinstance(b, Tensor) else torch.as_tensor(b, dtype=x.dtype).to(x.device)
                    for b, x in zip(baselines, inputs)
                )

                def shifted(*z: Tensor) -> Any:  # g(z) = f(b + z)
                    return forward_func(*(b + zi for b, zi in zip(bs, z)), *z[len(bs):])

                func = shifted
                points = tuple(x - b for x, b in zip(inputs, bs))
            return check_homogeneity(
                func, _one_or_tuple(points), additional_forward_args=additional_forward_args,
                target=target, degree=None if degree in (None, "auto") else float(degree),
            )

        return self._cached(key, run)

    @property
    def checked_shapes(self) -> list:
        """The cached empirical verdicts (at most ``cache_size``)."""
        return [k for k in self._cache if k[0] == "empirical"]

    def verify_layers(
        self, forward_func: Callable[..., Any], layers: Sequence[nn.Module],
        inputs: Tuple[Tensor, ...], additional_forward_args: Any,
        attribute_to_layer_input: bool, degree: float,
    ) -> None:
        """Check that layer X-Gradient equals LayerIntegratedGradients at each layer."""
        if self.check == "off":
            return
        from ..homogeneity.certificate import certify_layer
        model = model_of(forward_func)
        args = tuple(additional_forward_args) if additional_forward_args is not None else ()
        for layer in layers:
            cert = None
            if model is not None:
                state = _state_key(model, self.track_parameters)
                key = ("layer", state, id(layer), attribute_to_layer_input, len(inputs))
                cert = self._cached(key, lambda: certify_layer(
                    model, layer, _one_or_tuple(inputs),
                    attribute_to_layer_input=attribute_to_layer_input,
                    additional_forward_args=args or None,
                ))
            if cert is not None and cert.proved:
                if float(degree) != cert.degree:
                    raise ValueError(
                        f"{self.who}: the network after layer {cert.layer!r} is proved homogeneous "
                        f"of degree {cert.degree:g} in its activation, but degree={degree!r} was "
                        f"given. Pass degree={cert.degree:g}."
                    )
                continue
            if cert is None:
                text = (
                    f"{self.who}: the model is not an nn.Module, so it cannot be proved that "
                    f"layer X-Gradient at {type(layer).__name__} equals LayerIntegratedGradients."
                )
            else:
                where = "input" if attribute_to_layer_input else "output"
                verdict = "not" if cert.status == "not_homogeneous" else "not proved to be"
                text = (
                    f"{self.who}: layer X-Gradient at the {where} of {cert.layer!r} is {verdict} "
                    "equal to LayerIntegratedGradients. Captum scales only this layer's "
                    "activation, so everything that bypasses the layer (a skip connection, "
                    "another input) stays fixed, and the network after the layer must be "
                    f"homogeneous in the activation alone:\n{_bullets(cert.findings)}\n"
                )
                if cert.suggestion:
                    text += (
                        f"The enclosing layer {cert.suggestion!r} is exact: attribute to "
                        f"model.{cert.suggestion} instead. "
                    )
            self._report(text + f"Silence this with {self.who}(model, layer, check='off').")
