"""Coupled dictionaries D_hr / D_lr (N x d), the hierarchical degradation dictionary D_deg (N x K x d),
their lookups in the d-dimensional lookup space, the straight-through estimator and the VQ losses.

Distances are always computed in fp32 (autocast off) and in bounded chunks: the hierarchical
lookup gathers only the K offsets of the chosen entry, never a (queries x N x K) table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dictsr_core.model.lowpass_base import gaussian_lowpass
from dictsr_core.model.precision import autocast_off
from dictsr_core.model.texture_gate import lr_roughness

NEVER = -(1 << 62)  # `last_used` of an entry that has not been chosen since it was (re)initialised


def nearest_entry(z: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """argmin_i ||z_t - c_i||^2 for each row of z [T, d] over codebook [M, d]; at most chunk_elements distances at once."""
    with autocast_off(z.device):
        z = z.detach().float()
        codebook = codebook.detach().float()
        sq_norms = codebook.pow(2).sum(1)
        rows = max(1, chunk_elements // codebook.shape[0])
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], rows):
            block = z[start : start + rows]
            # ||z||^2 is constant per row, so argmin over ||c||^2 - 2 z.c is the same argmin
            distances = torch.addmm(sq_norms.unsqueeze(0), block, codebook.t(), beta=1.0, alpha=-2.0)
            out[start : start + rows] = distances.argmin(1)
        return out


def nearest_offset(residual: torch.Tensor, offsets: torch.Tensor, entry: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """argmin_k ||r_t - D_deg(j_t, k)||^2 where r = z - D_lr(j): gathers only the K offsets of each chosen j."""
    with autocast_off(residual.device):
        residual = residual.detach().float()
        offsets = offsets.detach().float()
        per_row = offsets.shape[1] * offsets.shape[2]
        rows = max(1, chunk_elements // per_row)
        out = torch.empty(residual.shape[0], dtype=torch.long, device=residual.device)
        for start in range(0, residual.shape[0], rows):
            gathered = offsets[entry[start : start + rows]]  # [t, K, d]
            distances = (residual[start : start + rows].unsqueeze(1) - gathered).pow(2).sum(-1)
            out[start : start + rows] = distances.argmin(1)
        return out


def nearest_pair(z: torch.Tensor, content: torch.Tensor, offsets: torch.Tensor, chunk_elements: int = 1 << 24):
    """The (j, k) minimising ||z - (D_lr(j) + D_deg(j, k))||^2 over all N*K pairs (joint lookup)."""
    n, k, d = offsets.shape
    candidates = (content.detach().float().unsqueeze(1) + offsets.detach().float()).reshape(n * k, d)
    flat = nearest_entry(z, candidates, chunk_elements)
    return flat // k, flat % k


def cell_cross_entropy(z: torch.Tensor, entries: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax_i(-||z - e_i||^2 / s^2)[target]: how surely each row of z falls in its target's cell.

    s^2 is the mean squared distance from each target entry to its nearest other entry (no gradient), so the
    loss is scale-free: shrinking the lookup space cannot weaken it, while an MSE to the entry shrinks with it
    (cpu recipe: MSE 1.4e-4, the degradation moving an embedding 19x its margin to the cell boundary)."""
    with autocast_off(z.device):
        z, entries = z.float(), entries.detach().float()
        logits = torch.addmm(entries.pow(2).sum(1).unsqueeze(0), z, entries.t(), beta=1.0, alpha=-2.0)  # ||e||^2 - 2 z.e
        with torch.no_grad():
            used = target.unique()
            gaps = torch.cdist(entries[used], entries)
            gaps[torch.arange(len(used), device=gaps.device), used] = float("inf")
            spacing = gaps.min(1).values.pow(2).mean().clamp_min(1e-12)
        return F.cross_entropy(-logits / spacing, target)


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """[B, d, H, W] -> [B*H*W, d]"""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def to_map(rows: torch.Tensor, like_shape) -> torch.Tensor:
    """[B*H*W, d] -> [B, d, H, W]"""
    b, _, h, w = like_shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def discretization_loss(z: torch.Tensor, q: torch.Tensor, beta: float) -> torch.Tensor:
    """||sg[z] - q||^2 + beta ||z - sg[q]||^2: beta weighs the commitment term (VQ-VAE), not the codebook term."""
    return F.mse_loss(q, z.detach()) + beta * F.mse_loss(z, q.detach())


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return z + (q - z).detach()


