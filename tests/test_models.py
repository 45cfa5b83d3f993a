"""The cells: explicit (from the equations), sequence (the C++ kernel) and fused (PyTorch) agree; padding never
leaks; bad options fail."""

from __future__ import annotations

import warnings

import pytest
import torch

from rnnlab.cells import CELLS
from rnnlab.models.encoder import reverse_padded
from rnnlab.models.network import RecurrentNetwork
from rnnlab.models.sequence import load_kernel

ARTICLE_IMPLS = CELLS["lstm"].impls  # the three implementations every article cell has
VOCAB = 50


def fused_name(explicit_name: str) -> str:
    """encoder.layers.0.1.weight_ih -> encoder.layers.0.1.weight_ih_l0 (each fused module is one layer)."""
    if ".layers." in explicit_name:
        return explicit_name + "_l0"
    return explicit_name


def twin_models(cell: str, bidirectional: bool, num_layers: int = 2,
                impl: str = "explicit") -> tuple[RecurrentNetwork, RecurrentNetwork]:
    """A model of `impl` and a fused one with the same weights."""
    torch.manual_seed(0)
    settings = dict(embedding_dim=6, hidden_size=5, num_layers=num_layers, bidirectional=bidirectional)
    explicit = RecurrentNetwork(vocab_size=VOCAB, cell=cell, impl=impl, **settings).double()
    fused = RecurrentNetwork(vocab_size=VOCAB, cell=cell, impl="fused", **settings).double()
    fused.load_state_dict({fused_name(k): v for k, v in explicit.state_dict().items()})
    return explicit, fused


def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    tokens = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(2, VOCAB, (n,))
    return tokens, torch.tensor(lengths)


def test_the_sequence_kernel_builds():
    # Without it the sequence cells fall back to the explicit ones, and the tests below would not test it.
    assert load_kernel() is None


