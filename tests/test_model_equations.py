"""The paper's equations, each against an independent computation: the straight-through estimator's identity,
eq. 4's two-stage lookup and where its gradients go (D_deg only at the chosen (j, k), never from branch 2), the
discretization loss and the total loss L = L_rec + lambda * sum L_dis by value."""

import torch
import torch.nn.functional as F

from dictsr_core.model.dictionaries import CoupledDictionaries, straight_through, to_rows
from dictsr_core.model.dictsr import BranchOutputs
from dictsr_core.training.losses import DictSRLoss


def test_the_straight_through_gradient_of_z_is_exactly_the_gradient_at_q():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=gen, requires_grad=True)
    q = torch.randn(6, 4, generator=gen)
    weights = torch.randn(4, 3, generator=gen)

    def loss(x):
        return ((x @ weights).tanh() ** 2).sum()

    out = straight_through(z, q)
    assert torch.allclose(out, q, rtol=0, atol=1e-6)  # the forward value is the code (z + (q - z): rounding only)
    loss(out).backward()
    at_q = q.clone().requires_grad_(True)
    loss(at_q).backward()  # dL/dq, computed on its own
    assert torch.allclose(z.grad, at_q.grad, rtol=1e-6, atol=1e-6)  # identity: no factor, no bias


def dictionaries(entries=3, offsets=2, beta=0.25) -> CoupledDictionaries:
    d = CoupledDictionaries(entries=entries, offsets=offsets, dim=2, hr_channels=2, lr_channels=2, beta=beta)
    with torch.no_grad():
        for conv in (d.lr_in, d.lr_out, d.hr_in, d.hr_out):
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            conv.bias.zero_()
        d.d_lr.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
        d.d_deg.copy_(torch.tensor([[[0.5, 0.0], [0.0, 0.5]], [[-0.5, 0.0], [0.0, -0.5]], [[0.3, 0.3], [-0.3, -0.3]]]))
        d.initialized.fill_(True)
    return d.train()


def grid(points) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).t().reshape(1, 2, 1, len(points)).requires_grad_(True)


def test_eq4_picks_j_over_d_lr_first_then_k_among_its_offsets():
    d = dictionaries()
    # 3.0 is nearer entry 1 (4, 0) than entry 0; among entry 1's offsets, (-0.5, 0) fits (3.4, 0) best
    out = d.lookup_lr(grid([[3.4, 0.1], [0.2, 0.6], [0.1, 3.6]]), degraded=True)
    assert out.indices.flatten().tolist() == [1, 0, 2] and out.offsets.flatten().tolist() == [0, 1, 1]
    z = to_rows(grid([[3.4, 0.1], [0.2, 0.6], [0.1, 3.6]])).detach()
    for row, (j, k) in enumerate(zip(out.indices.flatten(), out.offsets.flatten())):  # brute force over j, then k
        assert j == torch.cdist(z[row:row + 1], d.d_lr.detach()).argmin()
        assert k == ((z[row] - d.d_lr[j].detach() - d.d_deg[j].detach()) ** 2).sum(1).argmin()


def test_d_deg_gets_gradient_only_at_the_chosen_pairs_and_never_from_branch_2():
    d = dictionaries()
    features = grid([[3.4, 0.1], [0.2, 0.6]])
    out = d.lookup_lr(features, degraded=True)
    (out.features.sum() + out.loss).backward()
    chosen = {(int(j), int(k)) for j, k in zip(out.indices.flatten(), out.offsets.flatten())}
    nonzero = {(int(j), int(k)) for j, k in (d.d_deg.grad.abs().sum(-1) > 0).nonzero()}
    assert nonzero == chosen == {(1, 0), (0, 1)}
    d.zero_grad()
    clean = d.lookup_lr(grid([[3.4, 0.1], [0.2, 0.6]]), degraded=False)
    (clean.features.sum() + clean.loss).backward()
    assert d.d_deg.grad is None or not d.d_deg.grad.any()
    assert d.d_lr.grad[[1, 0]].abs().sum() > 0 and not d.d_lr.grad[2].any()  # branch 2 moves only the chosen entries


def test_the_discretization_loss_and_its_gradients_by_value():
    beta = 0.25
    d = dictionaries(beta=beta)
    features = grid([[3.4, 0.1], [0.2, 0.6]])
    out = d.lookup_lr(features, degraded=True)
    z = to_rows(features).detach()
    q = torch.stack([d.d_lr[1] + d.d_deg[1, 0], d.d_lr[0] + d.d_deg[0, 1]]).detach()
    # ||sg[z] - q||^2 + beta ||z - sg[q]||^2, each a mean over the 2 x 2 numbers
    expected = ((q - z) ** 2).mean() * (1 + beta)
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    # the codebook term moves the entries toward z: d/dq mean((q - z)^2) = 2 (q - z) / 4, to D_lr(j) and D_deg(j, k)
    assert torch.allclose(d.d_deg.grad[1, 0], 2 * (q[0] - z[0]) / 4)
    assert torch.allclose(d.d_lr.grad[1], 2 * (q[0] - z[0]) / 4)
    # the commitment term moves z toward q, weighted by beta
    assert torch.allclose(features.grad.reshape(2, 2).t(), beta * 2 * (z - q) / 4)


def test_the_total_loss_is_the_reconstruction_plus_lambda_times_the_three_discretization_losses():
    gen = torch.Generator().manual_seed(1)
    hr, hr_down, lr = (torch.rand(2, 3, s, s, generator=gen) for s in (16, 4, 4))
    recon = [torch.rand(2, 3, s, s, generator=gen) for s in (16, 4, 4)]

    class Lookup:
        def __init__(self, value):
            self.loss = torch.tensor(value)

    out = BranchOutputs(hr=recon[0], hr_down=recon[1], lr=recon[2], lookups=(Lookup(0.1), Lookup(0.2), Lookup(0.3)))
    terms = DictSRLoss(perceptual=None, perceptual_weight=0.0, dis_weight=10.0)(out, hr, hr_down, lr)
    rec = sum((a - b).abs().mean() for a, b in zip(recon, (hr, hr_down, lr)))  # three L1 terms, written out
    assert torch.allclose(terms["rec"], rec)
    assert torch.allclose(terms["total"], rec + 10.0 * (0.1 + 0.2 + 0.3))
    with_consistency = BranchOutputs(hr=recon[0], hr_down=recon[1], lr=recon[2],
                                     lookups=(Lookup(0.1), Lookup(0.2), Lookup(0.3)), consistency=torch.tensor(0.05))
    terms = DictSRLoss(perceptual=None, perceptual_weight=0.0, dis_weight=10.0, consistency_weight=2.0)(
        with_consistency, hr, hr_down, lr)
    assert torch.allclose(terms["total"], rec + 10.0 * 0.6 + 2.0 * 0.05)
    assert torch.allclose(F.l1_loss(recon[0], hr), terms["l1_hr"])