@dataclass
class LookupResult:
    features: torch.Tensor  # quantised embedding projected back to the encoder's width, [B, C, h, w]
    indices: torch.Tensor  # content index map, [B, h, w]
    loss: torch.Tensor  # discretization loss of this branch
    offsets: torch.Tensor | None = None  # degradation index map k (branch 3), [B, h, w]
    z: torch.Tensor | None = None  # lookup-space embedding rows [B*h*w, d] (fp32, with grad)


def gate_indices(fine: torch.Tensor, coarse: torch.Tensor, roughness: torch.Tensor, gate: float) -> torch.Tensor:
    """The gated index map (model/texture_gate.py): `fine` where the roughness is at least `gate`, else `coarse`."""
    return torch.where(roughness >= gate, fine, coarse)


class CoupledDictionaries(nn.Module):
    """D_hr and D_lr share their index space; D_deg holds K offsets around each D_lr entry.

    One projection pair per side maps encoder features into the d-dim lookup space and back
    (ViT-VQGAN style). Usage is tracked per training step in `last_used` so that activated
    entries are counted over a rolling window of steps, not per batch.
    """

    def __init__(
        self,
        entries: int = 4096,
        offsets: int = 32,
        dim: int = 4,
        hr_channels: int = 512,
        lr_channels: int = 128,
        beta: float = 0.25,
        hierarchical: bool = True,
        coupled: bool = True,
        joint_lookup: bool = False,
        lookup_blur: float = 0.0,
        coarse_entries: int = 0,
        texture_gate: float = 0.0,
        init: str = "sample",
        deg_init_scale: float = 0.05,
        lookup_chunk: int = 1 << 24,
        hr_grad: str = "ste",
        consistency_form: str = "mse",
        cosine_lookup: bool = False,
        codebook_ema: float = 0.0,
        degraded_moves_content: bool = True,
        joint_lookup_train: bool = False,
    ):
        super().__init__()
        self.entries, self.num_offsets, self.dim = entries, offsets, dim
        self.beta, self.hierarchical, self.coupled, self.joint_lookup = beta, hierarchical, coupled, joint_lookup
        self.init, self.deg_init_scale, self.lookup_chunk = init, deg_init_scale, lookup_chunk
        self.lookup_blur, self.texture_gate = lookup_blur, texture_gate
        self.hr_grad, self.consistency_form = hr_grad, consistency_form
        # the method issue's remedies for a code the degradation moves (docs/method.md, ablation rows Q1-Q9)
        self.cosine_lookup, self.codebook_ema = cosine_lookup, codebook_ema
        self.degraded_moves_content, self.joint_lookup_train = degraded_moves_content, joint_lookup_train
        self.hr_in, self.hr_out = nn.Conv2d(hr_channels, dim, 1), nn.Conv2d(dim, hr_channels, 1)
        self.lr_in, self.lr_out = nn.Conv2d(lr_channels, dim, 1), nn.Conv2d(dim, lr_channels, 1)
        self.d_hr = nn.Parameter(torch.randn(entries, dim))
        # with codebook_ema the EMA writes D_lr and no loss reaches it: frozen for autograd (under DDP an unused
        # parameter that requires grad stops the first step)
        self.d_lr = nn.Parameter(torch.randn(entries, dim), requires_grad=codebook_ema == 0)
        if hierarchical:
            self.d_deg = nn.Parameter(torch.zeros(entries, offsets, dim))
            self.register_buffer("last_used_deg", torch.full((entries, offsets), NEVER, dtype=torch.long))
        else:
            self.register_parameter("d_deg", None)
            self.last_used_deg = None
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("clock", torch.zeros((), dtype=torch.long))  # training steps seen
        self.register_buffer("last_used", torch.full((entries,), NEVER, dtype=torch.long))
        self.register_buffer("born", torch.zeros(entries, dtype=torch.long))  # step of last (re)initialisation
        # a texture-gated code (model/texture_gate.py): the entries flat cells choose among; only derived runs have one
        self.register_buffer("coarse_keep", torch.arange(coarse_entries) if coarse_entries > 0 else None)
        # codebook_ema: D_lr is the running mean of the clean (HR-down) embeddings each entry wins (VQ-VAE-2)
        self.register_buffer("ema_count", torch.ones(entries) if codebook_ema > 0 else None)
        self.register_buffer("ema_sum", torch.zeros(entries, dim) if codebook_ema > 0 else None)

    @property
    def gated(self) -> bool:
        """Whether content_indices needs the LR roughness map: a coarse code with a texture gate."""
        return self.coarse_keep is not None and self.texture_gate > 0

    def roughness_for(self, lr: torch.Tensor, code_patch: int) -> torch.Tensor | None:
        """The roughness map content_indices needs for the LR batch `lr` (padded to the code grid) where the code is
        gated (model/texture_gate.lr_roughness), else None."""
        return lr_roughness(lr, code_patch) if self.gated else None

    # ---- the LR lookup space ----------------------------------------------------------------
    def lr_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """E_lr features -> the lookup space [B, d, h, w] (fp32): lr_in, on the unit sphere with cosine_lookup."""
        z = self.lr_in(features).float()
        return F.normalize(z, dim=1) if self.cosine_lookup else z

    @property
    def content_entries(self) -> torch.Tensor:
        """D_lr as the lookups see it (rows on the unit sphere with cosine_lookup): what analyses measure against."""
        return F.normalize(self.d_lr, dim=1) if self.cosine_lookup else self.d_lr

    # ---- lookups --------------------------------------------------------------------------
    def lookup_lr(self, features: torch.Tensor, degraded: bool) -> LookupResult:
        """Branch 2 (degraded=False): j over D_lr. Branch 3: j over D_lr, then k over D_deg(j, :) (eq. 4); with
        joint_lookup_train the nearest (j, k) pair instead. D_lr learns from branch 2 alone with codebook_ema or
        without degraded_moves_content (branch 3's codebook term then moves D_deg only: the paper's intent)."""
        z = to_rows(self.lr_embedding(features))
        content = self.content_entries
        k = None
        if degraded and self.hierarchical and self.joint_lookup_train:
            j, k = nearest_pair(z, content, self.d_deg, self.lookup_chunk)
        else:
            j = nearest_entry(z, content, self.lookup_chunk)
        q = content[j]
        if self.codebook_ema > 0 or (degraded and not self.degraded_moves_content):
            q = q.detach()
        if degraded and self.hierarchical:
            if k is None:
                k = nearest_offset(z - q.detach(), self.d_deg, j, self.lookup_chunk)
            q = q + self.d_deg[j, k]
        if self.training:
            self._mark_used(j, k)
            if self.codebook_ema > 0 and not degraded:
                self._ema_update(z.detach(), j)
        return self._quantized(z, q, self.lr_out, features.shape, j, k)

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, j: torch.Tensor, epsilon: float = 1e-5) -> None:
        """D_lr[i] <- EMA of the embeddings that chose i over EMA of their count, the count Laplace-smoothed so an
        unused entry does not divide by zero (VQ-VAE-2; vector-quantize-pytorch's EuclideanCodebook). Summed over
        the DDP ranks first, so every rank keeps the same D_lr."""
        counts = torch.bincount(j, minlength=self.entries).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, j, z.float())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        decay = self.codebook_ema
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + epsilon) / (total + self.entries * epsilon) * total
        self.d_lr.copy_(self.ema_sum / smoothed.unsqueeze(1))

    def _reset_ema(self, index: torch.Tensor | None = None) -> None:
        """The EMA state of entries `index` (all where None) restarts from their current rows, counted once."""
        if self.ema_count is None:
            return
        rows = slice(None) if index is None else index
        self.ema_count[rows] = 1.0
        self.ema_sum[rows] = self.d_lr[rows].float()

    def lookup_hr(self, features: torch.Tensor, indices: torch.Tensor | None) -> LookupResult:
        """Branch 1: coupled, q = D_hr(i) with i from the downscaled image; E1 (indices=None): own lookup."""
        z = to_rows(self.hr_in(features).float())
        i = nearest_entry(z, self.d_hr, self.lookup_chunk) if indices is None else indices.reshape(-1)
        if i.shape[0] != z.shape[0]:
            raise ValueError(f"HR embedding grid has {z.shape[0]} positions but the coupled index map has {i.shape[0]}")
        coupled = indices is not None
        return self._quantized(z, self.d_hr[i], self.hr_out, features.shape, i,
                               grad_to_entries=coupled and self.hr_grad in ("both", "entries"),
                               codebook_term=not (coupled and self.hr_grad == "entries"))

    def _quantized(self, z, q, project_out, shape, index, offset=None, grad_to_entries: bool = False,
                   codebook_term: bool = True) -> LookupResult:
        """Straight-through quantised rows projected back to a feature map, with the branch's index maps and loss.

        grad_to_entries: the value is still q, but the reconstruction gradient reaches the entries q as well as z
        (only where the index did not come from an argmin over z: the coupled HR branch). codebook_term False
        keeps only the commitment term: the entries then learn from the reconstruction alone (hr_grad "entries")."""
        grid = (shape[0], shape[2], shape[3])
        rows = q + (z - z.detach()) if grad_to_entries else straight_through(z, q)
        loss = discretization_loss(z, q, self.beta) if codebook_term else self.beta * F.mse_loss(z, q.detach())
        return LookupResult(
            features=project_out(to_map(rows, shape)),
            indices=index.view(grid),
            loss=loss,
            offsets=None if offset is None else offset.view(grid),
            z=z,
        )

    def consistency_loss(self, features: torch.Tensor, clean_indices: torch.Tensor) -> torch.Tensor:
        """For the embedding of a degraded copy of an image whose clean content indices are known (not in the
        paper): "mse" ||z - sg[D_lr(j_clean)]||^2, or "cross_entropy" over the D_lr cells (cell_cross_entropy).
        Either moves the encoder, never the dictionary."""
        z = to_rows(self.lr_embedding(features))
        target = clean_indices.reshape(-1)
        if self.consistency_form == "cross_entropy":
            return cell_cross_entropy(z, self.content_entries, target)
        return F.mse_loss(z, self.content_entries[target].detach().float())

    @torch.no_grad()
    def content_indices(self, features: torch.Tensor, keep: torch.Tensor | None = None,
                        roughness: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: the content index map of an LR embedding (eq. 4's j, or the joint rule's j). With `keep`
        (entry indices), the lookup sees only those entries, as a run coarsened to them does, and j indexes `keep`.
        With lookup_blur > 0 the embedding map is Gaussian-blurred first (model.lookup_blur). A gated code (`gated`)
        needs `roughness` ([B, h, w], model/texture_gate.lr_roughness of the LR image): cells at or above
        texture_gate choose among all entries, unblurred, the rest among coarse_keep, blurred; `keep` bypasses it."""
        grid = (features.shape[0], features.shape[2], features.shape[3])
        if keep is None and self.gated:
            if roughness is None or tuple(roughness.shape) != grid:
                raise ValueError(f"a texture-gated lookup (model.texture_gate) needs the LR roughness map of shape "
                                 f"{grid}, got {None if roughness is None else tuple(roughness.shape)}")
            return gate_indices(self.fine_indices(features), self.coarse_indices(features, self.coarse_keep),
                                roughness, self.texture_gate)
        return self._nearest_map(features, keep, self.lookup_blur)

    @torch.no_grad()
    def fine_indices(self, features: torch.Tensor) -> torch.Tensor:
        """A gated code's textured cells: the nearest of all N entries to the unblurred embedding, [B, h, w]."""
        return self._nearest_map(features, None, 0.0)

    @torch.no_grad()
    def coarse_indices(self, features: torch.Tensor, keep: torch.Tensor, blur: float | None = None) -> torch.Tensor:
        """A gated code's flat cells: the nearest of the entries `keep` to the embedding blurred by `blur` (default
        lookup_blur), as indices over all N entries, [B, h, w]."""
        return keep[self._nearest_map(features, keep, self.lookup_blur if blur is None else blur)]

    def _nearest_map(self, features: torch.Tensor, keep: torch.Tensor | None, blur: float) -> torch.Tensor:
        """[B, h, w] index map over `keep` (all entries where None) of the LR embedding blurred by `blur` (0: not)."""
        z = self.lr_embedding(features)
        if blur > 0:
            z = gaussian_lowpass(z, blur)
            z = F.normalize(z, dim=1) if self.cosine_lookup else z
        d_lr, d_deg = self.content_entries, self.d_deg
        if keep is not None:
            d_lr, d_deg = d_lr[keep], None if d_deg is None else d_deg[keep]
        rows = to_rows(z)
        if self.joint_lookup and self.hierarchical:
            j = nearest_pair(rows, d_lr, d_deg, self.lookup_chunk)[0]
        else:
            j = nearest_entry(rows, d_lr, self.lookup_chunk)
        return j.view(z.shape[0], z.shape[2], z.shape[3])

    def hr_features(self, indices: torch.Tensor) -> torch.Tensor:
        """D_hr(i) for an index map [B, h, w], projected out to the D_hr decoder's width."""
        q = F.embedding(indices, self.d_hr).permute(0, 3, 1, 2)
        return self.hr_out(q.to(self.hr_out.weight.dtype))

    # ---- usage, initialisation, restarts ---------------------------------------------------
    def _mark_used(self, j: torch.Tensor, k: torch.Tensor | None) -> None:
        self.last_used.scatter_(0, j, self.clock.expand_as(j))
        if k is not None:
            flat = self.last_used_deg.view(-1)
            flat.scatter_(0, j * self.num_offsets + k, self.clock.expand_as(j))

    def tick(self) -> None:
        """Advance the step clock (once per training step, on the device: no host sync), and put D_lr back on the
        unit sphere where the lookup is cosine (the optimiser step moved it off)."""
        self.clock += 1
        self._unit_content()

    @torch.no_grad()
    def _unit_content(self) -> None:
        if self.cosine_lookup:
            self.d_lr.copy_(F.normalize(self.d_lr, dim=1))

    def active_mask(self, window: int) -> torch.Tensor:
        return (self.clock - self.last_used) < window

    def activated(self, window: int) -> torch.Tensor:
        """Number of D_lr entries chosen within the last `window` steps (a 0-dim tensor)."""
        return self.active_mask(window).sum()

    def activated_offsets(self, window: int) -> torch.Tensor:
        if self.last_used_deg is None:
            return torch.zeros((), dtype=torch.long, device=self.clock.device)
        return ((self.clock - self.last_used_deg) < window).sum()

    @torch.no_grad()
    def initialize(self, z_lr: torch.Tensor, z_hr: torch.Tensor) -> None:
        """Coupled init from one batch: D_lr / D_hr entries from HR-down / HR embeddings at the same positions."""
        if z_lr.shape != z_hr.shape:
            raise ValueError(f"coupled initialisation needs embeddings at the same positions: {tuple(z_lr.shape)} vs {tuple(z_hr.shape)}")
        z_lr, z_hr = z_lr.float(), z_hr.float()
        if self.init == "kmeans":
            content, hr = coupled_kmeans(z_lr, z_hr, self.entries)
        else:
            pick = _sample_rows(z_lr.shape[0], self.entries, z_lr.device)
            content, hr = z_lr[pick], z_hr[pick]
        self.d_lr.copy_(content + _jitter(content))
        self._unit_content()
        self._reset_ema()
        self.d_hr.copy_(hr)
        if self.d_deg is not None:
            self.d_deg.copy_(torch.randn_like(self.d_deg) * self.deg_init_scale * z_lr.std())
            self.last_used_deg.fill_(NEVER)
        self.last_used.fill_(NEVER)
        self.born.fill_(int(self.clock))
        self.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead(self, z_lr: torch.Tensor, z_hr: torch.Tensor, window: int, min_age: int) -> int:
        """Entries unused for `window` steps (and older than `min_age`) restart from recent coupled embeddings."""
        dead = (self.clock - self.last_used >= window) & (self.clock - self.born >= min_age)
        index = dead.nonzero().squeeze(1)
        count = int(index.numel())
        if count:
            pick = _sample_rows(z_lr.shape[0], count, z_lr.device)
            self.d_lr[index] = z_lr[pick].float() + _jitter(z_lr[pick].float())
            self._unit_content()
            self._reset_ema(index)
            self.d_hr[index] = z_hr[pick].float()
            if self.d_deg is not None:
                self.d_deg[index] = torch.randn_like(self.d_deg[index]) * self.deg_init_scale * z_lr.float().std()
                self.last_used_deg[index] = NEVER
            self.last_used[index] = NEVER
            self.born[index] = self.clock
        return count


def _sample_rows(available: int, wanted: int, device) -> torch.Tensor:
    if available >= wanted:
        return torch.randperm(available, device=device)[:wanted]
    return torch.randint(available, (wanted,), device=device)


def _jitter(x: torch.Tensor) -> torch.Tensor:
    """Tiny noise so that entries drawn from the same embedding do not tie forever."""
    return torch.randn_like(x) * (1e-3 * x.std().clamp_min(1e-6))


@torch.no_grad()
def coupled_kmeans(z_lr: torch.Tensor, z_hr: torch.Tensor, k: int, iterations: int = 10):
    """k-means on the LR-side embeddings; each HR entry is the mean HR embedding of its LR cluster."""
    pick = _sample_rows(z_lr.shape[0], k, z_lr.device)
    centroids, hr = z_lr[pick].clone(), z_hr[pick].clone()
    for _ in range(iterations):
        assign = nearest_entry(z_lr, centroids)
        counts = torch.bincount(assign, minlength=k).float().unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, z_lr)
        hr_sums = torch.zeros_like(hr).index_add_(0, assign, z_hr)
        filled = counts.squeeze(1) > 0
        centroids[filled] = sums[filled] / counts[filled]
        hr[filled] = hr_sums[filled] / counts[filled]
    return centroids, hr


