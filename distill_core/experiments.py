"""Small experiments the app's pages run on demand, as plain functions (no streamlit).

- :func:`defensive_specs`: the two training stages of defensive distillation (teacher at T,
  student at T from that teacher) for a background job.
- :func:`break_defensive`: the *Break it* panel: the attacks that defeat defensive
  distillation (Carlini & Wagner 2016/2017, METHODS.md section 1a) next to the one it stops,
  and the exact-zero gradient count.
- :func:`sweep_rows`, :func:`sweep_baseline` and :class:`ReproductionRun`: Papernot et al.'s
  T sweep (accuracy, JSMA-on-softmax success, rho_adv, confidence, gradient amplitudes) read
  from ``python -m distill_core reproduce papernot``'s results, and that reproduction rerun in
  a background thread.
- :func:`bss_paths` and :func:`bss_toward_each_class`: boundary-supporting samples (Heo et
  al. 2019) step by step on a 2-D set, and for one image towards every other class.
- :func:`tradeoff_rows` and :func:`evaluate_run_robustness`: the trade-off table of zoo
  models and runs, and the AutoAttack robustness record of a run that lacks it.

Every function takes models in eval mode (or puts them there), inputs ``x`` in [0, 1] and
labels ``y`` (N,) int64, and returns plain numbers / numpy arrays / lists that a figure or a
table can use directly.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .attacks import attack_defaults, craft_bss, run_attack, sample_bss_targets
from .data import DatasetInfo, load_dataset
from .evaluate import eval_mode, gradient_amplitude_stats, logits_of, predict
from .jobs import TrainSpec
from .robustness import RECORD_KEY, RobustnessReport, evaluate_robustness, read_record
from .runs import Run, load_model, update_summary
from .train import TrainConfig

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


@dataclass
class ReproductionRun:
    """``reproduce.run_reproduction`` in a background thread, for a page to poll (no streamlit here).

    ``start()`` runs the experiment (``quick`` by default) writing into ``out``; the log lines
    collect in ``lines``; ``status`` is ``running``, ``done`` or ``error`` (``error`` holds the
    message) and ``results`` the returned dict once done::

        job = ReproductionRun("papernot", out=tmp).start()
        while job.status == "running": time.sleep(1); print(job.lines[-1:])
    """

    experiment: str
    out: Path
    quick: bool = True
    seed: int = 0
    status: str = "queued"
    lines: list[str] = field(default_factory=list)
    results: dict | None = None
    error: str = ""
    started: float = 0.0
    ended: float | None = None

    def start(self) -> ReproductionRun:
        self.status, self.started = "running", time.time()
        threading.Thread(target=self._work, name=f"reproduce-{self.experiment}", daemon=True).start()
        return self

    def elapsed_s(self) -> float:
        return (self.ended or time.time()) - self.started if self.started else 0.0

    def _work(self) -> None:
        from .reproduce import run_reproduction

        def log(message: str) -> None:
            self.lines.append(f"{self.elapsed_s():6.1f} s  {message}")

        try:
            self.results = run_reproduction(self.experiment, quick=self.quick, out=self.out, seed=self.seed, log=log)
            self.status = "done"
        except Exception as e:  # noqa: BLE001 - shown on the page, never crashes the app
            self.error, self.status = f"{type(e).__name__}: {e}", "error"
        self.ended = time.time()


# ---------------------------------------------------------------- boundary-supporting samples (Heo et al. 2019)


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


# ---------------------------------------------------------------- the trade-off table


def _train_T(config: Mapping) -> float | None:
    """The training temperature ``method_config["T"]`` of a zoo entry or run config (None when it has none)."""
    t = (config.get("method_config") or {}).get("T")
    return None if t is None else float(t)


def _robust_columns(holder: Mapping) -> dict[str, Any]:
    """The trade-off columns of a robustness record (all None when not evaluated)."""
    rec = read_record(holder)
    if rec is None:
        return {"robust": None, "apparent": None, "masked": None, "gap_shown": False,
                "robust_attack": "not evaluated", "protocol": None}
    return {"robust": rec.robust_accuracy, "apparent": rec.apparent_robust_accuracy, "masked": rec.masked,
            "gap_shown": rec.gap_shown, "robust_attack": rec.label, "protocol": rec.protocol}


def tradeoff_rows(zoo: Iterable[Mapping], runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per zoo model and per finished run: clean and robust accuracy (fractions) and where they come from.

    Robust accuracy is the AutoAttack record of :mod:`robustness` (the zoo manifest's entry, a
    run's ``summary.json`` once evaluated); without one, ``robust`` is None ("not evaluated").
    Broken and unfinished runs are left out. Keys: ``name``, ``source`` ("zoo" | "runs"),
    ``dataset``, ``method``, ``model``, ``T`` (the training temperature, None for methods without
    one), ``clean``, ``robust``, ``apparent`` (PGD-CE), ``masked`` (AutoAttack's checks fired),
    ``gap_shown`` (apparent above true by more than 10 points), ``robust_attack`` (the record's
    label), ``protocol``, ``learned`` (False for a run at chance level), ``status``, ``path``.
    """
    rows = []
    for m in zoo:
        metrics = m.get("metrics") or {}
        rows.append({"name": m["name"], "source": "zoo", "dataset": m.get("dataset"), "method": m.get("method"),
                     "model": m.get("model"), "T": _train_T(m), "clean": metrics.get("test_accuracy"),
                     **_robust_columns(m), "learned": True, "status": "done", "path": ""})
    for r in runs:
        if r.broken or r.status not in ("done", "stopped"):
            continue
        rows.append({"name": r.name, "source": "runs", "dataset": r.config.get("dataset"),
                     "method": r.config.get("method"), "model": r.config.get("model"), "T": _train_T(r.config),
                     "clean": r.summary.get("test_accuracy"), **_robust_columns(r.summary),
                     "learned": r.summary.get("learned", True) is not False, "status": r.status,
                     "path": str(r.path)})
    return rows


def filter_rows(rows: Iterable[Mapping], datasets: Sequence[str] | None = None, sources: Sequence[str] | None = None,
                methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows whose dataset, source and method are among those given (``None``: any)."""
    return [dict(r) for r in rows
            if (datasets is None or r["dataset"] in datasets) and (sources is None or r["source"] in sources)
            and (methods is None or r["method"] in methods)]


def evaluate_run_robustness(path: str | Path, protocol: str = "autoattack-fast", n: int = 500, seed: int = 0,
                            progress: Callable[[float, str], None] | None = None,
                            device: str | torch.device = "cpu") -> RobustnessReport:
    """The robustness of a run's model (:func:`robustness.evaluate_robustness` at its dataset's eps),
    written into its ``summary.json`` under ``"robustness"``; returns the report.

    Uses the first ``min(n, test size)`` test samples. Raises ``RunError`` for a run that cannot
    be loaded and ``ValueError`` for bad settings. The CLI's ``eval --robust`` and the Trade-off
    page's button both call this.
    """
    model, info, config = load_model(path, device)
    test, _ = load_dataset(config["dataset"], "test", seed=config.get("train", {}).get("seed", 0),
                           **config.get("dataset_options", {}))
    x, y = test.tensors[:2]
    report = evaluate_robustness(model, x, y, eps=info.default_eps, protocol=protocol, n=min(n, len(x)), seed=seed,
                                 progress=progress)
    update_summary(path, **{RECORD_KEY: report.to_dict()})
    return report
