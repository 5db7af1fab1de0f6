import pytest
import torch

from dictsr_core.config import get_config
from dictsr_core.model import DictSR, DictSRInference
from dictsr_core.model.dictionaries import (
                                            CoupledDictionaries,
                                            discretization_loss,
                                            nearest_entry,
                                            nearest_offset,
                                            nearest_pair,
                                            )
from dictsr_core.performance.cost import count_macs, as_written


def tiny_model(ablation=None, **overrides):
    torch.manual_seed(0)
    cfg = get_config("tiny", ablation, overrides)
    model = DictSR(cfg.model)
    hr = torch.rand(2, 3, 32, 32)
    hr_down = torch.nn.functional.avg_pool2d(hr, 4)
    lr = torch.rand(2, 3, 8, 8)
    z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
    model.dictionaries.initialize(z_lr, z_hr)
    return model, hr, hr_down, lr


def test_branch_shapes():
    model, hr, hr_down, lr = tiny_model()
    out = model(hr, hr_down, lr)
    assert out.hr.shape == hr.shape and out.hr_down.shape == hr_down.shape and out.lr.shape == lr.shape
    b1, b2, b3 = out.lookups
    assert b1.indices.shape == (2, 4, 4)  # one code per 8x8 HR patch
    assert b2.indices.shape == (2, 4, 4)  # one code per 2x2 LR patch of the HR-down image
    assert b3.indices.shape == (2, 4, 4) and b3.offsets.shape == (2, 4, 4)
    assert b2.offsets is None
    sr = model.inference()(lr)
    assert sr.shape == (2, 3, 32, 32)


def test_lr_branches_of_different_sizes():
    model, hr, hr_down, _ = tiny_model()
    lr = torch.rand(3, 3, 12, 16)
    out = model(hr, hr_down, lr)
    assert out.lr.shape == lr.shape and out.lookups[2].indices.shape == (3, 6, 8)


def test_coupling_reuses_the_hr_down_index_map():
    model, hr, hr_down, lr = tiny_model()
    b1, b2, _ = model(hr, hr_down, lr).lookups
    assert torch.equal(b1.indices, b2.indices)


def test_e1_breaks_coupling():
    model, hr, hr_down, lr = tiny_model("E1")
    b1, b2, _ = model(hr, hr_down, lr).lookups
    own = nearest_entry(b1.z, model.dictionaries.d_hr)
    assert torch.equal(b1.indices.reshape(-1), own)
    assert not torch.equal(b1.indices, b2.indices)


def test_a1_has_no_degradation_dictionary():
    model, hr, hr_down, lr = tiny_model("A1")
    assert model.dictionaries.d_deg is None
    out = model(hr, hr_down, lr)
    assert out.lookups[2].offsets is None


def test_nearest_entry_matches_brute_force_with_small_chunks():
    g = torch.Generator().manual_seed(1)
    z, codebook = torch.randn(300, 4, generator=g), torch.randn(97, 4, generator=g)
    brute = torch.cdist(z.double(), codebook.double()).argmin(1)
    assert torch.equal(nearest_entry(z, codebook, chunk_elements=1024), brute)


def test_hierarchical_lookup_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    n, k, d = 50, 6, 4
    d_lr, d_deg = torch.randn(n, d, generator=g), 0.3 * torch.randn(n, k, d, generator=g)
    z = torch.randn(400, d, generator=g)
    j = nearest_entry(z, d_lr, chunk_elements=2048)
    kk = nearest_offset(z - d_lr[j], d_deg, j, chunk_elements=2048)
    for t in range(z.shape[0]):  # eq. 4 literally: j over D_lr, then k over D_lr(j) + D_deg(j, :)
        bj = int(((z[t] - d_lr) ** 2).sum(1).argmin())
        bk = int(((z[t] - (d_lr[bj] + d_deg[bj])) ** 2).sum(1).argmin())
        assert (int(j[t]), int(kk[t])) == (bj, bk)
    jj, kj = nearest_pair(z, d_lr, d_deg, chunk_elements=2048)
    joint = ((z[:, None, None, :] - (d_lr[:, None, :] + d_deg)[None]) ** 2).sum(-1).reshape(400, -1).argmin(1)
    assert torch.equal(jj * k + kj, joint)