def _counted_kmeans(entries: torch.Tensor, distinct: torch.Tensor, counts: torch.Tensor, k: int, iterations: int,
                    seed: int) -> torch.Tensor:
    """k-means over the rows entries[distinct] (the distinct entries code cells chose), each one point weighted by
    `counts`, how many cells chose it: millions of cells of a one-index-per-pixel code cost as much as their <= N
    entries. The first centroids are k distinct chosen entries, drawn with `seed` in proportion to their cells
    (drawing cells could start two centroids on one entry, and one of them would stay empty); the global random
    generator is left as it was."""
    weights = counts.to(entries.dtype)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        first = torch.multinomial(weights, min(k, len(distinct)), replacement=False)
        if len(first) < k:  # fewer distinct entries than clusters: the extra clusters start on (and share) chosen ones
            first = torch.cat([first, torch.multinomial(weights, k - len(first), replacement=True)])
    finally:
        torch.random.set_rng_state(generator_state)
    points = entries[distinct]
    centroids = points[first].clone()
    for _ in range(iterations):
        assign = nearest_entry(points, centroids)
        mass = torch.bincount(assign, weights=weights, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points * weights.unsqueeze(1))
        filled = mass.squeeze(1) > 0
        centroids[filled] = sums[filled] / mass[filled]
    return centroids


