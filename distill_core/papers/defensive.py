"""Defensive distillation (Papernot et al., IEEE S&P 2016) and how it is broken (Carlini & Wagner 2016/2017).

METHODS.md sections 1 and 1a. The one implementation of the paper's procedures, used by the
Defensive distillation page, the CLI, ``reproduce papernot`` and the tests:

- :func:`defensive_specs`: the two training stages (teacher at T -> student at T on its soft
  labels) as :class:`~distill_core.spec.TrainSpec` for a background job;
- :func:`defensive_distillation`: the whole procedure in this process, optionally from a shared
  1-epoch initial model, the student deployed at T = 1;
- :func:`break_defensive`: the *Break it* protocol: the attacks a saturated softmax blinds next to
  the ones that get through, and the exact-zero gradient count;
- :func:`sweep_rows` / :func:`sweep_baseline`: the T sweep of ``reproduce papernot``'s results.

Models take pixels in [0, 1] and return logits; inputs ``x`` (N, *input), labels ``y`` (N,) int64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .._torch import eval_mode, logits_of, predict
from ..attacks import attack_defaults, run_attack
from ..data import DatasetInfo
from ..evaluate import gradient_amplitude_stats
from ..methods import Method, build_method
from ..models import build_model
from ..spec import TrainSpec
from ..train import Event, StopToken, TrainConfig, Trainer, run_to_end

PAPERNOT_TEMPERATURES = (1, 2, 5, 10, 20, 30, 40, 50, 100)
GRAD_LOG10_RANGE = (-45.0, 0.0)    # float32 denormals reach 1e-45; a softmax gradient is below 1


# ---------------------------------------------------------------- defensive distillation, trained live


def defensive_specs(dataset: str, T: float, epochs: int | None = None, seed: int = 0,
                    eval_samples: int | None = None) -> list[TrainSpec]:
    """The two stages of defensive distillation (Papernot et al. 2016) as :class:`TrainSpec`.

    Stage 0 trains the teacher with ``standard`` at temperature ``T``; stage 1 trains a student
    of the same architecture with ``defensive`` at the same ``T`` on the teacher's soft labels
    (``teachers={"teacher": "@0"}``: the run of stage 0). Image sets use Papernot's CNN, 2-D
    sets an MLP; ``epochs`` defaults to a CPU-sized 1 (images) or 20 (points). Both stages
    start from the same seed, hence the same initial weights (the reference code's shared
    initial model, without its extra epoch).
    """
    if not T > 0:
        raise ValueError(f"the temperature must be > 0, got {T}")
    image = dataset not in ("moons", "circles", "spirals", "blobs")
    model = "papernot-cnn" if image else "mlp"
    train = (TrainConfig(epochs=epochs or 1, batch_size=64, lr=1e-3, seed=seed, eval_samples=eval_samples)
             if image else TrainConfig(epochs=epochs or 20, batch_size=64, lr=1e-2, seed=seed))
    return [TrainSpec(dataset=dataset, model=model, method="standard", method_config={"T": float(T)}, train=train),
            TrainSpec(dataset=dataset, model=model, method="defensive", method_config={"T": float(T)}, train=train,
                      teachers={"teacher": "@0"})]



# ---------------------------------------------------------------- breaking it (Carlini & Wagner)


def first_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (at most ``n``) of the first samples of ``x`` the model classifies correctly."""
    return (predict(model, x) == y.to(x.device)).nonzero().flatten()[:n]


