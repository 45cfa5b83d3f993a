"""The parallel-scan cells (minGRU, minLSTM, QRNN): each scan layer computes its step-by-step reference's function.

Every check runs on random inputs and random weights, with padding filled with random values (not zeros), so a
scan that leaked padding, looked ahead, or dropped a gradient would differ from the reference.
"""

from __future__ import annotations

import pytest
import torch

from rnnlab.cells.mingru import MinGRUScan, MinGRUStep
from rnnlab.cells.minlstm import MinLSTMScan, MinLSTMStep
from rnnlab.cells.qrnn import QRNNScan, QRNNStep
from rnnlab.models.encoder import reverse_padded
from rnnlab.models.scan import linear_recurrence

# (name, reference layer, scan layer, extra constructor arguments)
CELLS = [
    ("mingru", MinGRUStep, MinGRUScan, {}),
    ("minlstm", MinLSTMStep, MinLSTMScan, {}),
    ("qrnn", QRNNStep, QRNNScan, {}),
    ("qrnn-window3", QRNNStep, QRNNScan, {"window": 3}),
]
IDS = [name for name, *_ in CELLS]
EXACT = {"rtol": 1e-10, "atol": 1e-12}  # float64: the two layers differ only by rounding


def layer_pair(step_class, scan_class, kwargs, input_size=3, hidden_size=5, dtype=torch.float64, seed=0):
    """The reference with random weights, and a scan layer holding the very same weights."""
    torch.manual_seed(seed)
    step = step_class(input_size, hidden_size, **kwargs).to(dtype)
    with torch.no_grad():  # wider than the initialisation, so gates reach near 0 and 1 too
        for weight in step.parameters():
            weight.normal_(0.0, 1.0)
    scan = scan_class(input_size, hidden_size, **kwargs).to(dtype)
    scan.load_state_dict(step.state_dict())
    return step, scan