@dataclass
class CoarseCode:
    group: torch.Tensor  # [N] long: each content entry's cluster
    representative: torch.Tensor  # [M] long: the entry that stands for each cluster


def coarse_code(entries: torch.Tensor, chosen: torch.Tensor, size: int, *, iterations: int = 25, seed: int = 0) -> CoarseCode:
    """M = `size` clusters of the N entries (rows of `entries`), k-means over the entries of `chosen` (indices, one
    per code cell); the identity where M >= N. Each cluster's representative is the chosen entry nearest its centroid:
    an entry no cell chose (its D_hr row never trained) could sit nearer, and would then decode the whole cluster."""
    n = entries.shape[0]
    if size < 1:
        raise ValueError(f"a coarse code needs at least 1 cluster, got {size}")
    if size >= n:
        identity = torch.arange(n, device=entries.device)
        return CoarseCode(identity, identity.clone())
    entries = entries.detach().float()
    chosen = chosen.reshape(-1)
    if chosen.numel() < size:
        raise ValueError(f"{chosen.numel()} chosen cells cannot make {size} clusters")
    distinct, counts = torch.unique(chosen, return_counts=True)
    centroids = _counted_kmeans(entries, distinct, counts, size, iterations, seed)
    return CoarseCode(group=nearest_entry(entries, centroids), representative=distinct[nearest_entry(centroids, entries[distinct])])


def split_kept_entry(entries: torch.Tensor, chosen: torch.Tensor, keep: torch.Tensor, which: int, *, parts: int = 2,
                     iterations: int = 25, seed: int = 0) -> torch.Tensor | None:
    """`keep` (kept entry indices) with keep[which] replaced by the representatives of `parts` k-means clusters of
    the chosen entries whose nearest kept entry it is: the code made finer only where those cells are, the other
    kept entries untouched. None when those cells choose fewer than `parts` distinct entries not kept already."""
    entries = entries.detach().float()
    distinct, counts = torch.unique(chosen.reshape(-1), return_counts=True)
    mine = nearest_entry(entries[distinct], entries[keep]) == which
    if int(mine.sum()) < parts:
        return None
    region = distinct[mine]
    centroids = _counted_kmeans(entries, region, counts[mine], parts, iterations, seed)
    # each part's representative among the region's own entries, so it is one of them and not another region's
    representatives = region[nearest_entry(centroids, entries[region])].unique()
    others = torch.cat([keep[:which], keep[which + 1 :]])
    representatives = representatives[~torch.isin(representatives, others)]
    if len(representatives) < parts:
        return None
    return torch.cat([others, representatives])
