"""model.init: `keras` starts every implementation from Keras's weights and `orthogonal` from orthogonal recurrent
blocks, each the same for the same seed in every implementation; `pytorch` leaves
PyTorch's own initialisation exactly as it was."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnlab.cells import ARTICLE_CELLS, CELLS
from rnnlab.cli import build
from rnnlab.composition import compose_config
from rnnlab.data.text import PAD_ID
from rnnlab.models.network import KERAS_EMBEDDING_RANGE, RecurrentNetwork

ARTICLE_IMPLS = CELLS["lstm"].impls  # the three implementations every article cell has
VOCAB, E, H = 40, 6, 5


def network(cell: str, impl: str, init: str, seed: int = 0, bidirectional: bool = True, num_layers: int = 2,
            **settings) -> RecurrentNetwork:
    torch.manual_seed(seed)
    return RecurrentNetwork(cell=cell, impl=impl, init=init, vocab_size=VOCAB, embedding_dim=E, hidden_size=H,
                            num_layers=num_layers, bidirectional=bidirectional, **settings)


def layers(net: RecurrentNetwork):
    """(input size, {weight_ih, weight_hh, bias_ih, bias_hh}) per layer and direction, whatever the implementation."""
    for k, directions in enumerate(net.encoder.layers):
        for rnn in directions:
            parameters = {name.removesuffix("_l0"): p for name, p in rnn.named_parameters()}
            yield (E if k == 0 else net.encoder.output_size), parameters


def same_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameter names without the fused layers' _l0 suffix, so implementations can be compared."""
    return {name.removesuffix("_l0"): value for name, value in state.items()}


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
@pytest.mark.parametrize("cell", ARTICLE_CELLS)
def test_keras_recurrent_layers_are_glorot_orthogonal_with_zero_biases(cell, impl):
    net = network(cell, impl, "keras", forget_bias=1.0)
    gates = CELLS[cell].gates
    found = 0
    for input_size, p in layers(net):
        found += 1
        assert p["weight_ih"].shape == (gates * H, input_size) and p["weight_hh"].shape == (gates * H, H)
        # orthogonal over the whole [gates*H, H] matrix: orthonormal columns
        w_hh = p["weight_hh"].double()
        torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(H, dtype=torch.float64), rtol=0, atol=1e-5)
        # glorot-uniform over the whole [gates*H, input] matrix: within its bound, and filling it
        bound = math.sqrt(6 / (input_size + gates * H))
        assert 0.7 * bound < p["weight_ih"].abs().max() <= bound
        forget = torch.zeros(gates * H)
        if cell == "lstm":  # gates i, f, g, o: Keras's unit_forget_bias, as model.forget_bias says
            forget[H : 2 * H] = 1.0
        assert torch.equal(p["bias_ih"], forget) and torch.equal(p["bias_hh"], torch.zeros(gates * H))
    assert found == 4  # 2 layers x 2 directions


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
def test_keras_embedding_and_output_layer(impl):
    net = network("gru", impl, "keras")
    embedding = net.embedding.weight
    assert torch.equal(embedding[PAD_ID], torch.zeros(E))  # the padding row stays zero
    real = embedding[PAD_ID + 1 :]
    assert real.abs().max() <= KERAS_EMBEDDING_RANGE and real.abs().max() > 0.9 * KERAS_EMBEDDING_RANGE
    assert real.mean().abs() < 0.01 and (real != 0).all()
    bound = math.sqrt(6 / (net.encoder.output_size + 1))
    assert 0 < net.decoder.weight.abs().max() <= bound and torch.equal(net.decoder.bias, torch.zeros(1))
    # continuous features: no embedding, the rest the same way
    torch.manual_seed(0)
    features = RecurrentNetwork(cell="rnn", impl=impl, init="keras", input_size=2, hidden_size=H)
    w_hh = features.encoder.layers[0][0].state_dict()
    w_hh = next(v for k, v in w_hh.items() if k.startswith("weight_hh")).double()
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(H, dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ARTICLE_CELLS)
def test_the_same_seed_gives_every_implementation_the_same_keras_weights(cell, bidirectional):
    states = {impl: same_names(network(cell, impl, "keras", seed=3, bidirectional=bidirectional).state_dict())
              for impl in ARTICLE_IMPLS}
    for impl in ARTICLE_IMPLS[1:]:
        assert states[impl].keys() == states[ARTICLE_IMPLS[0]].keys()
        for name, value in states[ARTICLE_IMPLS[0]].items():
            assert torch.equal(states[impl][name], value), (impl, name)
    other_seed = same_names(network(cell, "fused", "keras", seed=4, bidirectional=bidirectional).state_dict())
    assert not torch.equal(other_seed["encoder.layers.0.0.weight_hh"], states["fused"]["encoder.layers.0.0.weight_hh"])
    # PyTorch's own init draws differently per implementation: the fused and explicit layers start elsewhere
    pytorch = {impl: same_names(network(cell, impl, "pytorch", seed=3).state_dict()) for impl in ("fused", "explicit")}
    assert torch.equal(pytorch["fused"]["embedding.weight"], pytorch["explicit"]["embedding.weight"])


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
@pytest.mark.parametrize("cell", ARTICLE_CELLS)
def test_orthogonal_init_makes_every_gates_recurrent_block_orthogonal(cell, impl):
    net = network(cell, impl, "orthogonal", forget_bias=1.0)
    gates, bound = CELLS[cell].gates, 1 / math.sqrt(H)
    found = 0
    for _, p in layers(net):
        found += 1
        blocks = p["weight_hh"].double().split(H)  # one per gate; the RNN's one: the whole W_hh, square
        assert len(blocks) == gates
        for block in blocks:
            assert block.shape == (H, H)
            torch.testing.assert_close(block @ block.T, torch.eye(H, dtype=torch.float64), rtol=0, atol=1e-5)
            assert not torch.equal(block, torch.eye(H, dtype=torch.float64))  # drawn, not the identity
        # the rest as PyTorch draws it: uniform within ±1/sqrt(H), filling the range
        assert 0.7 * bound < p["weight_ih"].abs().max() <= bound and p["bias_hh"].abs().max() <= bound
        if cell == "lstm":  # model.forget_bias still applies on top
            assert torch.equal(p["bias_ih"][H : 2 * H], torch.ones(H))
            assert torch.equal(p["bias_hh"][H : 2 * H], torch.zeros(H))
    assert found == 4  # 2 layers x 2 directions
    # PyTorch's own init does not start orthogonal: the test above can tell the two apart
    w_hh = next(layers(network(cell, impl, "pytorch")))[1]["weight_hh"].double()[:H]
    assert not torch.allclose(w_hh @ w_hh.T, torch.eye(H, dtype=torch.float64), atol=1e-2)


