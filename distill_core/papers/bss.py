"""Boundary-supporting samples (Heo, Lee, Yun, Choi; AAAI 2019), METHODS.md section 2, for the pages.

- :func:`bss_paths`: BSS crafted on a teacher from each point of a 2-D set, every iterate kept;
- :func:`bss_toward_each_class`: the BSS of one image towards every other class.

The distillation method itself is :mod:`distill_core.methods.bss`; the attack step is
:func:`distill_core.attacks.craft_bss`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._torch import eval_mode, logits_of, predict
from ..attacks import craft_bss, sample_bss_targets


def bss_paths(teacher: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *, seed: int = 0,
              eta: float = 0.3, eps: float = 1e-4, max_steps: int = 10) -> dict[str, np.ndarray]:
    """BSS crafted on the teacher from each point of ``x`` (N, D), every iterate kept.

    ``target`` (N,) gives the class k each point walks towards; ``None`` draws it with BSS's
    rule (``attacks.sample_bss_targets``, seeded). Returns numpy arrays ``path``
    (max_steps + 1, N, D) with ``path[0] = x``, ``base`` (N,) the teacher's class at ``x``,
    ``target`` (N,), ``final_pred`` (N,) the teacher's class at the last iterate and
    ``steps`` (N,) how many steps moved each point before it stopped.
    """
    with eval_mode(teacher):
        logits = logits_of(teacher, x)
        base = logits.argmax(1)
        if target is None:
            target = sample_bss_targets(torch.softmax(logits, 1).cpu(), torch.Generator().manual_seed(seed))
        target = target.to(x.device)
        if bool((target == base).any()):
            raise ValueError("a BSS target must differ from the teacher's class at the base point")
        x_bss, path = craft_bss(teacher, x, target=target, eta=eta, eps=eps, max_steps=max_steps, return_path=True)
        final = predict(teacher, x_bss)
    moved = path[1:].ne(path[:-1]).flatten(2).any(2)           # (max_steps, N)
    return {"path": path.detach().cpu().numpy(), "base": base.cpu().numpy(), "target": target.cpu().numpy(),
            "final_pred": final.cpu().numpy(), "steps": moved.sum(0).cpu().numpy()}


def bss_toward_each_class(teacher: nn.Module, x: torch.Tensor, *, eta: float = 0.3, eps: float = 1e-4,
                          max_steps: int = 10) -> dict[str, np.ndarray]:
    """The BSS of one image towards every class other than the teacher's (Heo et al. 2019).

    ``x``: one sample, (*input) or (1, *input). Returns numpy arrays ``x_bss`` (C-1, *input),
    ``targets`` (C-1,), ``landed`` (C-1,) the teacher's class at each BSS, ``p_base`` and
    ``p_target`` (C-1,) the teacher's probabilities of its original class and of the target
    there, ``l2`` (C-1,) the perturbation's L2 norm, and the int ``base``.
    """
    if x.dim() in (1, 3):
        x = x.unsqueeze(0)
    with eval_mode(teacher):
        base = int(predict(teacher, x)[0])
        n_classes = logits_of(teacher, x).shape[1]
        targets = torch.tensor([k for k in range(n_classes) if k != base], device=x.device)
        xs = x.expand(len(targets), *x.shape[1:]).clone()
        x_bss = craft_bss(teacher, xs, target=targets, eta=eta, eps=eps, max_steps=max_steps)
        probs = torch.softmax(logits_of(teacher, x_bss), 1)
    return {"x_bss": x_bss.cpu().numpy(), "targets": targets.cpu().numpy(), "landed": probs.argmax(1).cpu().numpy(),
            "p_base": probs[:, base].cpu().numpy(), "p_target": probs.gather(1, targets[:, None])[:, 0].cpu().numpy(),
            "l2": (x_bss - xs).flatten(1).norm(dim=1).cpu().numpy(), "base": base}