def test_lookup_memory_is_bounded(monkeypatch):
    """No distance block exceeds the chunk budget, for N=4096, K=32 and a large query map."""
    budget = 1 << 16
    largest = {"addmm": 0, "gather": 0}
    real_addmm = torch.addmm

    def spy_addmm(*args, **kwargs):
        out = real_addmm(*args, **kwargs)
        largest["addmm"] = max(largest["addmm"], out.numel())
        return out

    monkeypatch.setattr(torch, "addmm", spy_addmm)
    dicts = CoupledDictionaries(entries=4096, offsets=32, dim=4, hr_channels=8, lr_channels=8, lookup_chunk=budget)
    z = torch.randn(20000, 4)
    j = nearest_entry(z, dicts.d_lr, budget)
    real_index = torch.Tensor.__getitem__

    def spy_getitem(self, index):
        out = real_index(self, index)
        if self is dicts.d_deg or (self.dim() == 3 and self.shape[1:] == (32, 4)):
            largest["gather"] = max(largest["gather"], out.numel())
        return out

    monkeypatch.setattr(torch.Tensor, "__getitem__", spy_getitem)
    nearest_offset(z - dicts.d_lr[j].detach(), dicts.d_deg, j, budget)
    assert 0 < largest["addmm"] <= budget
    assert 0 < largest["gather"] <= budget


def test_lookup_distances_are_fp32_under_autocast():
    dicts = CoupledDictionaries(entries=64, offsets=4, dim=4, hr_channels=8, lr_channels=8)
    z = torch.randn(100, 4)
    dicts.d_lr.data = z[:64].clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        j = nearest_entry(z[:64] + 1e-4, dicts.d_lr)  # bf16 could not separate these neighbours
    assert torch.equal(j, torch.arange(64))