@pytest.mark.parametrize("cell", ARTICLE_CELLS)
def test_the_same_seed_gives_every_implementation_the_same_orthogonal_weights(cell):
    states = {impl: same_names(network(cell, impl, "orthogonal", seed=3).state_dict()) for impl in ARTICLE_IMPLS}
    for impl in ARTICLE_IMPLS[1:]:
        assert states[impl].keys() == states[ARTICLE_IMPLS[0]].keys()
        for name, value in states[ARTICLE_IMPLS[0]].items():
            assert torch.equal(states[impl][name], value), (impl, name)
    other_seed = same_names(network(cell, "sequence", "orthogonal", seed=4).state_dict())
    assert not torch.equal(other_seed["encoder.layers.0.0.weight_hh"], states["fused"]["encoder.layers.0.0.weight_hh"])


@pytest.mark.parametrize("impl", ["fused", "explicit"])
@pytest.mark.parametrize("cell", ARTICLE_CELLS)
def test_pytorch_init_is_what_the_pytorch_layers_start_from(cell, impl):
    """init=pytorch (the default) draws nothing of its own: the network equals PyTorch's layers built in the same
    order from the same seed, as before model.init existed."""
    default = network(cell, impl, "pytorch", seed=5, forget_bias=1.0).state_dict()
    after_default = torch.rand(4)

    torch.manual_seed(5)
    expected = {"embedding.weight": nn.Embedding(VOCAB, E, padding_idx=PAD_ID).weight}
    for k in range(2):
        for d in range(2):
            size = E if k == 0 else 2 * H
            if impl == "fused":
                rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](size, H, batch_first=True)
            else:
                rnn = CELLS[cell].layers["explicit"](size, H)
            for name, p in rnn.named_parameters():
                expected[f"encoder.layers.{k}.{d}.{name}"] = p
    decoder = nn.Linear(2 * H, 1)
    expected.update({"decoder.weight": decoder.weight, "decoder.bias": decoder.bias})
    with torch.no_grad():
        for name, p in expected.items():
            if cell == "lstm" and ".bias_" in name:
                p[H : 2 * H] = 1.0 if ".bias_ih" in name else 0.0
    assert default.keys() == expected.keys()
    for name, value in default.items():
        assert torch.equal(value, expected[name]), name
    assert torch.equal(torch.rand(4), after_default)  # nothing else drawn from the global generator


@pytest.mark.parametrize("impl", ARTICLE_IMPLS)
def test_keras_weights_keep_padding_out(impl):
    net = network("lstm", impl, "keras", pooling="mean").double()
    torch.manual_seed(1)
    tokens = torch.randint(PAD_ID + 1, VOCAB, (2, 7))
    tokens[1, 4:] = PAD_ID
    lengths = torch.tensor([7, 4])
    padded = net(tokens, lengths)
    alone = net(tokens[1:, :4], lengths[1:])
    torch.testing.assert_close(padded[1:], alone, rtol=0, atol=1e-12)


def test_the_article_experiment_starts_from_keras_weights():
    article, default = compose_config(["experiment=article", "model=rnn"]), compose_config(["model=rnn"])
    assert article.model.init == "keras" and default.model.init == "pytorch"
    torch.manual_seed(0)
    module = build(article.model, "model", task="binary", vocab_size=VOCAB)
    w_hh = module.net.encoder.layers[0][0].weight_hh_l0.double()
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(w_hh.shape[1], dtype=torch.float64), rtol=0, atol=1e-5)
    assert torch.equal(module.net.encoder.layers[0][0].bias_hh_l0, torch.zeros_like(w_hh[:, 0]))


def test_an_unknown_init_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^init='bogus' is unknown: choose pytorch \| keras \| orthogonal$"):
        network("gru", "fused", "bogus")
    with pytest.raises(ValueError, match=r"^init='orthogonal' sets recurrent weights, and cell 'bag' has none: "
                                         r"choose pytorch \| keras$"):
        RecurrentNetwork(cell="bag", impl="plain", init="orthogonal", vocab_size=VOCAB)
