"""Per-epoch checkpoints for `train` and `finetune`, so an interrupted run resumes where it stopped.

Beside the output prefix W: ``W.ckpt.safetensors`` holds the model's trained tensors, the best
state so far and the Adam(W) moments; ``W.ckpt.json`` the epoch, history and a fingerprint of the
run. Both are written atomically and neither is a pickle, so a checkpoint that travelled between
machines is as safe to load as a head.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..files import atomic_output, atomic_write_bytes

State = dict[str, torch.Tensor]


class Checkpoint:
    """One run's checkpoint; ``what`` names the run in messages, ``error`` is the trainer's error."""

    def __init__(self, out: Path, what: str, error: type[Exception]):
        self.tensors = out.with_name(out.name + ".ckpt.safetensors")
        self.meta = out.with_name(out.name + ".ckpt.json")
        self.what, self.error = what, error

    def start(self, resume: bool, fingerprint: str, opt: torch.optim.Optimizer,
              echo: Callable[[str], None] | None) -> tuple[dict, State, State] | None:
        """The run to resume as (meta, model state, best state), its optimizer restored; or None.

        Without ``resume`` a checkpoint left by an interrupted run is refused rather than
        overwritten: hours of training are not thrown away by a repeated command."""
        if not resume:
            if self.meta.is_file():
                raise self.error(f"{self.meta} holds an interrupted {self.what} run: add --resume to "
                                 "continue it, or delete it (and its .ckpt.safetensors) to start over")
            return None
        if not self.meta.is_file():
            if echo:
                echo(f"no checkpoint {self.meta} to resume from: starting at epoch 1")
            return None
        meta = json.loads(self.meta.read_text())
        if meta.get("fingerprint") != fingerprint:
            raise self.error(f"{self.meta} belongs to a different run (config, backbone or images "
                             "changed); remove it or drop --resume")
        tensors = load_file(str(self.tensors))
        # "head." is how `train` named its tensors before this module: such a run still resumes.
        state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(("model.", "head."))}
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        for i, p in enumerate(_params(opt)):
            if f"adam.{i}.exp_avg" in tensors:
                opt.state[p] = {"step": torch.tensor(meta["adam_steps"][i]),
                                "exp_avg": tensors[f"adam.{i}.exp_avg"].to(p.device),
                                "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"].to(p.device)}
        if echo:
            echo(f"resuming after epoch {meta['epoch']}")
        return meta, state, best

    def save(self, state: State, best: State, opt: torch.optim.Optimizer, meta: dict) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
        tensors.update({f"best.{k}": v.contiguous() for k, v in best.items()})
        steps = []
        for i, p in enumerate(_params(opt)):
            st = opt.state.get(p)
            steps.append(float(st["step"]) if st else 0.0)
            if st:
                tensors[f"adam.{i}.exp_avg"] = st["exp_avg"].detach().cpu().contiguous()
                tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().contiguous()
        with atomic_output(self.tensors) as f:  # never a guessable temporary name
            f.write(save(tensors))
        atomic_write_bytes(self.meta, json.dumps(dict(meta, adam_steps=steps)).encode())

    def remove(self) -> None:
        self.tensors.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _params(opt: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimizer's parameters in a fixed order: the index names their moments on disk."""
    return [p for group in opt.param_groups for p in group["params"]]
