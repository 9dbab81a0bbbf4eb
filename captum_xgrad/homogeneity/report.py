"""The results of the homogeneity checks: :class:`HomogeneityReport` and its findings."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import NonHomogeneousError

__all__ = ["CertificateFinding", "DegreeCertificate", "HomogeneityReport", "ModuleFinding"]

_FIX = (
    "on this model. Convert it with captum_xgrad.make_x_dnn(model) and fine-tune, or use "
    "captum.attr.IntegratedGradients."
)


def _clean(value: Any) -> Any:
    """Make ``value`` JSON-serialisable: tensors become lists, NaN/Inf floats None."""
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _fmt(value: Optional[float], spec: str = ".3g") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, spec)


def _table(title: str, rows: Sequence[Tuple[str, ...]]) -> List[str]:
    """``title``, then ``rows`` in aligned columns (the last one unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [title] + [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows
    ]


@dataclasses.dataclass(frozen=True)
class ModuleFinding:
    """One module that fails the homogeneity test on its own (made by ``check_homogeneity``).

    Attributes
    ----------
    name : str
        Qualified name (``"layer1.0.bn1"``); ``"<ClassName>"`` for the model's own forward.
    type : str
        The module's class name.
    violation : float
        Its largest relative violation on the activations it received, as in the report.
    degree : float or None
        Its estimated degree (None if none could be estimated).
    reason : str
        The known cause (e.g. "has a bias"), or what was measured.

    Examples
    --------
    >>> from captum_xgrad.homogeneity import ModuleFinding
    >>> ModuleFinding("fc", "Linear", 0.5, 1.0, "has a bias (y = W x + b)").reason
    'has a bias (y = W x + b)'
    """

    name: str
    type: str
    violation: float
    degree: Optional[float]
    reason: str


@dataclasses.dataclass(frozen=True)
class HomogeneityReport:
    r"""Result of :func:`~captum_xgrad.check_homogeneity`; ``str()`` gives a table.

    Attributes
    ----------
    model : str
        Class (or function) name of the model.
    input_shapes : tuple of tuple of int
        Shapes of the inputs checked on.
    is_homogeneous : bool
        Whether :math:`f(\alpha x) = \alpha^k f(x)` held at every scale, :math:`k > 0`, f(0) = 0.
    degree : float or None
        The degree tested: the one passed, else the (rounded) estimate; None if neither.
    estimated_degree : float or None
        Median over outputs of the fit :func:`~captum_xgrad.homogeneity.degree.fit_degree`.
    degree_per_output : tuple of float or None
        The fit per output (median over examples); None where an output was ~0.
    scales : tuple of float
        The factors :math:`\alpha` tried.
    violations : tuple of float
        Per scale, :math:`\max|f(\alpha x) - \alpha^k f(x)| / \max|\alpha^k f(x)|`.
    max_violation : float
        The largest of ``violations``.
    f_zero, output_scale : float
        :math:`\max |f(0)|` and :math:`\max |f(x)|`.
    rtol, atol : float
        The tolerances used (see :func:`~captum_xgrad.check_homogeneity`).
    offenders : tuple of ModuleFinding
        The blamed modules (empty if the model passes or blame was skipped).
    static : tuple of str
        :func:`static_findings` of the model.
    notes : tuple of str
        Anything else worth knowing (all outputs zero, degree not positive...).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False))
    >>> report = check_homogeneity(model, torch.randn(4, 3))
    >>> report.is_homogeneous, report.degree, report.scales
    (True, 1.0, (0.5, 2.0, 3.7))
    >>> print(str(report).splitlines()[0])
    Homogeneity check of Sequential on inputs (4, 3): homogeneous
    >>> report.raise_if_not()  # nothing happens: the model passed
    """

    model: str
    input_shapes: Tuple[Tuple[int, ...], ...]
    is_homogeneous: bool
    degree: Optional[float]
    estimated_degree: Optional[float]
    degree_per_output: Tuple[Optional[float], ...]
    scales: Tuple[float, ...]
    violations: Tuple[float, ...]
    max_violation: float
    f_zero: float
    output_scale: float
    rtol: float
    atol: float
    offenders: Tuple[ModuleFinding, ...] = ()
    static: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def raise_if_not(self) -> None:
        """Raise :class:`~captum_xgrad.NonHomogeneousError` (with this report) if not homogeneous.

        Raises
        ------
        NonHomogeneousError
            If :attr:`is_homogeneous` is ``False``.
        """
        if not self.is_homogeneous:
            raise NonHomogeneousError(
                f"{self}\nX-Gradient would not equal Integrated Gradients {_FIX}"
            )

    def to_dict(self) -> Dict[str, Any]:
        """The report as a JSON-serialisable dict.

        Returns
        -------
        dict
            One key per attribute; tuples become lists, findings dicts, NaN/Inf ``None``.
        """
        return _clean(dataclasses.asdict(self))

    def __str__(self) -> str:
        verdict = "homogeneous" if self.is_homogeneous else "NOT homogeneous"
        shapes = ", ".join(str(tuple(s)) for s in self.input_shapes)
        per = [d for d in self.degree_per_output if d is not None]
        per_text = f" (per output {min(per):.4g} .. {max(per):.4g})" if len(per) > 1 else ""
        lines = [
            f"Homogeneity check of {self.model} on inputs {shapes}: {verdict}",
            f"  degree k: tested {_fmt(self.degree, '.4g')}, estimated "
            f"{_fmt(self.estimated_degree, '.4g')}{per_text}",
            "  scale a   max|f(a x) - a^k f(x)| / max|a^k f(x)|",
            *(f"  {a:<8.4g}  {_fmt(v, '.2e')}" for a, v in zip(self.scales, self.violations)),
            f"  |f(0)| = {_fmt(self.f_zero)}   max|f(x)| = {_fmt(self.output_scale)}   "
            f"tolerance: rtol={self.rtol:g}, atol={self.atol:g}",
            *(f"  note: {note}" for note in self.notes),
        ]
        if self.offenders:
            rows = [("module", "type", "violation", "degree", "reason")] + [
                (o.name, o.type, _fmt(o.violation, ".2e"), _fmt(o.degree), o.reason)
                for o in self.offenders
            ]
            lines += _table(f"Offending modules ({len(self.offenders)}):", rows)
        elif not self.is_homogeneous:
            lines.append("No single module was blamed.")
        if self.static and (self.offenders or not self.is_homogeneous):
            lines.append(f"Structural findings ({len(self.static)}):")
            lines.extend(f"  - {s}" for s in self.static)
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class CertificateFinding:
    """One reason why a degree could not be proved.

    Attributes
    ----------
    node : str or None
        The :mod:`torch.fx` graph node (``"layer1_0_bn1"``, ``"add_3"``).
    op : str
        What the node does (``"call_module BatchNorm2d"``, ``"call_function gelu"``).
    module : str or None
        The submodule whose code holds the node; ``None`` for the model's own forward.
    reason : str
        What breaks homogeneity there, and the fix where there is one.

    Examples
    --------
    >>> from captum_xgrad import CertificateFinding
    >>> f = CertificateFinding("fc", "call_module Linear", "fc", "has a non-zero bias")
    >>> f.module, f.reason
    ('fc', 'has a non-zero bias')
    """

    node: Optional[str]
    op: str
    module: Optional[str]
    reason: str

    def __str__(self) -> str:
        where = self.module if self.module is not None else "<forward>"
        kind = self.op[len("call_module "):] if self.op.startswith("call_module ") else self.op
        return f"{where} ({kind}): {self.reason} [node {self.node or '-'}]"


@dataclasses.dataclass(frozen=True)
class DegreeCertificate:
    r"""Result of :func:`~captum_xgrad.certify_homogeneity`: a proof, a refutation, or neither.

    Attributes
    ----------
    model : str
        Class name of the model.
    status : {"proved", "not_homogeneous", "unknown"}
        ``"proved"``: :math:`f(b + \alpha z) = \alpha^k f(b + z)` for all inputs and
        :math:`\alpha \ge 0` (``b`` the baseline); ``"not_homogeneous"``: a node breaks it;
        ``"unknown"``: no trace, or an operation without a rule.
    degree : float or None
        The proved degree :math:`k > 0`; ``None`` unless proved.
    findings : tuple of CertificateFinding
        Why it is not proved; empty when proved.
    method : str
        How the graph was obtained (``"torch.fx.symbolic_trace"``), or why not.
    centre : Tensor, tuple or None
        For a model beginning with an elementwise affine map (``(x - m) / s``), the point
        it sends to zero, shape ``(1, *input.shape[1:])``: the baseline for exact X-Gradient.
    centre_expression : str or None
        That map, in the model's attribute names (``"(x - mean) / std"``).
    layer : str or None
        For :func:`~captum_xgrad.homogeneity.certify_layer`: the layer certified.
    suggestion : str or None
        For a layer that is not exact: the nearest enclosing layer that is.
    baselines : str
        The baselines the degree was certified about (``"0"`` by default).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import certify_homogeneity
    >>> net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))
    >>> cert = certify_homogeneity(net, torch.randn(2, 3))
    >>> cert.status, cert.degree, cert.proved
    ('proved', 1.0, True)
    """

    model: str
    status: str
    degree: Optional[float]
    findings: Tuple[CertificateFinding, ...]
    method: str
    centre: Any = None
    centre_expression: Optional[str] = None
    layer: Optional[str] = None
    suggestion: Optional[str] = None
    baselines: str = "0"

    @property
    def proved(self) -> bool:
        """Whether the degree is proved (``status == "proved"``)."""
        return self.status == "proved"

    def raise_if_not(self) -> None:
        """Raise :class:`~captum_xgrad.NonHomogeneousError` (with this table) unless proved.

        Raises
        ------
        NonHomogeneousError
            If the status is ``"not_homogeneous"`` or ``"unknown"``.
        """
        if not self.proved:
            raise NonHomogeneousError(
                f"{self}\nX-Gradient is not proved to equal Integrated Gradients {_FIX}"
            )

    def to_dict(self) -> Dict[str, Any]:
        """The certificate as a JSON-serialisable dict (tensors become nested lists).

        Returns
        -------
        dict
            One key per attribute, ``findings`` a list of dicts, plus ``proved``.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["findings"] = [dataclasses.asdict(f) for f in self.findings]
        out["proved"] = self.proved
        return _clean(out)

    def __str__(self) -> str:
        what = f"layer {self.layer!r} of {self.model}" if self.layer else self.model
        head = {
            "proved": f"proved homogeneous of degree {_fmt(self.degree, 'g')}",
            "not_homogeneous": "NOT homogeneous",
            "unknown": "unknown (no proof either way)",
        }[self.status]
        about = "" if self.baselines == "0" else f" about baselines {self.baselines}"
        lines = [f"Degree certificate of {what}{about}: {head}", f"  method: {self.method}"]
        if self.centre_expression is not None:
            lines.append(
                f"  centre: the model begins with {self.centre_expression}, which sends "
                "`centre` to zero: X-Gradient is exact with baselines=certificate.centre"
            )
        if self.findings:
            rows = [("node", "op", "module", "reason")] + [
                (f.node or "-", f.op, f.module if f.module is not None else "<forward>", f.reason)
                for f in self.findings
            ]
            lines += _table(f"Findings ({len(self.findings)}):", rows)
        if self.suggestion:
            lines.append(f"  exact instead: the enclosing layer {self.suggestion!r}")
        return "\n".join(lines)
