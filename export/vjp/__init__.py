"""Vector-Jacobian rules, one per ONNX op type, in a registry (as HIPS/autograd and JAX keep them).

A rule has the signature ``rule(b, node, grads, needs) -> list[str | None]``:
  b      GraphBuilder: emits nodes, knows static shapes and folded constants
  node   the forward Node (attributes decoded)
  grads  gradient tensor names of the node's outputs (None where nothing flows back)
  needs  for each input, whether its gradient is wanted (it depends on the image)
and returns one gradient name (or None) per input. Rules may assume at least one grad is not None.

A rule that is exact only for some attributes names the others with ``refuses(node, needs)``: a
one-line reason, checked on the user's graph before any work (``autodiff.undifferentiable``).

Beside its VJP rule each op's other facts register here too (JAX keeps a primitive's rules together):
its receptive-field rule (``field_rule``, fields.py: how the output's field follows from the inputs')
its multiply-accumulate count (``mac_count``, for ``lam-trt inspect``'s FLOPs), and, for the local
ops of an upsampling tail, how its reverse pass runs on one window's crop (``crop_rule``, crops.py).
"""
from lam_trt.export.vjp.registry import (  # noqa: F401 - the registry's public names
    CROP_RULES, FIELD_RULES, MAC_COUNTS, NON_DIFFERENTIABLE, REGISTRY, MacCount, Refusal, Rule, field_rule, mac_count,
    crop_rule, supported_op_types, vjp,
)

# Importing the rule modules fills REGISTRY (one file per op family, as onnx/reference/ops does).
from lam_trt.export.vjp import (  # noqa: E402,F401
    activation, conv, elementwise, linalg, normalization, pool, reduce, resize, shape,
    scatter, sampling, selection, spectral, fold, trig,
)
