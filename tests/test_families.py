"""Every surrogate family runs on every LIF backend from its one definition, against the stepwise reference.

The families are those registered in asgl.surrogates.SURROGATES (a new entry is covered here without an
edit) and a toy family defined below, outside the package: that the toy runs everywhere with no edit under
asgl/ is what shows that a family is one entry.
"""

import os

import pytest
import torch
from lif_cases import assert_matches_stepwise, inputs, on_lif, output_and_grads

from asgl import surrogates
from asgl.scalar import fabs
from asgl.spike import MaskDraw, SpikeSpec
from asgl.surrogates import SURROGATES, Surrogate, register_family

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported


# The toy family (SuperSpike's fast sigmoid): F(y) = ½ + ½ y / (1 + |y|), f(y) = ½ / (1 + |y|)².
def superspike_step(y):
    return 0.5 + 0.5 * y / (1.0 + fabs(y))


def superspike_density(y):
    a = 1.0 + fabs(y)
    return 0.5 / (a * a)


TOY = Surrogate("superspike", superspike_step, superspike_density, 9.0)  # F(9) − F(−9) = 0.9
FAMILIES = [*SURROGATES.values(), TOY]


def backends() -> dict:
    """The sequence backends of asgl.neuron, and the Triton kernel (its interpreter on CPU)."""
    from asgl import neuron

    found = {name: on_lif(fn) for name, fn in neuron.BACKENDS.items() if name != "stepwise"}
    found.setdefault("triton", neuron.lif_triton)  # under the interpreter: not registered without CUDA
    if neuron.cpu_kernel() is None:
        found.pop("cpu_kernel")
    return found


@pytest.mark.parametrize("backend", sorted(backends()))
@pytest.mark.parametrize("family", FAMILIES, ids=lambda s: s.name)
def test_family_matches_stepwise_on_every_backend(family, backend):
    from asgl.neuron import lif_stepwise

    pytest.importorskip("triton") if backend == "triton" else None
    spec = SpikeSpec(family, "asgl", "hard", "threshold", "all")
    args = inputs((), shape=(5, 2, 3, 2, 2))
    draw = MaskDraw(0.4, seed=3)
    ref_out, ref_grads = output_and_grads(lif_stepwise(*args, draw, spec), args)
    out, grads = output_and_grads(backends()[backend](*args, draw, spec), args)
    assert_matches_stepwise(out, grads, ref_out, ref_grads, "asgl", True)


def test_toy_family_is_a_unit_step_and_registers(monkeypatch):
    y = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(TOY.step(y).sum(), y)
    torch.testing.assert_close(slope, TOY.density(y.detach()))  # f = F'
    assert TOY.step(torch.zeros(1)).item() == 0.5
    monkeypatch.setattr(surrogates, "SURROGATES", dict(SURROGATES))  # registered for this test only
    assert register_family("superspike", superspike_step, superspike_density, 9.0) == TOY
    with pytest.raises(ValueError, match="registered already"):
        register_family("superspike", superspike_step, superspike_density, 9.0)


def test_a_family_outside_the_vocabulary_is_refused():
    def uses_torch(y):
        return torch.sigmoid(y)

    with pytest.raises(ValueError, match="uses torch"):
        register_family("bad", uses_torch, uses_torch, 1.0)
