"""Optimiser: parameter groups declared by the task, SparseAdam beside AdamW, clipping, schedules."""

import pytest
import torch

from mlmkit.engine.config import OptimConfig
from mlmkit.engine.optim import RowAdam, SplitOptimizer, clip_grad_norm, lr_factor, make_optimizer
from mlmkit.engine.task import ParamGroup


def test_lr_schedule_shapes():
    assert lr_factor(0.0, 0.1, "linear", 0.0) < 0.01
    assert lr_factor(0.1, 0.1, "linear", 0.0) == pytest.approx(1.0)
    assert lr_factor(1.0, 0.1, "linear", 0.0) == pytest.approx(0.0)
    assert lr_factor(0.55, 0.1, "cosine", 0.0) == pytest.approx(0.5)


class Net(torch.nn.Module):
    def __init__(self, sparse=False):
        super().__init__()
        self.memory = torch.nn.Embedding(16, 4, sparse=sparse)  # e.g. a hashed n-gram table
        self.emb = torch.nn.Embedding(16, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.out = torch.nn.Linear(4, 2)


def test_declared_groups_get_their_own_lr_and_weight_decay():
    net = Net()
    groups = [ParamGroup([net.memory.weight], lr_scale=5.0, weight_decay=0.0)]
    opt = make_optimizer(net, OptimConfig(lr=1e-3, weight_decay=0.1), torch.device("cpu"), groups)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    table = group_of[id(net.memory.weight)]
    assert table["lr"] == pytest.approx(5e-3) and table["lr_scale"] == 5.0 and table["weight_decay"] == 0.0
    assert group_of[id(net.emb.weight)]["weight_decay"] == 0.1 and group_of[id(net.out.weight)]["lr"] == pytest.approx(1e-3)
    assert group_of[id(net.out.bias)]["weight_decay"] == 0.0 and group_of[id(net.norm.weight)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    # without the declaration the table is an ordinary matrix: the engine knows no "n-gram"
    plain = make_optimizer(net, OptimConfig(lr=1e-3, weight_decay=0.1), torch.device("cpu"))
    assert {id(p): g for g in plain.param_groups for p in g["params"]}[id(net.memory.weight)]["weight_decay"] == 0.1


def test_sparse_tables_go_to_sparse_adam_with_their_scale():
    net = Net(sparse=True)
    opt = make_optimizer(net, OptimConfig(lr=1e-3), torch.device("cpu"), [ParamGroup([net.memory.weight], lr_scale=3.0)])
    assert isinstance(opt, SplitOptimizer)
    assert opt.sparse.param_groups[0]["params"] == [net.memory.weight]
    assert opt.sparse.param_groups[0]["lr"] == pytest.approx(3e-3) and opt.sparse.param_groups[0]["lr_scale"] == 3.0
    (net.out(net.norm(net.memory(torch.tensor([1, 2])) + net.emb(torch.tensor([3, 4])))) ** 2).sum().backward()
    before = net.memory.weight.detach().clone()
    opt.step()
    changed = (net.memory.weight != before).any(1).nonzero().flatten().tolist()
    assert changed == [1, 2]  # only the rows the batch touched


def test_row_adam_steps_as_torch_sparse_adam_and_shares_its_state():
    """RowAdam (gathers and scatters) against torch's SparseAdam: the same rows move by the same
    amounts over 5 steps of gradients that repeat rows (uncoalesced: 1 twice, 5 thrice) and skip
    others; untouched rows stay bit for bit; the state dict loads into SparseAdam and continues."""
    torch.manual_seed(0)
    ref = torch.nn.Embedding(12, 3, sparse=True)
    mine = torch.nn.Embedding(12, 3, sparse=True)
    mine.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.SparseAdam(ref.parameters(), lr=0.1)
    opt = RowAdam(mine.parameters(), lr=0.1)
    for step in range(5):
        ids = torch.tensor([1, 1, 5, 5, 5, step + 6])
        for emb, o in ((ref, opt_ref), (mine, opt)):
            o.zero_grad()
            (emb(ids) * torch.arange(18.0).reshape(6, 3)).sum().backward()
            o.step()
    assert torch.allclose(mine.weight, ref.weight, atol=1e-6)
    assert (mine.weight[1] != ref.weight.new_tensor(0)).all() and not torch.equal(mine.weight[5], ref.weight[5] * 0)
    assert torch.equal(mine.weight[[0, 2, 11]], ref.weight[[0, 2, 11]])  # never touched
    moved = torch.nn.Embedding(12, 3, sparse=True)
    moved.load_state_dict(ref.state_dict())
    back = torch.optim.SparseAdam(moved.parameters(), lr=0.1)
    back.load_state_dict(opt.state_dict())
    assert back.state[moved.weight]["step"] == 5
    assert torch.allclose(back.state[moved.weight]["exp_avg_sq"], opt_ref.state[ref.weight]["exp_avg_sq"], atol=1e-6)


def test_clip_grad_norm_counts_sparse_gradients_like_dense_ones():
    ids = torch.tensor([1, 2, 2, 5])  # a repeated row: its two contributions add up before the norm
    norms, grads = [], []
    for sparse in (False, True):
        emb = torch.nn.Embedding(8, 4, sparse=sparse)
        lin = torch.nn.Linear(4, 1)
        for p in (emb.weight, lin.weight, lin.bias):
            torch.nn.init.ones_(p)
        (lin(emb(ids)) ** 2).sum().backward()
        norms.append(clip_grad_norm([emb.weight, lin.weight, lin.bias], 0.5))
        grads.append(emb.weight.grad.to_dense() if sparse else emb.weight.grad)
    assert torch.allclose(norms[0], norms[1]) and norms[0] > 0.5
    assert torch.allclose(grads[0], grads[1])
