"""BatchNorm + LeakyReLU as one op (veil.models.fused): the same numbers as the two layers,
forward and backward, while keeping one tensor instead of two."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from veil.models import Obfuscator
from veil.models.fused import BatchNormLeakyReLU, fuse_batchnorm_leakyrelu

LAYERS_WITH_AN_ACTIVATION = 18  # 19 conv-BN layers; the last projection ends in the sigmoid


def _pair(dtype=torch.float64, channels_last=False):
    torch.manual_seed(0)
    plain = Obfuscator().to(dtype)
    with torch.no_grad():  # weights away from their initial 1 / 0, some negative
        for m in plain.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1.5, 1.5).add_(torch.sign(m.weight) * 0.1)
                m.bias.uniform_(-0.5, 0.5)
    fused = copy.deepcopy(plain)
    assert fuse_batchnorm_leakyrelu(fused) == LAYERS_WITH_AN_ACTIVATION
    if channels_last:
        for m in (plain, fused):
            m.to(memory_format=torch.channels_last)
    return plain, fused


def test_fusing_keeps_every_parameter_and_buffer_name():
    plain, fused = _pair()
    assert list(plain.state_dict()) == list(fused.state_dict())
    assert sum(isinstance(m, BatchNormLeakyReLU) for m in fused.modules()) == \
        LAYERS_WITH_AN_ACTIVATION
    assert not any(isinstance(m, nn.LeakyReLU) for m in fused.modules())
    fused.load_state_dict(plain.state_dict())  # a checkpoint of either loads into the other


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_equals_unfused_forward_and_backward_in_training(channels_last):
    plain, fused = _pair(channels_last=channels_last)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    for _ in range(2):  # twice: the running statistics move alike too
        outputs = [m(i) for m, i in zip((plain, fused), inputs, strict=True)]
        torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-12)
        grad = torch.randn_like(outputs[0])
        for out in outputs:
            out.backward(grad)
    torch.testing.assert_close(inputs[1].grad, inputs[0].grad, rtol=1e-9, atol=1e-10)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-10, msg=name)
    for (name, b), c in zip(plain.named_buffers(), fused.buffers(), strict=True):
        torch.testing.assert_close(c, b, rtol=0, atol=1e-12, msg=name)


def test_fused_equals_unfused_in_evaluation():
    plain, fused = _pair(dtype=torch.float32)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(fused.eval()(x), plain.eval()(x))


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return sum(storages.values())


def test_fused_keeps_one_activation_per_layer_where_the_two_layers_keep_two():
    plain, fused = _pair(dtype=torch.float32)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    layer_outputs = []  # what each fused layer must keep: its output, and nothing of its size
    hooks = [m.register_forward_hook(lambda m, i, o: layer_outputs.append(o.nbytes))
             for m in fused.modules() if isinstance(m, BatchNormLeakyReLU)]
    kept_fused = _saved_bytes(fused, x)
    for h in hooks:
        h.remove()
    assert len(layer_outputs) == LAYERS_WITH_AN_ACTIVATION
    # the two layers keep the BatchNorm's input as well: one more activation per layer
    assert _saved_bytes(plain, x) - kept_fused >= 0.99 * sum(layer_outputs)


def test_only_batchnorms_with_running_statistics_are_fused():
    with pytest.raises(ValueError, match="only affine BatchNorms with running statistics"):
        BatchNormLeakyReLU.replacing(nn.BatchNorm2d(4, affine=False), 0.2)
    untouched = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
    assert fuse_batchnorm_leakyrelu(untouched) == 0
    assert isinstance(untouched[1], nn.BatchNorm2d) and isinstance(untouched[2], nn.ReLU)
