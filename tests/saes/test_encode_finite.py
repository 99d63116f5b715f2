"""NaN/inf input to `saes.encode` (issue 16, failure 6): refused on CPU by default, where the
check is cheap, instead of NaN features and arbitrary top-k indices."""

from __future__ import annotations

import pytest
import torch

from saes import encode
from tests.support.tiny import random_sae


@pytest.mark.parametrize("arch", ["topk", "standard"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_refused_on_cpu_by_default(arch, value):
    sae = random_sae(32, arch=arch)
    z = torch.randn(3, 5, 4, 8)  # (batch, pos, head, d_head)
    z[1, 2, 0, 3] = value
    with pytest.raises(ValueError, match="NaN or inf"):
        encode(sae, z)
    with pytest.raises(ValueError, match="NaN or inf"):
        encode(sae, z, impl="torch", dense=arch != "topk")
    res = encode(sae, z.nan_to_num(0.0, 0.0, 0.0))  # clean input encodes as before
    assert torch.isfinite(res.acts).all()
