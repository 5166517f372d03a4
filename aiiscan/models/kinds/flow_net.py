"""The CLIP-Flow head's network: dimension reduction, L2 normalisation, a RealNVP-style flow
(README, "CLIP-Flow"), its loss, and what ``headfile`` and ``scorer`` ask of a kind.

The affine coupling blocks are written here rather than taken from a library: FrEIA is
unmaintained, and zuko would do but brings a general API we would wrap for four lines of
maths. Writing them keeps the exact log|det J| visible and testable (see tests/test_flow.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...options import MODES
from .flow import FlowConfig


class AffineCoupling(nn.Module):
    """y = [x1, x2 * exp(s(x1)) + t(x1)], with s soft-clamped to (-clamp, clamp).

    The soft clamp bounds each block's log-det, which keeps the unbounded proxy term of
    the loss from driving scales to inf (docs/method.md). The last layer starts at zero, so
    every block starts as the identity.
    """

    def __init__(self, dim: int, hidden: int, clamp: float):
        super().__init__()
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Linear(self.d1, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * self.d2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x1).chunk(2, dim=1)
        return self.clamp * torch.tanh(raw_s / self.clamp), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, : self.d1], x[:, self.d1:]
        s, t = self._scale_shift(x1)
        return torch.cat([x1, x2 * torch.exp(s) + t], dim=1), s.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, : self.d1], y[:, self.d1:]
        s, t = self._scale_shift(y1)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=1)


class FlowHead(nn.Module):
    """phi(x) -> z = DR(phi)/||DR(phi)|| -> u = g^-1(z); score = (||u||^2 - 2 log|det J|) / (2C)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        self.dr = nn.Linear(config.feature_dim, config.dim)
        self.blocks = nn.ModuleList(
            AffineCoupling(config.dim, config.hidden, config.clamp) for _ in range(config.blocks)
        )
        gen = torch.Generator().manual_seed(config.permutation_seed)
        for i in range(config.blocks):
            # Fixed random permutations mix the halves between blocks; saved with the weights.
            self.register_buffer(f"perm{i}", torch.randperm(config.dim, generator=gen))

    def _perm(self, i: int) -> torch.Tensor:
        return getattr(self, f"perm{i}")

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.dr(features.to(self.dr.weight.dtype)), dim=1)

    def flow(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u = g^-1(z) and log|det du/dz|."""
        logdet = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        x = z
        for i, block in enumerate(self.blocks):
            x, ld = block(x[:, self._perm(i)])
            logdet = logdet + ld
        return x, logdet

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        x = u
        for i in reversed(range(len(self.blocks))):
            x = self.blocks[i].inverse(x)
            x = x[:, torch.argsort(self._perm(i))]
        return x

    def score_z(self, z: torch.Tensor) -> torch.Tensor:
        """Eq. 8 without its constant: the negative log-likelihood per dimension."""
        u, logdet = self.flow(z)
        return (u.pow(2).sum(dim=1) - 2.0 * logdet) / (2.0 * self.config.dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Anomaly scores of backbone features, in float32 even under autocast."""
        dev = features.device.type
        with torch.autocast(dev, enabled=False):
            return self.score_z(self.embed(features.float()))


def clip_flow_loss(score_natural: torch.Tensor | None, score_proxy: torch.Tensor | None,
                   mode: str, proxy_margin: float | None = None) -> torch.Tensor:
    """Eq. 6: mean s(natural) - mean s(proxy); P keeps only the proxy term, N only the natural.

    (The printed Eq. 7 has the signs the other way round; that is a typo.) The proxy term is
    unbounded below; ``proxy_margin`` caps each proxy's contribution at the margin (a hinge),
    off by default to stay faithful to the paper.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    terms = []
    if mode in ("N", "N+P"):
        if score_natural is None:
            raise ValueError(f"mode {mode} needs natural scores")
        terms.append(score_natural.mean())
    if mode in ("P", "N+P"):
        if score_proxy is None:
            raise ValueError(f"mode {mode} needs proxy scores")
        proxy = score_proxy if proxy_margin is None else torch.clamp(score_proxy, max=proxy_margin)
        terms.append(-proxy.mean())
    return torch.stack(terms).sum()


def expected(config: FlowConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the head's tensors, from its config alone."""
    with torch.device("meta"):  # the card's sizes are known before one byte is allocated
        head = FlowHead(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in head.state_dict().items()}


def tensors(head: FlowHead) -> dict[str, torch.Tensor]:
    return head.state_dict()


def from_tensors(config: FlowConfig, state: dict[str, torch.Tensor]) -> FlowHead:
    head = FlowHead(config)
    head.load_state_dict(state)
    return head


def bind(backbone, head: FlowHead, owned: bool = False):  # noqa: ARG001
    """A flow reads the frozen backbone as it is."""
    return backbone, head
