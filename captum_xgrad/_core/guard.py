"""The one homogeneity guard of the attribution entry points.

:class:`HomogeneityGuard` decides, before an attribution is computed, whether the
closed form is exact, and says so once: ``XGradient``, ``LayerXGradient`` and
``AttributionPrior`` (through ``XGradientMethod``) all use it, and every
"not homogeneous" warning of the package is issued by :func:`warn`.

Order of evidence: the graph certificate (:func:`~captum_xgrad.certify_homogeneity`,
no forward pass) where the model traces; otherwise the module scan plus one empirical
:func:`~captum_xgrad.check_homogeneity` per input shape (and baseline). Verdicts are
cached in a small LRU keyed on everything that can change them: the model's train/eval
flags, the versions of its parameters and buffers (an optimizer step invalidates a
proof), the input structure or shapes, and the baseline's values.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import sys
import warnings
from typing import Any, Callable, Hashable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..homogeneity.static import static_findings
from .state import model_of
from ..errors import NonHomogeneousError, NonHomogeneousWarning

__all__ = ["HomogeneityGuard", "warn"]

_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__))
    for m in (sys.modules[__name__.split(".")[0]],)
)


def _skip_dirs() -> Tuple[str, ...]:
    dirs = list(_PACKAGE_DIRS)
    try:
        import captum

        dirs.append(os.path.dirname(os.path.abspath(captum.__file__)))
    except Exception:  # pragma: no cover - captum is a dependency
        pass
    dirs.append(os.path.dirname(os.path.abspath(torch.__file__)))
    dirs.append(os.path.abspath(contextlib.__file__))
    return tuple(dirs)


def warn(message: str, category: type = NonHomogeneousWarning) -> None:
    """Issue ``message`` attributed to the first caller outside this package.

    The stack level is found by walking the frames past captum-xgrad, Captum (e.g.
    ``NoiseTunnel``) and torch, so the warning points at the user's line however deep
    the call.

    Parameters
    ----------
    message : str
        The warning text.
    category : type, default NonHomogeneousWarning
        The warning class.
    """
    skip = _skip_dirs()
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)


def _state_key(model: Optional[nn.Module], track_parameters: bool = True) -> Hashable:
    if model is None:
        return None
    flags = tuple(m.training for m in model.modules())
    if not track_parameters:
        return (id(model), flags)
    return (
        id(model),
        flags,
        tuple((id(t), t._version) for t in model.parameters()),
        tuple((id(t), t._version) for t in model.buffers()),
    )


def _baseline_key(baselines: Optional[Sequence[Any]]) -> Hashable:
    if baselines is None:
        return None
    out = []
    for b in baselines:
        if isinstance(b, Tensor):
            data = b.detach().cpu().contiguous()
            out.append((tuple(data.shape), str(data.dtype), hashlib.sha1(data.numpy().tobytes() if data.dtype != torch.bfloat16 else data.float().numpy().tobytes()).hexdigest()))
        else:
            out.append(b)
    return tuple(out)


def _describe_centre(cert: Any) -> str:
    if cert is None or cert.centre is None:
        return ""
    return (
        f" The model begins with {cert.centre_expression}, so it is homogeneous about "
        "the point this map sends to zero: pass "
        "baselines=captum_xgrad.certify_homogeneity(model, inputs).centre (for a "
        "normalising wrapper, its `mean`)."
    )


class HomogeneityGuard:
    """Verify once per model state that X-Gradient is exact, and warn or raise if not.

    Parameters
    ----------
    check : {"static", "off", "warn", "raise"}
        The mode of the attribution object (see :class:`~captum_xgrad.XGradient`).
    who : str
        The name used in messages (``"XGradient"``).
    cache_size : int, default 8
        How many verdicts to keep.
    silence : str, optional
        How the user turns the check off, quoted in warnings
        (default ``"<who>(model, check='off')"``).
    track_parameters : bool, default True
        Re-verify when a parameter or buffer changes (an optimizer step). The training
        helpers pass ``False``: they verify once per model and train/eval state, since
        their parameters change at every step.
    """

    def __init__(self, check: str, who: str, cache_size: int = 8, silence: Optional[str] = None,
                 track_parameters: bool = True) -> None:
        self.check = check
        self.who = who
        self.silence = silence or f"{who}(model, check='off')"
        self.track_parameters = track_parameters
        self._cache: "collections.OrderedDict[Hashable, Any]" = collections.OrderedDict()
        self._cache_size = cache_size
        self._warned: set = set()

    # ------------------------------------------------------------------ cache
    def _cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = compute()
        self._cache[key] = value
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def certificate(self, forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
                    additional_forward_args: Any, baselines: Optional[Sequence[Any]] = None) -> Any:
        """The (cached) :class:`~captum_xgrad.DegreeCertificate` of the model.

        Parameters
        ----------
        forward_func : callable
            The model.
        inputs : tuple of Tensor
            Formatted inputs (tracing only).
        additional_forward_args : Any
            Formatted additional arguments.
        baselines : sequence, optional
            One baseline per input, or ``None`` for zero.

        Returns
        -------
        DegreeCertificate
            The certificate.
        """
        from ..homogeneity.certificate import certify_homogeneity

        model = model_of(forward_func)
        if model is not None and getattr(forward_func, "__self__", None) is None:
            forward_func = model
        args = tuple(additional_forward_args) if additional_forward_args is not None else ()
        key = ("cert", _state_key(model, self.track_parameters), len(inputs),
               tuple((type(a).__name__, tuple(a.shape) if isinstance(a, Tensor) else repr(a)[:50]) for a in args),
               _baseline_key(baselines))
        return self._cached(key, lambda: certify_homogeneity(
            forward_func, inputs if len(inputs) > 1 else inputs[0],
            additional_forward_args=args or None,
            baselines=(tuple(baselines) if len(baselines) > 1 else baselines[0]) if baselines is not None else None,
        ))

    # ------------------------------------------------------------------ verify
    def verify(
        self,
        forward_func: Callable[..., Any],
        inputs: Tuple[Tensor, ...],
        additional_forward_args: Any,
        target: Any,
        degree: Any,
        baselines: Optional[Sequence[Any]] = None,
    ) -> Optional[float]:
        """Check the model (and baseline) before attributing.

        ``check="static"`` relies on the certificate, and runs the empirical check only
        where the model does not trace; ``"warn"`` and ``"raise"`` also run the
        empirical check once per input shape (and baseline), and report a failure of
        either.

        Parameters
        ----------
        forward_func, inputs, additional_forward_args, target
            As given to ``attribute`` (formatted).
        degree : float or "auto"
            The attribution's degree.
        baselines : sequence, optional
            The explicit baselines, one per input; ``None`` when the caller passed
            none (the zero baseline of the default path).

        Returns
        -------
        float or None
            The proved degree when there is a proof, else ``None``.

        Raises
        ------
        ValueError
            When an explicit baseline is refused, or when the proved degree differs
            from ``degree``.
        NonHomogeneousError
            With ``check="raise"`` on a model that is not homogeneous.
        """
        if self.check == "off":
            return None
        cert = self.certificate(forward_func, inputs, additional_forward_args, baselines)
        explicit = baselines is not None
        if cert.proved and degree != "auto" and float(degree) != cert.degree:
            raise ValueError(
                f"{self.who}: the model is proved homogeneous of degree "
                f"{cert.degree:g}, but degree={degree!r} was given, so the attributions "
                f"would be off by a factor {cert.degree / float(degree):g}. Pass "
                f"degree={cert.degree:g} or degree=\"auto\"."
            )
        report = None
        if self.check in ("warn", "raise") or cert.status == "unknown":
            report = self.empirical(forward_func, inputs, additional_forward_args, target,
                                    None if cert.proved else degree, baselines)
        measured_ok = report is None or report.is_homogeneous
        if cert.proved and measured_ok:
            return cert.degree
        model = model_of(forward_func)
        static = (
            static_findings(model)
            if cert.status == "unknown" and model is not None and baselines is None else []
        )
        if cert.status == "unknown" and measured_ok and not static:
            return None
        text = f"{self.who}: "
        if cert.status == "not_homogeneous":
            findings = "\n".join(f"  - {f}" for f in cert.findings)
            if explicit:
                text += (
                    f"the model is not homogeneous about the given baselines ({cert.baselines}), "
                    f"so X-Gradient would not equal Integrated Gradients with them:\n{findings}\n"
                )
            else:
                text += (
                    f"{cert.model} is not nonnegatively homogeneous (proved from its graph), "
                    f"so its X-Gradient differs from Integrated Gradients:\n{findings}\n"
                )
        elif cert.status == "unknown":
            why = "\n".join(f"  - {f}" for f in cert.findings)
            text += f"homogeneity could not be proved from the graph:\n{why}\n"
        else:
            text += f"{cert.model} is proved homogeneous, but the empirical check fails:\n"
        if not measured_ok:
            check = "f(b) = 0, f(b + a(x - b)) = a^k f(x)" if explicit else "f(a x) = a^k f(x)"
            text += f"The empirical check {check} fails on these inputs:\n{report}\n"
        if static:
            text += "Modules that break homogeneity:\n" + "\n".join(f"  - {x}" for x in static) + "\n"
        text += _describe_centre(cert)
        if explicit:
            raise ValueError(text + " Otherwise use captum.attr.IntegratedGradients for this baseline.")
        text += (
            " X-Gradient may differ from Integrated Gradients. Use a bias-free model "
            "(captum_xgrad.make_x_dnn(model), then fine-tune), or silence this with "
            f"{self.silence}."
        )
        self._report(text, key=None)
        return None

    def _report(self, message: str, key: Hashable = None) -> None:
        if self.check == "raise":
            raise NonHomogeneousError(message)
        if self.check == "static" and message in self._warned:  # said once ("warn": every call)
            return
        if len(self._warned) > 64:
            self._warned.clear()
        self._warned.add(message)
        warn(message)

    def empirical(self, forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
                  additional_forward_args: Any, target: Any, degree: Any,
                  baselines: Optional[Sequence[Any]]) -> Any:
        """The (cached) empirical check, about the baselines when given.

        Parameters
        ----------
        forward_func, inputs, additional_forward_args, target
            As given to ``attribute`` (formatted).
        degree : float, "auto" or None
            The degree to test against (estimated for ``"auto"`` or ``None``).
        baselines : sequence, optional
            The baselines ``b``: then :math:`g(z) = f(b + z)` is checked at
            :math:`z = x - b`.

        Returns
        -------
        HomogeneityReport
            The report, computed once per model state, input shape and baseline.
        """
        from ..homogeneity.empirical import check_homogeneity

        model = model_of(forward_func)
        key = ("empirical", _state_key(model, self.track_parameters),
               tuple((tuple(x.shape), x.dtype, x.device) for x in inputs),
               _baseline_key(baselines))

        def run() -> Any:
            func: Callable[..., Any] = forward_func
            points = inputs
            if baselines is not None:
                bs = tuple(b if isinstance(b, Tensor) else torch.as_tensor(b, dtype=x.dtype, device=x.device) for b, x in zip(baselines, inputs))

                def shifted(*z: Tensor) -> Any:  # g(z) = f(b + z)
                    n = len(bs)
                    return forward_func(*(b + zi for b, zi in zip(bs, z[:n])), *z[n:])

                func = shifted
                points = tuple(x - b for x, b in zip(inputs, bs))
            return check_homogeneity(
                func, points if len(points) > 1 else points[0],
                additional_forward_args=additional_forward_args, target=target,
                degree=None if degree in (None, "auto") else float(degree),
            )

        return self._cached(key, run)

    @property
    def checked_shapes(self) -> list:
        """The cached empirical verdicts (at most ``cache_size``)."""
        return [k for k in self._cache if k[0] == "empirical"]

    # ----------------------------------------------------------------- layers
    def verify_layers(
        self,
        forward_func: Callable[..., Any],
        layers: Sequence[nn.Module],
        inputs: Tuple[Tensor, ...],
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        degree: float,
    ) -> None:
        """Check that layer X-Gradient equals LayerIntegratedGradients at each layer.

        Parameters
        ----------
        forward_func : callable
            The model.
        layers : sequence of nn.Module
            The layers attributed to.
        inputs : tuple of Tensor
            Formatted inputs (tracing only).
        additional_forward_args : Any
            Formatted additional arguments.
        attribute_to_layer_input : bool
            Whether the layer's input is attributed.
        degree : float
            The attribution's degree.

        Raises
        ------
        ValueError
            When the proved degree differs from ``degree``.
        NonHomogeneousError
            With ``check="raise"`` when a layer is not proved exact.
        """
        if self.check == "off":
            return
        from ..homogeneity.certificate import certify_layer

        model = model_of(forward_func)
        args = tuple(additional_forward_args) if additional_forward_args is not None else ()
        for layer in layers:
            if model is None:
                cert = None
            else:
                key = ("layer", _state_key(model, self.track_parameters), id(layer), attribute_to_layer_input, len(inputs))
                cert = self._cached(key, lambda: certify_layer(
                    model, layer, inputs if len(inputs) > 1 else inputs[0],
                    attribute_to_layer_input=attribute_to_layer_input,
                    additional_forward_args=args or None,
                ))
            if cert is not None and cert.proved:
                if float(degree) != cert.degree:
                    raise ValueError(
                        f"{self.who}: the network after layer {cert.layer!r} is proved "
                        f"homogeneous of degree {cert.degree:g} in its activation, but "
                        f"degree={degree!r} was given. Pass degree={cert.degree:g}."
                    )
                continue
            where = "input" if attribute_to_layer_input else "output"
            if cert is None:
                text = (
                    f"{self.who}: the model is not an nn.Module, so it cannot be proved "
                    f"that layer X-Gradient at {type(layer).__name__} equals "
                    "LayerIntegratedGradients."
                )
            else:
                findings = "\n".join(f"  - {f}" for f in cert.findings)
                text = (
                    f"{self.who}: layer X-Gradient at the {where} of {cert.layer!r} is "
                    f"{'not' if cert.status == 'not_homogeneous' else 'not proved to be'} "
                    "equal to LayerIntegratedGradients. Captum scales only this layer's "
                    "activation, so everything that bypasses the layer (a skip "
                    "connection, another input) stays fixed, and the network after the "
                    f"layer must be homogeneous in the activation alone:\n{findings}\n"
                )
                if cert.suggestion:
                    text += (
                        f"The enclosing layer {cert.suggestion!r} is exact: attribute to "
                        f"model.{cert.suggestion} instead. "
                    )
            text += f"Silence this with {self.who}(model, layer, check='off')."
            self._report(text, key=("layer", id(cert) if cert is not None else id(layer)))