def _random_targets(y: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    """One target per sample, uniform over the classes other than ``y`` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    offset = torch.randint(1, n_classes, (len(y),), generator=gen).to(y.device)
    return (y + offset) % n_classes


BREAK_ATTACKS: dict[str, str] = {
    "jsma_softmax": "JSMA on the softmax (Papernot's attack)",
    "pgd_softmax": "PGD on the softmax (cross-entropy at T = 1)",
    "jsma_logits": "JSMA on the logits Z",
    "pgd_zt": "PGD on softmax(Z / T)",
    "cw_margin": "C&W margin loss on the logits (PGD)",
    "cw_l2": "CW-L2 (Carlini & Wagner's L2 attack)",
    "transfer": "Transfer from the undistilled model",
}


def break_defensive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: float, *,
                    source: nn.Module | None = None, n: int = 50, info: DatasetInfo | None = None, seed: int = 0,
                    pgd_steps: int = 20, jsma_gamma: float = 0.145, cw_l2_steps: int = 0,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Attack a defensively distilled model the way that fails and the ways that work (METHODS.md 1a).

    On the first ``n`` test samples the model classifies correctly:

    - ``jsma_softmax``: JSMA on ``softmax(Z)`` (deployed at T = 1), the attack the paper
      reports, towards one random other class per sample (``jsma_gamma`` of the features at most);
    - ``pgd_softmax``: PGD-Linf on the cross-entropy of ``softmax(Z)``;
    - ``jsma_logits``: JSMA on the logits, same targets: the saturated softmax no longer matters;
    - ``pgd_zt``: PGD-Linf on the cross-entropy of ``softmax(Z / T)`` (divide by the training T);
    - ``cw_margin``: PGD-Linf on C&W's margin loss ``-clamp(Z_y - max_{i != y} Z_i + kappa, min=0)``
      (``attacks.cw_linf``, kappa 50), which ignores the softmax's scale;
    - ``cw_l2`` (when ``cw_l2_steps`` > 0): Carlini & Wagner's L2 attack, ``cw_l2_steps`` Adam steps
      of 0.1 for each of 4 binary-search steps from c = 1e-2 (slow on a CPU);
    - ``transfer`` (when ``source`` is given): PGD on the undistilled ``source`` model, the
      adversarial images then classified by ``model``.

    Every Linf attack has the dataset's budget (``attack_defaults``: MNIST eps 0.3) in
    ``pgd_steps`` steps of ``2.5 eps / pgd_steps``. ``success`` is the fraction of samples that
    reach the target (JSMA) or are misclassified (the others). Also the gradient-masking
    diagnostic: how many samples have an input Jacobian that is exactly zero in float32, through
    the softmax and through the logits. Seeded; the caller's RNG state is restored.
    ``progress(done, total, next_attack)`` is called before each attack (and once at the end).

    Returns ``{"rows": [{"key", "attack", "success", "n", "detail"}...], "zero_grad": {"softmax",
    "logits", "n"}, "n": N, "T": T, "indices": (N,) numpy}``.
    """
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        idx = first_correct(model, x, y, n)
        xs, ys = x[idx], y.to(x.device)[idx]
        if len(xs) == 0:
            raise ValueError("the model classifies none of these samples correctly: nothing to attack")
        n_classes = logits_of(model, xs[:1]).shape[1]
        targets = _random_targets(ys, n_classes, seed)
        eps = attack_defaults("pgd", info)["eps"]
        linf = {"eps": eps, "alpha": 2.5 * eps / pgd_steps, "steps": pgd_steps}
        budget = f"eps {eps:.3g}, {pgd_steps} steps"
        rows = []
        total = 5 + (cw_l2_steps > 0) + (source is not None)

        def step(key: str) -> None:
            if progress is not None:
                progress(len(rows), total, BREAK_ATTACKS.get(key, key))

        def add(key: str, x_adv: torch.Tensor, targeted: bool, detail: str = "") -> None:
            pred = predict(model, x_adv)
            hit = pred == targets if targeted else pred != ys
            rows.append({"key": key, "attack": BREAK_ATTACKS[key], "success": float(hit.float().mean()),
                         "n": len(ys), "detail": detail})

        jsma = {"theta": 1.0, "gamma": jsma_gamma, "target": targets}
        step("jsma_softmax")
        add("jsma_softmax", run_attack("jsma", model, xs, ys, on="softmax", **jsma), True,
            f"targeted, one random target per image, at most {jsma_gamma:.1%} of the pixels")
        step("pgd_softmax")
        add("pgd_softmax", run_attack("pgd", model, xs, ys, **linf), False, budget)
        step("jsma_logits")
        add("jsma_logits", run_attack("jsma", model, xs, ys, on="logits", **jsma), True, "same targets")
        step("pgd_zt")
        add("pgd_zt", run_attack("pgd", model, xs, ys, temperature=float(T), **linf), False,
            f"{budget}, logits divided by T = {T:g}")
        step("cw_margin")
        add("cw_margin", run_attack("cw_linf", model, xs, ys, kappa=50.0, **linf), False, f"{budget}, kappa 50")
        if cw_l2_steps > 0:
            step("cw_l2")
            # lr 0.1, not C&W's 1e-2: in few steps the black background (tanh flat at 0) could not move.
            x_cw = run_attack("cw_l2", model, xs, ys, c=1e-2, steps=cw_l2_steps, binary_search_steps=4, lr=0.1)
            l2 = (x_cw - xs).flatten(1).norm(dim=1)
            fooled = predict(model, x_cw) != ys
            med = float(l2[fooled].median()) if bool(fooled.any()) else math.nan
            add("cw_l2", x_cw, False, f"{cw_l2_steps} x 4 Adam steps; median L2 of the successes {med:.2f}")
        if source is not None:
            step("transfer")
            with eval_mode(source):
                x_tr = run_attack("pgd", source, xs, ys, **linf)
                own = float((predict(source, x_tr) != ys).float().mean())
            add("transfer", x_tr, False, f"PGD ({budget}) on the undistilled model, which it fools {own:.0%}")
        step("the zero-gradient count")
        zero_soft = gradient_amplitude_stats(model, xs, "softmax")["n_zero"]
        zero_logit = gradient_amplitude_stats(model, xs, "logits")["n_zero"]
    return {"rows": rows, "zero_grad": {"softmax": zero_soft, "logits": zero_logit, "n": len(xs)},
            "n": len(xs), "T": float(T), "indices": idx.cpu().numpy()}


# ---------------------------------------------------------------- the T sweep (Papernot et al. 2016)


SWEEP_KEYS = ("T", "test_accuracy", "jsma_success", "rho_adv", "confidence", "grad_hist", "zero_grad_fraction",
              "robust_accuracy", "apparent_robust_accuracy")
_ALIASES = {"jsma_success": ("jsma_success", "jsma_softmax_success")}


def _sweep_point(p: Mapping, T: Any = None) -> dict[str, Any]:
    """One point with :data:`SWEEP_KEYS` (``nan`` for a missing number)."""
    row: dict[str, Any] = {"T": float(p.get("T", T))}
    for k in ("test_accuracy", "jsma_success", "rho_adv", "confidence", "zero_grad_fraction", "robust_accuracy",
              "apparent_robust_accuracy"):
        v = next((p[a] for a in _ALIASES.get(k, (k,)) if p.get(a) is not None), None)
        row[k] = math.nan if v is None else float(v)
    hist = p.get("grad_hist") or p.get("gradient_histogram") or {}
    row["grad_hist"] = {"edges": list(hist.get("edges", hist.get("bins", []))), "counts": list(hist.get("counts", []))}
    row["label"] = p.get("label", "")
    return row


def sweep_rows(results: Mapping | Sequence) -> list[dict[str, Any]]:
    """A T sweep as a list of points sorted by T, each a dict with :data:`SWEEP_KEYS` (fractions).

    Accepts the ``results.json`` of ``python -m distill_core reproduce papernot`` (its ``"sweep"``,
    where JSMA's success is ``jsma_softmax_success``), a list of points, ``{"points": [...]}`` /
    ``{"results": [...]}``, or a mapping ``{T: point}`` (JSON keys as strings). Missing
    measurements become ``nan``; a histogram given as ``bins`` (edges) is read as ``edges``.
    Raises ``ValueError`` when no point carries a temperature.
    """
    if isinstance(results, Mapping):
        for key in ("sweep", "points", "results"):
            if key in results:
                return sweep_rows(results[key])
        items = [{**p, "T": p.get("T", t)} for t, p in results.items() if isinstance(p, Mapping)]
    else:
        items = list(results)
    rows = [_sweep_point(p) for p in items if isinstance(p, Mapping) and p.get("T") is not None]
    if not rows:
        raise ValueError("no point of the sweep has a temperature T")
    return sorted(rows, key=lambda r: r["T"])


def sweep_baseline(results: Mapping) -> dict[str, Any] | None:
    """The undistilled model of a papernot ``results.json`` (``"undistilled"``) as a sweep point, or None."""
    base = results.get("undistilled") if isinstance(results, Mapping) else None
    return _sweep_point(base, 1.0) if isinstance(base, Mapping) else None



# ---------------------------------------------------------------- the whole procedure in this process


def _train(stage: str, method: Method, data: tuple[Dataset, Dataset | None], config: TrainConfig,
           stop: StopToken | None, on_event: Callable[[str, Event], None] | None) -> dict:
    """Run one stage through the Trainer; return its final event's data (``status`` among it)."""
    final = run_to_end(Trainer(method, data, config, stop=stop),
                       None if on_event is None else (lambda event: on_event(stage, event)))
    return dict(final.data)


def defensive_distillation(train_ds: Dataset, test_ds: Dataset | None, info: DatasetInfo,
                           model_name: str = "papernot-cnn", T: float = 20.0,
                           epochs: int | None = None, train_config: TrainConfig | None = None,
                           shared_init: bool = True, seed: int = 0, stop: StopToken | None = None,
                           on_event: Callable[[str, Event], None] | None = None,
                           ) -> tuple[nn.Module | None, nn.Module | None, dict]:
    """Papernot et al.'s whole procedure: initial model -> teacher at T -> student at T -> deploy at 1.

    ``train_config`` sets the optimiser and loop for teacher and student (by default the
    reference code's SGD lr 0.01, momentum 0.9, batch 128, 50 epochs); ``epochs`` overrides its
    epochs and ``seed`` its seed. With ``shared_init`` a model trained for 1 epoch
    at T = 1 initialises both teacher and student, as in the reference code. ``stop`` (an object
    with ``is_set()``) is handed to each Trainer; ``on_event(stage, event)`` sees every event,
    stage in ``"init" | "teacher" | "student"``.

    Returns ``(teacher, student, results)``: the teacher (frozen by the student's method) and the
    student, whose logits are used as they are at deployment (softmax at T = 1); a model whose
    stage was not reached is ``None``. ``results`` holds ``T``, ``status`` (``"done"`` or the
    final event kind that ended the pipeline early) and each stage's final event data (its
    ``test_accuracy`` among them).
    """
    if train_config is None:
        train_config = TrainConfig(epochs=50, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9)
    config = dataclasses.replace(train_config, seed=seed, epochs=train_config.epochs if epochs is None else epochs)
    data = (train_ds, test_ds)
    results: dict = {"T": T}

    torch.manual_seed(seed)
    init_state = None
    if shared_init:
        init = build_model(model_name, info)
        results["init"] = _train("init", build_method("standard", init, {"T": 1.0}, info=info), data,
                                 dataclasses.replace(config, epochs=1), stop, on_event)
        if results["init"].get("status") != "done":
            results["status"] = results["init"].get("status")
            return None, None, results
        init_state = init.state_dict()

    def fresh() -> nn.Module:
        model = build_model(model_name, info)
        if init_state is not None:
            model.load_state_dict(init_state)
        return model

    teacher = fresh()
    results["teacher"] = _train("teacher", build_method("standard", teacher, {"T": T}, info=info), data, config,
                                stop, on_event)
    if results["teacher"].get("status") != "done":
        results["status"] = results["teacher"].get("status")
        return teacher, None, results

    student = fresh()
    method = build_method("defensive", student, {"T": T}, teachers={"teacher": teacher}, info=info)
    results["student"] = _train("student", method, data, config, stop, on_event)
    results["status"] = results["student"].get("status")
    return teacher, student, results
