import pytest
import torch

from aiiscan.models.kinds.flow import FlowConfig
from aiiscan.models.kinds.flow_net import FlowHead, clip_flow_loss


def _head(seed=0, dim=8, feature_dim=16, dtype=torch.float32):
    torch.manual_seed(seed)
    head = FlowHead(FlowConfig(feature_dim=feature_dim, dim=dim, blocks=4, hidden=32))
    # Non-trivial couplings: the zero init would make every block the identity.
    for block in head.blocks:
        torch.nn.init.normal_(block.net[-1].weight, std=0.3)
        torch.nn.init.normal_(block.net[-1].bias, std=0.3)
    return head.to(dtype)


def test_flow_round_trip():
    head = _head()
    z = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    u, _ = head.flow(z)
    assert not torch.allclose(u, z)
    assert torch.allclose(head.inverse(u), z, atol=1e-5)


def test_logdet_matches_autograd_jacobian():
    head = _head(dtype=torch.float64)
    z = torch.randn(5, 8, dtype=torch.float64)
    _, logdet = head.flow(z)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda x: head.flow(x[None])[0][0], z[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-9)


def test_score_is_eq8():
    head = _head(dtype=torch.float64)
    feats = torch.randn(7, 16, dtype=torch.float64)
    z = head.embed(feats)
    u, logdet = head.flow(z)
    expected = (u.pow(2).sum(1) - 2 * logdet) / (2 * 8)
    assert torch.allclose(head.score_z(z), expected)
    assert torch.allclose(z.norm(dim=1), torch.ones(7, dtype=torch.float64))


def test_soft_clamp_bounds_logdet():
    head = _head()
    for block in head.blocks:
        torch.nn.init.constant_(block.net[-1].bias, 50.0)
    _, logdet = head.flow(torch.randn(4, 8))
    assert (logdet.abs() <= 4 * 4 * head.config.clamp + 1e-4).all()


def test_loss_signs_per_mode():
    nat, prox = torch.tensor([1.0, 3.0]), torch.tensor([5.0, 7.0])
    assert clip_flow_loss(nat, prox, "N+P").item() == pytest.approx(2.0 - 6.0)
    assert clip_flow_loss(None, prox, "P").item() == pytest.approx(-6.0)
    assert clip_flow_loss(nat, None, "N").item() == pytest.approx(2.0)
    assert clip_flow_loss(nat, prox, "N+P", proxy_margin=6.0).item() == pytest.approx(2.0 - 5.5)
    with pytest.raises(ValueError):
        clip_flow_loss(None, prox, "N+P")


def test_one_np_step_moves_scores_the_right_way():
    torch.manual_seed(0)
    head = FlowHead(FlowConfig(feature_dim=16, dim=8, blocks=4, hidden=32))
    nat = torch.randn(64, 16) + 1.0
    prox = torch.randn(64, 16) - 1.0
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    before_n, before_p = head(nat).mean().item(), head(prox).mean().item()
    loss = clip_flow_loss(head(nat), head(prox), "N+P")
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert head(nat).mean().item() < before_n
    assert head(prox).mean().item() > before_p


def test_head_runs_float32_under_autocast():
    head = _head()
    feats = torch.randn(4, 16).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats)
    assert out.dtype == torch.float32
