"""A cell is one file: the registry finds it (in rnnlab/cells or through RNNLAB_CELLS), refuses a bad one with the
module's name, orders cells by `order`, and a cell defined outside rnnlab trains through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from rnnlab.cells import (ARTICLE_CELLS, BASELINE_NAMES, CELL_NAMES, CELLS, IMPL_NAMES, cell_rank, impl_rank,
                          load_cells)
from rnnlab.cells.api import Cell
from tests.helpers.project import PROJECT_ROOT, copy_project, run_dvc, run_module
from tests.helpers.training import runs, tiny_overrides

TEST_CELLS = Path(__file__).with_name("cells_for_test")  # toy_cell.py: a cell nothing in rnnlab names


def with_toy_cell(**extra: str) -> dict[str, str]:
    """The environment of a process that knows the toy cell: its folder on PYTHONPATH, its module in RNNLAB_CELLS."""
    path = os.pathsep.join([str(TEST_CELLS), str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "RNNLAB_CELLS": "toy_cell", **extra}


def test_the_cells_and_the_bag_come_from_their_own_files_in_order():
    assert list(CELLS) == ["rnn", "lstm", "gru", "mingru", "minlstm", "qrnn", "bag"]  # order 10-30, 40-60, 90
    assert ARTICLE_CELLS == ("rnn", "lstm", "gru") and BASELINE_NAMES == ("bag",)
    assert CELL_NAMES == ("rnn", "lstm", "gru", "mingru", "minlstm", "qrnn")
    assert IMPL_NAMES == ("fused", "explicit", "sequence", "scan")
    assert [CELLS[name].impls for name in ("mingru", "minlstm", "qrnn")] == [("explicit", "scan")] * 3
    assert [CELLS[name].recurrent_blocks for name in ("mingru", "minlstm", "qrnn")] == [0, 0, 0]
    assert CELLS["qrnn"].window == 2 and CELLS["minlstm"].forget_block == 0 and CELLS["qrnn"].forget_block == 1
    assert [CELLS[name].gates for name in CELL_NAMES] == [1, 4, 3, 2, 3, 2]  # the older name of input_blocks
    assert [CELLS[name].recurrent_blocks for name in ARTICLE_CELLS] == [1, 4, 3]  # None means: as input_blocks
    assert CELLS["lstm"].forget_block == 1 and CELLS["gru"].forget_block is None
    assert CELLS["bag"].impls == ("plain",) and not CELLS["bag"].recurrent and CELLS["bag"].gates == 0
    assert sorted(["bag", "zzz", "gru", "rnn"], key=cell_rank) == ["rnn", "gru", "bag", "zzz"]
    assert sorted(["plain", "scan", "fused"], key=impl_rank) == ["fused", "scan", "plain"]


def write_module(folder: Path, name: str, body: str) -> str:
    """A module of its own name each time (Python keeps a module once imported): returns that name."""
    name = f"{name}_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text("from rnnlab.cells.api import Cell\n" + textwrap.dedent(body))
    return name


def cell_source(name: str, order: int = 50, layers: str = '{"explicit": object}') -> str:
    return f"CELL = Cell(name={name!r}, title={name!r}, colour='k', summary='', layers={layers}, order={order})\n"


def test_cells_sort_by_order_then_name_and_modules_without_cell_are_skipped(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = [write_module(tmp_path, "api_b", cell_source("beta")), write_module(tmp_path, "api_a",
               cell_source("alpha")), write_module(tmp_path, "api_first", cell_source("first", order=1)),
               write_module(tmp_path, "api_layer", "class SomeLayer:\n    pass\n")]
    assert list(load_cells(modules)) == ["first", "alpha", "beta"]


@pytest.mark.parametrize("body, message", [
    ("CELL = 'rnn'\n", "cell module {bad}: CELL is a str, not a rnnlab.cells.api.Cell"),
    (cell_source("rnn"), "cell module {bad}: cell name 'rnn' is already defined by {good}"),
    (cell_source("new", layers='{"cudnn": object}'), "cell module {bad}: cell 'new' has layers for unknown "
                                                      "implementations ['cudnn']: choose from fused | explicit"),
    (cell_source("new", layers='{"plain": object}'), "cell module {bad}: cell 'new' has layers for unknown "
                                                      "implementations ['plain']"),
    ("import no_such_module_anywhere\n", "cell module {bad}: cannot be imported"),
])
def test_a_bad_cell_module_is_named(tmp_path, monkeypatch, body, message):
    monkeypatch.syspath_prepend(str(tmp_path))
    good = write_module(tmp_path, "api_good", cell_source("rnn"))
    bad = write_module(tmp_path, "api_bad", body)
    with pytest.raises(ValueError) as raised:
        load_cells([good, bad])
    assert str(raised.value).startswith(message.format(bad=bad, good=good))


def test_a_module_named_to_add_a_cell_must_define_one():
    with pytest.raises(ValueError, match="^cell module not_a_cell: defines no CELL$"):
        sys.path.insert(0, str(TEST_CELLS))
        try:
            load_cells(["not_a_cell"], required=["not_a_cell"])
        finally:
            sys.path.remove(str(TEST_CELLS))


def test_a_bad_module_named_in_rnnlab_cells_stops_a_command_with_one_line(tmp_path):
    env = with_toy_cell(RNNLAB_CELLS="toy_cell,not_a_cell")
    result = run_module("rnnlab.train", "model.cell=toy", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (1, "train: error: cell module not_a_cell: defines no CELL\n")
    assert not list(tmp_path.iterdir())  # stopped before anything was written
    # imported as a library, the error is the caller's to handle
    library = subprocess.run([sys.executable, "-c", "import rnnlab.cells"], capture_output=True, text=True,
                             env={**os.environ, **env})
    assert library.returncode == 1 and "ValueError: cell module not_a_cell: defines no CELL" in library.stderr


def test_a_cell_declares_what_the_flop_count_and_the_inits_need():
    cell = Cell("x", "x", "k", "", layers={"scan": object}, input_blocks=3, recurrent_blocks=0, window=2)
    assert (cell.gates, cell.recurrent_blocks, cell.window, cell.impls) == (3, 0, 2, ("scan",))
    assert cell.order == 50 and not cell.article and cell.forget_block is None
    with pytest.raises(AttributeError):
        cell.name = "y"  # frozen: a declaration, not a setting


def test_a_cell_from_rnnlab_cells_is_registered_with_its_impls():
    code = ("from rnnlab.cells import CELLS, CELL_NAMES, ARTICLE_CELLS, IMPL_NAMES\n"
            "import json\n"
            "print(json.dumps([list(CELLS), CELL_NAMES, ARTICLE_CELLS, IMPL_NAMES, CELLS['toy'].impls, "
            "CELLS['toy'].title]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **with_toy_cell()})
    assert result.returncode == 0, result.stderr[-2000:]
    names, recurrent, article, impls, toy_impls, title = json.loads(result.stdout)
    # order 50 (the default): after the article's cells, beside minLSTM's 50 by name, before the bag
    assert names == ["rnn", "lstm", "gru", "mingru", "minlstm", "toy", "qrnn", "bag"]
    assert recurrent == names[:-1] and article == ["rnn", "lstm", "gru"]
    assert impls == ["fused", "explicit", "sequence", "scan"] and toy_impls == ["explicit"] and title == "toy leaky RNN"


def test_a_cell_outside_rnnlab_trains_through_the_training_command(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model.cell=toy",
                        "model.impl=explicit", "model.num_layers=2", "model.bidirectional=true",
                        f"export_dir={tmp_path}/export", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path,
                        env=with_toy_cell())
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "toy-explicit-seed0"
    assert run.data.tags["cell"] == "toy" and run.data.tags["impl"] == "explicit"
    metrics = json.loads((tmp_path / "export" / "metrics.json").read_text())
    assert (metrics["cell"], metrics["impl"], metrics["epochs"]) == ("toy", "explicit", 2)
    E = H = 8  # tiny_overrides: two layers, two directions, each W_ih [H, in], W_hh [H, H] and two biases [H]
    recurrent = 2 * H * (E + H + 2) + 2 * H * (2 * H + H + 2)
    assert metrics["n_params"] > recurrent and 0 <= metrics["test_acc"] <= 1


def test_an_implementation_the_toy_cell_lacks_is_one_line(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model.cell=toy",
                        "model.impl=fused", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path, env=with_toy_cell())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("train: error: model: impl='fused' does not apply "
                                                      "to cell 'toy' (it has no fused layer): choose explicit")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every stage for real, two cells: several minutes on 2 loaded cores
def test_a_new_cell_file_flows_through_the_pipeline_into_compare(tmp_path, tiny_archive):
    """The toy cell as one new file of src/rnnlab/cells in a copy of the project: `dvc repro` trains it beside the
    RNN, and compare's table lists it; every train stage depends on it (the registry imports every cell file)."""
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    (project / "src" / "rnnlab" / "cells" / "toy.py").write_text((TEST_CELLS / "toy_cell.py").read_text())
    small = ["pipeline.cells=[rnn,toy]", "pipeline.impls=[explicit]", "pipeline.seeds=[0]", "pipeline.baselines=[]",
             "trainer.max_epochs=1", "data.batch_size=4", "model.embedding_dim=8", "model.hidden_size=8",
             "callbacks.progress_bar=null", "findings.gradients.length=6", "findings.adding.lengths=[10]",
             "findings.adding.seeds=[0]", "findings.adding.lr_search.lrs=[0.01]", "findings.adding.workers=1",
             "timing.rounds=2", "timing.warmup_batches=1", "timing.timed_batches=1",
             "+findings.adding.overrides=['trainer.max_steps=4','trainer.val_check_interval=2','data.train_size=64',"
             "'data.val_size=32','data.test_size=32','model.impl=explicit']",  # the toy cell has no fused layer
             f"logger.tracking_uri=sqlite:///{project}/mlflow.db"]
    composed = run_module("rnnlab.params", *small, cwd=project,
                          env={"PYTHONPATH": str(project / "src")})
    assert composed.returncode == 0, composed.stderr[-3000:]
    result = run_dvc("repro", cwd=project, env={"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha,
                                                "PYTHONPATH": str(project / "src")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for cell in ("rnn", "toy"):
        assert f"Running stage 'train@{cell}-explicit-0'" in result.stdout
        metrics = json.loads((project / "data" / "train" / f"{cell}-explicit-0" / "metrics.json").read_text())
        assert (metrics["cell"], metrics["impl"]) == (cell, "explicit")
    table = (project / "data" / "compare" / "table.md").read_text()
    assert "| rnn | explicit | 1 |" in table and "| toy | explicit | 1 |" in table, table
    status = run_dvc("status", "--json", cwd=project)
    (project / "src" / "rnnlab" / "cells" / "toy.py").write_text(
        (project / "src" / "rnnlab" / "cells" / "toy.py").read_text() + "# an edit\n")
    changed = json.loads(run_dvc("status", "--json", cwd=project).stdout)
    assert status.returncode == 0 and "train@toy-explicit-0" in changed and "train@rnn-explicit-0" in changed


class InputOnlyLayer(torch.nn.Module):
    """Gates from x_t only (recurrent_blocks 0): h_t = 0.5 h_{t-1} + 0.5 tanh(W x_t + b); takes `lengths` too."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight_ih = torch.nn.Parameter(torch.randn(hidden_size, input_size))
        self.bias_ih = torch.nn.Parameter(torch.randn(hidden_size))
        self.seen_lengths = None

    def forward(self, x, lengths=None):
        self.seen_lengths = lengths
        h, states = x.new_zeros(x.shape[0], self.weight_ih.shape[0]), []
        for x_t in torch.tanh(torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)).unbind(1):
            h = 0.5 * h + 0.5 * x_t
            states.append(h)
        return torch.stack(states, dim=1)


@pytest.fixture
def input_only_cell(monkeypatch):
    """A cell with recurrent_blocks 0 in the registry for one test (the encoder reads the registry's tables)."""
    import rnnlab.cells
    import rnnlab.models.encoder

    cell = Cell("xonly", "x only", "k", "", layers={"explicit": InputOnlyLayer}, input_blocks=1, recurrent_blocks=0)
    monkeypatch.setitem(rnnlab.cells.CELLS, "xonly", cell)
    monkeypatch.setattr(rnnlab.models.encoder, "CELL_NAMES", (*CELL_NAMES, "xonly"))
    return cell


def test_a_cell_whose_gates_read_x_only_takes_keras_init_and_refuses_orthogonal(input_only_cell):
    from rnnlab.bench.flops import flops_per_token
    from rnnlab.models.encoder import RecurrentEncoder

    settings = dict(cell="xonly", impl="explicit", input_size=6, hidden_size=5, bidirectional=True)
    with pytest.raises(ValueError, match=r"^init='orthogonal' sets recurrent weights W_hh, and cell 'xonly' has none"):
        RecurrentEncoder(**settings, init="orthogonal")
    torch.manual_seed(0)
    encoder = RecurrentEncoder(**settings, init="keras", forget_bias=1.0)  # no forget gate: forget_bias ignored
    for directions in encoder.layers:
        for layer in directions:
            assert torch.equal(layer.bias_ih, torch.zeros(5))  # Keras's zero biases
            bound = (6 / (6 + 5)) ** 0.5  # glorot-uniform over [H, E]
            assert 0 < layer.weight_ih.abs().max() <= bound
    lengths = torch.tensor([4, 2])
    out = encoder(torch.randn(2, 4, 6), lengths)
    assert out.shape == (2, 4, 10) and torch.equal(out[1, 2:], torch.zeros(2, 10))  # padding zeroed
    assert encoder.layers[0][0].seen_lengths is lengths  # a layer whose forward takes lengths gets them
    assert flops_per_token("xonly", 6, 5) == 3 * 2 * 5 * 6  # input blocks only: no H x H product
