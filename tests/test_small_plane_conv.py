"""The U-Net's transposed convolutions on small planes run as a matrix product and a fold on the
CPU: the same values and gradients as torch's operator, and the standard operator in ONNX."""

from __future__ import annotations

import io

import onnx
import pytest
import torch
import torch.nn as nn

from aerocolor.config import NetworkConfig
from aerocolor.nets.generators import build_generator
from aerocolor.nets.layers import SMALL_PLANE_POSITIONS, ConvTranspose2d


@pytest.mark.parametrize(("batch", "cin", "cout", "side", "kernel", "stride", "padding", "out_pad", "bias"), [
    (1, 64, 32, 1, 4, 2, 1, 0, False),   # the innermost U-Net level
    (1, 96, 48, 4, 4, 2, 1, 0, True),
    (2, 32, 16, 4, 4, 2, 1, 0, False),   # 32 positions
    (1, 32, 8, 8, 3, 2, 1, 1, True),     # the ResNet generator's shape, output_padding 1
    (4, 16, 8, 4, 4, 2, 1, 0, True),     # 64 positions, the limit
])
def test_small_planes_match_the_standard_operator(batch, cin, cout, side, kernel, stride, padding, out_pad, bias):
    torch.manual_seed(0)
    ours = ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=out_pad, bias=bias)
    ref = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=out_pad, bias=bias)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(batch, cin, side, side)
    assert ours._small_plane(x), "the shape should take the matrix-product path"
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_large_planes_and_exports_use_the_standard_operator():
    conv = ConvTranspose2d(8, 4, 4, 2, 1)
    big = torch.randn(1, 8, 16, 16)
    assert 16 * 16 > SMALL_PLANE_POSITIONS and not conv._small_plane(big)
    small = torch.randn(1, 8, 2, 2)
    assert conv._small_plane(small)
    buf = io.BytesIO()  # the legacy exporter, as aerocolor export uses
    torch.onnx.export(conv.eval(), small, buf, input_names=["x"], output_names=["y"], dynamo=False)
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert "ConvTranspose" in ops and "Col2Im" not in ops, ops


def test_unet_takes_the_small_plane_path_and_keeps_its_state_dict():
    cfg = NetworkConfig(netG="unet_64", ngf=8, norm="batch", dropout=False)
    net = build_generator(cfg, 1, 2)
    convs = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs and all(isinstance(m, ConvTranspose2d) for m in convs)
    plain = {k for k in net.state_dict() if "up." in k}
    assert any(k.endswith("weight") for k in plain)
    hits = []
    for m in convs:
        m.register_forward_hook(lambda mod, inp, out: hits.append(mod._small_plane(inp[0])))
    net(torch.randn(1, 1, 64, 64))
    assert any(hits) and not all(hits), hits  # inner levels small, outer ones large
