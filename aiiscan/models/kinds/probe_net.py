"""The linear probe's network: one logit from the frozen embedding (``kinds/probe.py``).

The standardisation used while fitting is folded into the weights (``tasks/probe.py``), so the
file holds a plain ``classifier.weight`` / ``classifier.bias``. Score: the logit, so "higher =
more likely AI", as for every kind; 0 is p = 0.5.
"""

from __future__ import annotations

import torch
from torch import nn

from .probe import ProbeConfig


class ProbeHead(nn.Module):
    def __init__(self, config: ProbeConfig):
        super().__init__()
        self.config = config
        self.classifier = nn.Linear(config.feature_dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.autocast(feats.device.type, enabled=False):
            return self.classifier(feats.float()).squeeze(-1)


def expected(config: ProbeConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {"classifier.weight": ((1, config.feature_dim), torch.float32),
            "classifier.bias": ((1,), torch.float32)}


def tensors(head: ProbeHead) -> dict[str, torch.Tensor]:
    return {f"classifier.{k}": v for k, v in head.classifier.state_dict().items()}


def from_tensors(config: ProbeConfig, state: dict[str, torch.Tensor]) -> ProbeHead:
    head = ProbeHead(config)
    head.classifier.load_state_dict({k[len("classifier."):]: v for k, v in state.items()})
    return head


def bind(backbone, head: ProbeHead, owned: bool = False):  # noqa: ARG001
    """A probe reads the frozen backbone as it is: it shares the pass with CLIP-Flow heads."""
    return backbone, head
