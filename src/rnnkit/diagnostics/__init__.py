"""Why an RNN forgets: gradient flow through time, memory horizon, gate statistics.

Diagnostics observe and change nothing: a layer is re-run step by step with copies of its
weights (:mod:`.unroll`), gradients come from ``torch.autograd`` on the kept states.

- :func:`diagnose` / :func:`diagnose_cells`: everything below for one layer / fresh layers.
- :func:`gradient_norms`, :func:`jacobian_norms`: per-lag curves.
- :func:`fit_eta`, :func:`memory_horizon`, :func:`pascanu_bound`: the summaries.
- :func:`gate_statistics`: gate means and saturation, dead ReLU units, σ_max(W_hh).
- :class:`GradientFlowCallback`: the same during training, into ``metrics.jsonl``.
"""

from rnnkit.diagnostics.callback import GradientFlowCallback
from rnnkit.diagnostics.gates import gate_statistics, gate_values
from rnnkit.diagnostics.gradient_flow import (
    fit_eta,
    gradient_norms,
    jacobian_norms,
    memory_horizon,
    pascanu_bound,
)
from rnnkit.diagnostics.report import (
    Diagnosis,
    LayerDiagnosis,
    diagnose,
    diagnose_cells,
    format_table,
    plot_gradient_flow,
)
from rnnkit.diagnostics.unroll import LayerTrace, unroll

__all__ = [
    "Diagnosis",
    "GradientFlowCallback",
    "LayerDiagnosis",
    "LayerTrace",
    "diagnose",
    "diagnose_cells",
    "fit_eta",
    "format_table",
    "gate_statistics",
    "gate_values",
    "gradient_norms",
    "jacobian_norms",
    "memory_horizon",
    "pascanu_bound",
    "plot_gradient_flow",
    "unroll",
]