def test_gradients_reach_both_encoders_through_the_ste():
    model, hr, hr_down, lr = tiny_model()
    out = model(hr, hr_down, lr)
    loss = sum(o.float().abs().mean() for o in (out.hr, out.hr_down, out.lr))  # reconstruction only
    loss.backward()
    for name in ("enc_hr", "enc_lr"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name


@pytest.mark.parametrize("hr_grad", ["both", "ste"])
def test_hr_reconstruction_gradient_reaches_d_hr_only_with_hr_grad_both(hr_grad):
    model, hr, hr_down, lr = tiny_model(**{"model.hr_grad": hr_grad})
    reference, *_ = tiny_model(ablation="G1" if hr_grad == "ste" else None)
    out = model(hr, hr_down, lr)
    assert torch.equal(out.hr, reference(hr, hr_down, lr).hr)  # the forward value is D_hr(i) either way
    out.hr.abs().mean().backward()  # HR reconstruction only, no L_dis
    used = out.lookups[0].indices.unique()
    d_hr_grad = model.dictionaries.d_hr.grad
    enc_grad = sum(p.grad.abs().sum() for p in model.enc_hr.parameters())
    assert enc_grad > 0  # E_hr learns from the reconstruction in both modes
    if hr_grad == "both":
        assert d_hr_grad[used].abs().sum(1).gt(0).all()
        unused = torch.ones(d_hr_grad.shape[0], dtype=torch.bool)
        unused[used] = False
        assert d_hr_grad[unused].abs().sum() == 0
    else:
        assert d_hr_grad is None or d_hr_grad.abs().sum() == 0


def test_beta_scales_only_the_commitment_term():
    z = torch.randn(10, 4, requires_grad=True)
    q = torch.randn(10, 4, requires_grad=True)
    grads = {}
    for beta in (0.25, 1.0):
        z.grad = q.grad = None
        discretization_loss(z, q, beta).backward()
        grads[beta] = (z.grad.clone(), q.grad.clone())
    # codebook term ||sg[z] - q||^2 moves q and does not depend on beta
    assert torch.allclose(grads[0.25][1], grads[1.0][1])
    # commitment term beta ||z - sg[q]||^2 moves z, in proportion to beta
    assert torch.allclose(grads[0.25][0] * 4, grads[1.0][0])
    assert torch.allclose(grads[1.0][1], 2 * (q - z).detach() / z.numel())


def test_usage_window_counts_recent_steps_only():
    model, hr, hr_down, lr = tiny_model()
    d = model.dictionaries
    model(hr, hr_down, lr)
    d.tick()
    used_first = int(d.activated(window=3))
    assert 0 < used_first <= 2 * 16 + 2 * 16
    for _ in range(3):
        d.tick()
    assert int(d.activated(window=3)) == 0  # nothing chosen in the last 3 steps
    assert int(d.activated(window=10)) == used_first


def test_dead_entry_restart_revives_unused_entries():
    model, hr, hr_down, lr = tiny_model()
    d = model.dictionaries
    model(hr, hr_down, lr)
    for _ in range(5):
        d.tick()
    dead_before = int((~d.active_mask(window=4)).sum())
    z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
    restarted = d.restart_dead(z_lr, z_hr, window=4, min_age=1)
    assert restarted == dead_before == d.entries
    # restarted entries are real embeddings, and HR/LR stay coupled at the same positions
    rows = ((d.d_lr.detach()[:, None] - z_lr[None]) ** 2).sum(-1).argmin(1)
    assert torch.allclose(d.d_hr.detach(), z_hr[rows], atol=1e-5)


@pytest.mark.parametrize("init", ["sample", "kmeans"])
def test_initialisation_is_coupled(init):
    cfg = get_config("tiny", overrides={"model.init": init})
    model = DictSR(cfg.model)
    hr = torch.rand(4, 3, 32, 32)
    hr_down = torch.nn.functional.avg_pool2d(hr, 4)
    z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
    model.dictionaries.initialize(z_lr, z_hr)
    d = model.dictionaries
    assert bool(d.initialized)
    # each D_lr entry is (near) an LR embedding / cluster centre; its D_hr twin is the HR embedding(s) there
    lr_dist = torch.cdist(d.d_lr.detach(), z_lr).min(1).values
    spread = z_lr.std()
    assert float(lr_dist.median()) < 0.5 * float(spread)


def test_paper_preset_cost_matches_the_paper():
    cfg = get_config("paper")
    with torch.device("meta"):
        inference = DictSRInference(cfg.model)
        x = torch.empty(1, 3, 128, 128)
    assert inference.conv_layers() == 18
    with as_written(inference):
        gmacs = count_macs(inference, x) / 1e9
    assert abs(gmacs - 129) / 129 <= 0.10, gmacs
    executed = count_macs(inference, x) / 1e9  # the same function with the upsampling convs folded
    assert executed < 0.8 * gmacs
    folded = inference.folded()
    with as_written(folded):
        assert count_macs(folded, x) / 1e9 == pytest.approx(gmacs)  # the paper's count ignores the fold
    stem_saving = executed - count_macs(folded, x) / 1e9
    assert stem_saving == pytest.approx(512 * 512 * 9 * 64 * 64 / 1e9, rel=0.01)  # one 512 -> 512 conv at the code grid


def test_training_step_cost_counts_forward_and_backward_and_the_lpips_share():
    """Paper batch: LPIPS-VGG runs forward on 24 outputs and 24 targets and backward (input gradients only,
    its weights are frozen) on the outputs: 3x one VGG16 trunk pass over 24 images of 256^2."""
    import torchvision

    from dictsr_core.performance.cost import train_step_cost

    cost = train_step_cost(get_config("paper"))
    with torch.device("meta"):
        trunk = torchvision.models.vgg16().features[:30]  # up to relu5_3, the last layer LPIPS reads
        vgg_flop = 2 * count_macs(trunk, torch.empty(24, 3, 256, 256))
    assert cost["train_step_perceptual_tflop"] == pytest.approx(3 * vgg_flop / 1e12, rel=0.01)
    without = train_step_cost(get_config("paper", overrides={"train.perceptual_weight": 0.0}))
    assert without["train_step_perceptual_tflop"] == 0
    assert cost["train_step_tflop"] == pytest.approx(without["train_step_tflop"] + cost["train_step_perceptual_tflop"], abs=2e-3)
    # the network alone: forward, then backward for activations and weights (about 2x the forward)
    with torch.device("meta"):
        model = DictSR(get_config("paper").model)
        hr, small = torch.empty(24, 3, 256, 256), torch.empty(24, 3, 64, 64)
    forward_tflop = 2 * count_macs(model, hr, small, small) / 1e12
    assert 2.5 < without["train_step_tflop"] / forward_tflop < 3.5
    half = train_step_cost(get_config("paper", overrides={"train.batch_size": 12}))
    assert half["train_step_tflop"] == pytest.approx(cost["train_step_tflop"] / 2, rel=0.01)


def _trained_like_inference(cfg):
    """An inference model whose weights are all nonzero (biases included), entries spread like real ones."""
    torch.manual_seed(3)
    model = DictSR(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.inference().eval()


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 10, 14)])
def test_folded_code_stem_is_the_same_function(shape):
    cfg = get_config("tiny").model
    inference = _trained_like_inference(cfg)
    folded = inference.folded()
    assert folded.stem is not None and inference.stem is None
    assert folded.dictionaries is inference.dictionaries  # a snapshot of the stem, the rest shared
    assert folded.folded() is folded
    x = torch.rand(*shape)
    with torch.no_grad():
        ref, out = inference(x), folded(x)
        assert torch.equal(folded.indices(x), inference.indices(x))
    assert out.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = folded(x).float()
    assert float((low - ref).abs().mean()) < 0.02  # bf16 autocast runs through the stem too