def random_batch(batch=5, steps=13, input_size=3, dtype=torch.float64, seed=1):
    """x [B, T, E] and lengths [B] with the full length, length 1 and random ones; padding holds random values."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, input_size, generator=generator, dtype=dtype)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0], lengths[1] = steps, 1
    return x, lengths


def outputs_and_gradients(layer, x, lengths, upstream):
    """The layer's outputs and the gradients of <outputs, upstream> for x and every parameter (by name)."""
    x = x.clone().requires_grad_()
    layer.zero_grad()
    out = layer(x, lengths)
    (out * upstream).sum().backward()
    gradients = {name: weight.grad.clone() for name, weight in layer.named_parameters()}
    gradients["x"] = x.grad.clone()
    return out.detach(), gradients


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["no-lengths", "lengths"])
def test_scan_equals_step_in_outputs_and_gradients(name, step_class, scan_class, kwargs, with_lengths):
    step, scan = layer_pair(step_class, scan_class, kwargs)
    x, lengths = random_batch()
    lengths = lengths if with_lengths else None
    upstream = torch.randn(x.shape[0], x.shape[1], 5, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    step_out, step_grads = outputs_and_gradients(step, x, lengths, upstream)
    scan_out, scan_grads = outputs_and_gradients(scan, x, lengths, upstream)
    torch.testing.assert_close(scan_out, step_out, **EXACT)
    assert set(scan_grads) == set(step_grads) == {"weight_ih", "bias_ih", "x"}
    for key, gradient in step_grads.items():
        assert gradient.abs().max() > 0, key  # a real gradient to compare, not zeros
        torch.testing.assert_close(scan_grads[key], gradient, **EXACT, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_padding_is_exact(name, step_class, scan_class, kwargs):
    """At real steps each review's outputs are those of the review run alone; after them the state is held."""
    step, scan = layer_pair(step_class, scan_class, kwargs)
    x, lengths = random_batch()
    for layer in (step, scan):
        out = layer(x, lengths)
        for review, length in enumerate(lengths.tolist()):
            alone = layer(x[review : review + 1, :length])[0]
            torch.testing.assert_close(out[review, :length], alone, **EXACT)
            # Every padded step holds the state at the last real token, so the last output is that state.
            held = out[review, length:]
            torch.testing.assert_close(held, alone[-1].expand_as(held), **EXACT)


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_reversed_direction_stays_within_each_review(name, step_class, scan_class, kwargs):
    """The backward direction, as the encoder runs it: each review reversed within its own length."""
    step, scan = layer_pair(step_class, scan_class, kwargs)
    x, lengths = random_batch()
    for layer in (step, scan):
        out = layer(reverse_padded(x, lengths), lengths)
        for review, length in enumerate(lengths.tolist()):
            alone = layer(x[review : review + 1, :length].flip(1))[0]
            torch.testing.assert_close(out[review, :length], alone, **EXACT)


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_causal(name, step_class, scan_class, kwargs):
    """Changing the input at step s changes no output before s (the QRNN's window looks back only)."""
    _, scan = layer_pair(step_class, scan_class, kwargs)
    x, _ = random_batch()
    changed = x.clone()
    changed[:, 6] += 1.0
    before, after = scan(x), scan(changed)
    torch.testing.assert_close(after[:, :6], before[:, :6], rtol=0, atol=0)
    assert (after[:, 6] - before[:, 6]).abs().max() > 1e-3


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_long_sequences_in_float32(name, step_class, scan_class, kwargs):
    """T = 2,000 in float32: finite outputs and gradients, and the scan still follows the loop."""
    step, scan = layer_pair(step_class, scan_class, kwargs, input_size=4, hidden_size=8, dtype=torch.float32)
    x, lengths = random_batch(batch=3, steps=2000, input_size=4, dtype=torch.float32)
    x = 3 * x  # large pre-activations: gates saturate at 0 and 1 (down to float32's limits)
    upstream = torch.randn(3, 2000, 8, generator=torch.Generator().manual_seed(2))
    step_out, step_grads = outputs_and_gradients(step, x, lengths, upstream)
    scan_out, scan_grads = outputs_and_gradients(scan, x, lengths, upstream)
    assert torch.isfinite(scan_out).all()
    torch.testing.assert_close(scan_out, step_out, rtol=1e-4, atol=1e-4)
    for key, gradient in step_grads.items():
        assert torch.isfinite(scan_grads[key]).all(), key
        torch.testing.assert_close(
            scan_grads[key], gradient, rtol=1e-3, atol=1e-3, msg=lambda m, key=key: f"{key}: {m}"
        )


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_state_dicts_interchange(name, step_class, scan_class, kwargs):
    step = step_class(3, 5, **kwargs)
    scan = scan_class(3, 5, **kwargs)
    assert {k: v.shape for k, v in step.state_dict().items()} == {k: v.shape for k, v in scan.state_dict().items()}
    assert not torch.equal(step.weight_ih, scan.weight_ih)  # two random draws, before loading
    scan.load_state_dict(step.state_dict())  # strict: same names, same shapes
    x = torch.randn(2, 7, 3)
    torch.testing.assert_close(scan(x), step(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "step_class", "scan_class", "kwargs"), CELLS, ids=IDS)
def test_parameters_and_initialisation(name, step_class, scan_class, kwargs):
    """One input projection, no recurrent weights, PyTorch's recurrent initialisation (uniform +-1/sqrt(H))."""
    hidden_size, input_size = 16, 3
    layer = scan_class(input_size, hidden_size, **kwargs)
    window = kwargs.get("window", 2 if step_class is QRNNStep else 1)
    shapes = {name: tuple(weight.shape) for name, weight in layer.named_parameters()}
    assert shapes == {
        "weight_ih": (layer.blocks * hidden_size, window * input_size),
        "bias_ih": (layer.blocks * hidden_size,),
    }
    for weight in layer.parameters():
        assert weight.abs().max() <= hidden_size**-0.5
        assert weight.abs().max() > 0.8 * hidden_size**-0.5  # spread over the range, not zeros


def sequential_recurrence(a, b):
    """h_t = a_t h_{t-1} + b_t, one step at a time."""
    h, states = torch.zeros_like(b[:, 0]), []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return torch.stack(states, dim=1)


@pytest.mark.parametrize("steps", [1, 2, 7, 8, 33])
def test_linear_recurrence_equals_the_loop(steps):
    """The scan primitive alone, in float64, at odd, even and power-of-two lengths, over extra trailing dims."""
    generator = torch.Generator().manual_seed(steps)
    a = torch.rand(3, steps, 2, 4, generator=generator, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, steps, 2, 4, generator=generator, dtype=torch.float64).requires_grad_()
    upstream = torch.randn(3, steps, 2, 4, generator=generator, dtype=torch.float64)
    scanned = linear_recurrence(a, b)
    looped = sequential_recurrence(a, b)
    torch.testing.assert_close(scanned, looped, **EXACT)
    # At T = 1 the state does not depend on a (h_0 = 0): its gradient is zero, materialised for the comparison.
    scan_grads = torch.autograd.grad((scanned * upstream).sum(), (a, b), allow_unused=True, materialize_grads=True)
    loop_grads = torch.autograd.grad((looped * upstream).sum(), (a, b), allow_unused=True, materialize_grads=True)
    for scan_grad, loop_grad in zip(scan_grads, loop_grads):
        torch.testing.assert_close(scan_grad, loop_grad, **EXACT)


def test_linear_recurrence_is_stable_in_float32():
    """T = 2,000 with a at exactly 1 (state held), tiny a (products underflow to 0) and large signed b."""
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(2, 2000, 6, generator=generator)
    a[:, :, 0] = 1.0  # a running sum over 2,000 steps
    a[:, :, 1] = 1e-30  # every product underflows
    b = 100 * torch.randn(2, 2000, 6, generator=generator)
    a.requires_grad_()
    b.requires_grad_()
    scanned = linear_recurrence(a, b)
    scanned.square().sum().backward()
    assert torch.isfinite(scanned).all() and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    expected = sequential_recurrence(a.detach().double(), b.detach().double())
    torch.testing.assert_close(scanned.double(), expected, rtol=1e-4, atol=1e-2)


# --- Through the model: the registry's scan cells in the network every run builds ---------------------------------

SCAN_CELLS = ("mingru", "minlstm", "qrnn")


@pytest.mark.parametrize("cell", SCAN_CELLS)
def test_network_scan_equals_explicit_bidirectional_two_layers(cell):
    """model.impl=scan and model.impl=explicit, same weights, two bidirectional layers over padded reviews: the
    same logits and the same gradients (float64), so the pipeline may train the scan and mean the equations."""
    from rnnlab.models.network import RecurrentNetwork

    settings = dict(cell=cell, embedding_dim=4, hidden_size=3, num_layers=2, bidirectional=True, pooling="last",
                    vocab_size=11)
    torch.manual_seed(0)
    explicit = RecurrentNetwork(impl="explicit", **settings).double()
    scan = RecurrentNetwork(impl="scan", **settings).double()
    scan.load_state_dict(explicit.state_dict())
    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor([9, 1, 5, 7])
    tokens = torch.randint(1, 11, (4, 9), generator=generator)
    tokens[torch.arange(9)[None, :] >= lengths[:, None]] = 0  # PAD_ID after each review's end
    results = []
    for network in (explicit, scan):
        logits = network(tokens, lengths)
        logits.square().sum().backward()
        results.append((logits.detach(), {name: p.grad for name, p in network.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], **EXACT)
    assert results[0][1].keys() == results[1][1].keys()
    for name, gradient in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], gradient, **EXACT, msg=name)


@pytest.mark.parametrize("cell, rows", [("minlstm", slice(0, 3)), ("qrnn", slice(3, 6))])
def test_forget_bias_lands_on_the_forget_block(cell, rows):
    from rnnlab.models.encoder import RecurrentEncoder

    encoder = RecurrentEncoder(cell=cell, impl="scan", input_size=2, hidden_size=3, forget_bias=1.5)
    bias = encoder.layers[0][0].bias_ih.detach()
    assert torch.equal(bias[rows], torch.full((3,), 1.5))
    others = torch.ones(len(bias), dtype=torch.bool)
    others[rows] = False
    assert not torch.any(bias[others] == 1.5)