@pytest.mark.parametrize("impl", ["explicit", "sequence"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_explicit_and_sequence_agree_with_fused(cell, bidirectional, pooling, impl):
    explicit, fused = twin_models(cell, bidirectional, impl=impl)
    explicit.pooling = fused.pooling = pooling
    tokens, lengths = batch([7, 3, 5, 1])
    out_explicit, out_fused = explicit(tokens, lengths), fused(tokens, lengths)
    torch.testing.assert_close(out_explicit, out_fused, rtol=0, atol=1e-10)
    out_explicit.sum().backward()
    out_fused.sum().backward()
    fused_params = dict(fused.named_parameters())
    for name, param in explicit.named_parameters():
        torch.testing.assert_close(param.grad, fused_params[fused_name(name)].grad, rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_padding_never_leaks(impl, bidirectional, pooling):
    torch.manual_seed(0)
    model = RecurrentNetwork(vocab_size=VOCAB, cell="lstm", impl=impl, embedding_dim=6, hidden_size=5, num_layers=2,
                             bidirectional=bidirectional, pooling=pooling)
    model.eval()
    tokens, lengths = batch([9, 4])
    alone = model(tokens[1:, :4], lengths[1:])  # the short review with no padding at all
    padded = model(tokens, lengths)[1:]  # the same review padded to 9 in a batch
    torch.testing.assert_close(alone, padded, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_layer_computes_what_the_fused_layer_computes(cell, dtype):
    """One layer on a batch large enough to be split between threads (in blocks of at least 8 rows), in the
    training dtype too, where the kernel's own exp and tanh differ from PyTorch's by an ulp or two."""
    torch.manual_seed(0)
    sequence = CELLS[cell].layers["sequence"](7, 6).to(dtype)
    fused = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](7, 6, batch_first=True).to(dtype)
    fused.load_state_dict({name + "_l0": value for name, value in sequence.state_dict().items()})
    x = torch.randn(37, 11, 7, dtype=dtype) * 2
    weights = torch.randn(37, 11, 6, dtype=dtype)  # every output's gradient different
    x_sequence, x_fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="model.impl=sequence")  # the kernel ran, not the explicit cells
        out_sequence = sequence(x_sequence)
    out_fused = fused(x_fused)[0]
    (out_sequence * weights).sum().backward()
    (out_fused * weights).sum().backward()
    fused_params = dict(fused.named_parameters())
    pairs = [("output", out_sequence, out_fused), ("x", x_sequence.grad, x_fused.grad)]
    pairs += [(name, param.grad, fused_params[name + "_l0"].grad) for name, param in sequence.named_parameters()]
    for name, actual, expected in pairs:  # the weights' gradients sum 407 rows: relative to their size
        scale = 1e-12 if dtype == torch.float64 else 1e-6 * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(actual, expected, rtol=0, atol=scale, msg=name)


def test_sequence_runs_the_explicit_cells_off_cpu_and_says_so():
    layer = CELLS["lstm"].layers["sequence"](4, 3).to("meta")  # as on CUDA: the kernel is CPU-only
    with pytest.warns(RuntimeWarning, match="model.impl=sequence: the kernel runs on CPU only, and this input is on "
                                            "meta; running the explicit cells instead"):
        out = layer(torch.empty(2, 5, 4, device="meta"))
    assert out.shape == (2, 5, 3) and out.device.type == "meta"


def test_sequence_falls_back_to_the_explicit_cells_and_says_so():
    torch.manual_seed(0)
    sequence = CELLS["gru"].layers["sequence"](4, 3).to(torch.bfloat16)  # a dtype the kernel does not handle
    explicit = CELLS["gru"].layers["explicit"](4, 3).to(torch.bfloat16)
    explicit.load_state_dict(sequence.state_dict())
    x = torch.randn(2, 5, 4, dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="model.impl=sequence: the kernel handles float32 and float64, not "
                                            "torch.bfloat16; running the explicit cells instead"):
        out = sequence(x)
    assert torch.equal(out, explicit(x))


def test_reverse_padded_keeps_padding_in_place():
    x = torch.arange(1, 7, dtype=torch.float).reshape(2, 3, 1)  # rows [1, 2, 3], [4, 5, 6]
    reversed_ = reverse_padded(x, torch.tensor([3, 2]))
    assert reversed_[:, :, 0].tolist() == [[3, 2, 1], [5, 4, 6]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "cell='transformer' is unknown: choose rnn | lstm | gru | mingru | minlstm | qrnn | bag"),
        ({"impl": "cuda"}, "impl='cuda' is unknown: choose fused | explicit | sequence"),
        ({"pooling": "median"}, "pooling='median' is unknown: choose last | max | mean"),
        ({"hidden_size": 0}, "hidden_size=0 must be a positive integer"),
        ({"embedding_dim": -1}, "embedding_dim=-1 must be a positive integer"),
        ({"num_layers": 1.5}, "num_layers=1.5 must be a positive integer"),
        ({"dropout": 1.0}, "dropout=1.0 must be a number in [0, 1)"),
    ],
)
def test_bad_options_fail_with_the_choices(kwargs, message):
    with pytest.raises(ValueError) as error:
        RecurrentNetwork(**{"vocab_size": VOCAB, "cell": "lstm", **kwargs})
    assert str(error.value) == message


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
def test_forget_bias_starts_every_lstm_forget_gate_open(impl):
    torch.manual_seed(0)
    model = RecurrentNetwork(vocab_size=VOCAB, cell="lstm", impl=impl, embedding_dim=6, hidden_size=5, num_layers=2,
                             bidirectional=True, forget_bias=1.0)
    biases = {name: p for name, p in model.named_parameters() if ".bias_" in name}
    assert len(biases) == 2 * 2 * 2  # ih and hh, for 2 layers x 2 directions
    for name, bias in biases.items():
        i, f, g, o = bias.detach().chunk(4)
        assert torch.all(f == (1.0 if ".bias_ih" in name else 0.0)), name
        assert not torch.all(i == 0), name  # the other gates keep PyTorch's init


def test_forget_bias_is_ignored_by_cells_without_a_forget_gate():
    torch.manual_seed(0)
    default = RecurrentNetwork(vocab_size=VOCAB, cell="gru", embedding_dim=6, hidden_size=5).state_dict()
    torch.manual_seed(0)
    with_bias = RecurrentNetwork(vocab_size=VOCAB, cell="gru", embedding_dim=6, hidden_size=5, forget_bias=1.0).state_dict()
    assert all(torch.equal(default[name], with_bias[name]) for name in default)