def test_folding_needs_an_identity_first_block():
    from dataclasses import replace

    cfg = replace(get_config("tiny").model, dec_hr_blocks=0)  # the decoder starts with an Upsample
    inference = DictSRInference(cfg)
    assert inference.folded() is inference


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_folded_upsampling_is_the_literal_one(memory_format):
    from dictsr_core.model.blocks import Upsample

    torch.manual_seed(0)
    up = Upsample(6, 5).to(memory_format=memory_format)
    x = torch.randn(2, 6, 7, 9).contiguous(memory_format=memory_format).requires_grad_()
    folded = up(x)
    folded.sum().backward()
    grad_folded, weight_grad_folded = x.grad.clone(), up.conv.weight.grad.clone()
    x.grad = None
    up.zero_grad()
    with as_written(up):
        literal = up(x)
        literal.sum().backward()
    assert folded.shape == (2, 5, 14, 18)
    assert torch.allclose(folded, literal, atol=1e-5)
    assert torch.allclose(grad_folded, x.grad, atol=1e-5)
    assert torch.allclose(weight_grad_folded, up.conv.weight.grad, atol=1e-4)


@pytest.mark.parametrize(
    "ablation,layers", [("F1", 18), ("F2", 26), ("F3", 26), ("F4", 18), ("D1", 3 + 9), ("D2", 9 + 15)]
)
def test_ablation_depths(ablation, layers):
    cfg = get_config("paper", ablation)
    with torch.device("meta"):
        model = DictSR(cfg.model)
    inference = model.inference()
    assert inference.conv_layers() == layers
    if ablation == "F1":
        from dictsr_core.model.blocks import count_convs

        assert count_convs(model.enc_hr) == 20
    if ablation == "F4":
        from dictsr_core.model.blocks import count_convs

        assert count_convs(model.dec_lr) == 14


@pytest.mark.slow
def test_training_objective_and_inference_trace_as_single_graphs():
    """No graph breaks: torch.compile sees the whole step (lookups, restarts' bookkeeping, losses) and the
    whole folded inference path as one graph each, so CUDA runs them without host round trips."""
    from dictsr_core.training.losses import DictSRLoss
    from dictsr_core.training.step import downscale_hr, training_objective

    torch._dynamo.reset()
    cfg = get_config("tiny").model
    model = DictSR(cfg).train()
    hr, lr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 8, 8)
    hr_down = downscale_hr(hr)
    model.dictionaries.initialize(*model.coupled_embeddings(hr, hr_down))
    objective = training_objective(model, DictSRLoss(None, perceptual_weight=0.0))
    explained = torch._dynamo.explain(objective)(hr, hr_down, lr)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    inference = model.inference().eval().folded()
    explained = torch._dynamo.explain(inference)(lr)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.slow
def test_compiled_folded_inference_matches_eager():
    torch._dynamo.reset()
    inference = _trained_like_inference(get_config("tiny").model).folded()
    x = torch.rand(2, 3, 16, 20)
    compiled = torch.compile(inference, fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x), inference(x), atol=1e-4)
