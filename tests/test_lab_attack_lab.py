"""attack_one_image: the Attack lab's one call - success, transfer, trace, seeding, bad options; and the
masking table (which attack / loss a saturated softmax blinds), measured on the zoo's defensive-T100."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from distill_core import zoo
from distill_core.attacks import list_attacks, run_attack
from distill_core.data import load_dataset
from distill_core.lab.attack_lab import (
    ATTACK_OPTIONS,
    BLINDED,
    NOT_BLINDED,
    attack_one_image,
    attack_option,
    attack_options,
    start_gradient_zero,
    trace_series,
    unblinded_alternative,
)
from distill_core.papers.defensive import BREAK_ATTACKS, MASKED_ATTACKS
from tests._apptest import require_zoo

DEFENSIVE, STANDARD = "mnist-5k/defensive-T100", "mnist-5k/standard"
require_zoo(DEFENSIVE, STANDARD)


def tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


@pytest.fixture
def setup():
    models = {"a": tiny(0), "b": tiny(1)}
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return models, x


def test_strong_pgd_fools_the_attacked_model_and_reports_every_model(setup) -> None:
    models, x = setup
    res = attack_one_image(models, "a", x, None, "pgd", eps=1.0, alpha=0.1, steps=30)
    assert res.y == int(models["a"](x).argmax(1))          # no label: the prediction is the label
    assert res.success and res.pred_after != res.pred_before
    assert set(res.probs) == {"a", "b"}
    for before, after in res.probs.values():
        assert before.shape == after.shape == (3,) and before.sum() == pytest.approx(1)
    assert res.x_adv.shape == res.x.shape == (1, 1, 4, 4) and res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert np.abs(res.x_adv - res.x).max() <= 1.0 + 1e-6
    assert list(res.series["step"]) == list(range(31))
    assert {"loss", "margin", "pred", "dist"} <= set(res.series)
    assert res.saliency[0].shape == (1, 1, 4, 4)
    assert res.seconds > 0


def test_seeded_and_leaves_the_callers_rng_alone(setup) -> None:
    models, x = setup
    torch.manual_seed(123)
    state = torch.get_rng_state()
    r1 = attack_one_image(models, "a", x, 0, "pgd", eps=0.2, alpha=0.05, steps=3, with_saliency=False)
    assert torch.equal(torch.get_rng_state(), state)
    r2 = attack_one_image(models, "a", x, 0, "pgd", eps=0.2, alpha=0.05, steps=3, with_saliency=False)
    np.testing.assert_array_equal(r1.x_adv, r2.x_adv)


def test_targeted_and_eps_zero(setup) -> None:
    models, x = setup
    res = attack_one_image(models, "b", x, 0, "pgd", target=2, eps=1.0, alpha=0.1, steps=40)
    assert res.target == 2 and res.success == (res.pred_after == 2)
    same = attack_one_image(models, "a", x, 0, "fgsm", eps=0.0)
    np.testing.assert_array_equal(same.x_adv, same.x)


def test_bad_options_raise(setup) -> None:
    models, x = setup
    with pytest.raises(ValueError, match="takes no option"):
        attack_one_image(models, "a", x, 0, "fgsm", eps=0.1, steps=3)
    with pytest.raises(ValueError, match="targeted only"):
        attack_one_image(models, "a", x, 0, "jsma")
    with pytest.raises(KeyError):
        attack_one_image(models, "nope", x, 0, "fgsm", eps=0.1)


def test_trace_series_empty_and_partial_keys() -> None:
    assert len(trace_series([])["step"]) == 0
    trace = [{"step": 0, "loss": torch.tensor([1.0, 2.0]), "pred": torch.tensor([1, 0]), "c": torch.tensor([3.0, 3.0])},
             {"step": 1, "loss": torch.tensor([0.5, 2.5]), "pred": torch.tensor([2, 0])}]
    s = trace_series(trace, sample=0)
    assert list(s["loss"]) == [1.0, 0.5] and list(s["pred"]) == [1, 2] and "c" not in s


def test_result_norms_and_transfer_rows_describe_the_perturbation_and_each_model() -> None:
    import numpy as np

    from distill_core.lab.attack_lab import ImageAttackResult

    x = np.zeros((1, 1, 2, 2), dtype=np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[0, 0, 1, 1] = 0.3, -0.4
    probs = {"a": (np.array([0.9, 0.1]), np.array([0.2, 0.8])), "b": (np.array([0.7, 0.3]), np.array([0.6, 0.4]))}
    res = ImageAttackResult(x, x_adv, y=0, target=None, attacked="a", probs=probs,
                            saliency=(x, x), series={}, seconds=0.0)
    assert res.norms() == {"linf": pytest.approx(0.4), "l2": pytest.approx(0.5), "l0": 2}
    rows = res.transfer_rows(["zero", "one"])
    assert [r["model"] for r in rows] == ["a (attacked)", "b"]
    assert [r["fooled"] for r in rows] == [True, False]
    assert rows[0]["pred after"] == "one" and rows[0]["p_true_after"] == pytest.approx(0.2)


# ---------------------------------------------------------------- the masking table, measured


@pytest.fixture(scope="module")
def zoo_models() -> dict[str, nn.Module]:
    return {name: zoo.load_zoo_model(name)[0] for name in (DEFENSIVE, STANDARD)}


@pytest.fixture(scope="module")
def saturated(zoo_models) -> tuple[torch.Tensor, torch.Tensor]:
    """Four test images that defensive-T100 classifies correctly with a saturated softmax (max p == 1 in float32)."""
    x, y = load_dataset("mnist-5k", "test")[0].tensors
    x, y = x[:40], y[:40]
    with torch.no_grad():
        p = torch.softmax(zoo_models[DEFENSIVE](x), 1)
    keep = ((p.argmax(1) == y) & (p.amax(1) == 1.0)).nonzero().squeeze(1)[:4]
    assert len(keep) == 4, "defensive-T100 no longer saturates its softmax on the first test images"
    return x[keep], y[keep]


def _one_step_leaves_x(model: nn.Module, x: torch.Tensor, y: torch.Tensor, option, target) -> torch.Tensor | None:
    """The attack's own first step from x (no random start): per sample, did it leave x bit for bit unchanged?
    ``None`` for CW-L2, whose tanh change of variables moves x even without a gradient of f."""
    kwargs = {option.param: option.value} if option.param else {}
    if target is not None:
        kwargs["target"] = target
    if option.attack in ("pgd", "pgd_l2", "cw_linf"):
        kwargs.update(steps=1, random_start=False, alpha=0.1, eps=0.3 if option.attack != "pgd_l2" else 2.0)
    elif option.attack == "fgsm":
        kwargs.update(eps=0.3)
    elif option.attack == "jsma":
        kwargs.update(gamma=3 / x[0].numel())          # floor(n * gamma / 2) = 1 iteration: one pair
    elif option.attack == "deepfool":
        kwargs.update(steps=1)
    else:
        return None
    x_adv = run_attack(option.attack, model, x, y, **kwargs)
    return (x_adv == x).flatten(1).all(1)


OPTION_IDS = [f"{o.attack}-{o.value}" if o.value else o.attack for o in ATTACK_OPTIONS]


@pytest.mark.parametrize("option", ATTACK_OPTIONS, ids=OPTION_IDS)
def test_each_label_matches_a_measured_zero_gradient_on_the_T100_model(option, zoo_models, saturated) -> None:
    x, y = saturated
    params = {option.param: option.value} if option.param else {}
    targets = {"untargeted": None, "targeted": (y + 1) % 10}
    for kind, target in targets.items():
        if option.attack == "jsma" and kind == "untargeted":
            continue                                   # JSMA is targeted only: both flags describe it targeted
        if option.attack == "deepfool" and kind == "targeted":
            continue                                   # DeepFool has no target
        expected = option.is_blinded(kind == "targeted")
        for name, model in zoo_models.items():
            zero = start_gradient_zero(model, x, y, option.attack, target=target, **params)
            # the label says what a *saturated* softmax does: on T100 it must hold on every image; the standard
            # model's softmax is not saturated, so no option may read zero there (the check can tell them apart)
            want = expected and name == DEFENSIVE
            assert zero.tolist() == [want] * len(y), (name, kind, option.masking(kind == "targeted"), zero.tolist())
            unchanged = _one_step_leaves_x(model, x, y, option, target)
            if unchanged is not None:                  # the attack's own first step agrees: no direction, no move
                assert unchanged.tolist() == [want] * len(y), (name, kind, "one step", unchanged.tolist())


def test_the_table_covers_every_attack_and_names_break_it_attacks_the_same_way() -> None:
    assert {o.attack for o in ATTACK_OPTIONS} == set(list_attacks())
    for option in ATTACK_OPTIONS:
        assert option.masking() == (BLINDED if option.blinded else NOT_BLINDED)
        if option.break_key is not None:               # the Defensive page's name, and its grey "masked" bar
            assert option.name == BREAK_ATTACKS[option.break_key]
            assert option.blinded == (option.break_key in MASKED_ATTACKS)
    covered = {o.break_key for o in ATTACK_OPTIONS}
    assert set(BREAK_ATTACKS) - covered == {"pgd_z_over_t", "transfer"}     # not options of one attack in the lab
    assert attack_option("pgd").value == "ce" and attack_option("jsma").value == "logits"
    assert attack_option("pgd", {"loss": "cw"}).name == BREAK_ATTACKS["cw_margin"]
    assert attack_option("pgd", {"loss": lambda z, y: z[:, 0]}) is None      # a custom loss has no label
    with pytest.raises(ValueError, match="unknown loss"):
        attack_option("pgd", {"loss": "hinge"})
    with pytest.raises(ValueError, match="unknown attack"):
        attack_options("nope")


def test_unblinded_alternative_keeps_the_settings_and_moves_to_the_logits() -> None:
    opt, params = unblinded_alternative("pgd", {"eps": 0.2, "steps": 7, "loss": "ce"})
    assert (opt.value, params) == ("cw", {"eps": 0.2, "steps": 7, "loss": "cw"})
    assert unblinded_alternative("fgsm", {"eps": 0.2})[1] == {"eps": 0.2, "loss": "cw"}      # the default loss, ce
    assert unblinded_alternative("pgd_l2", {"loss": "softmax"})[0].value == "cw"
    assert unblinded_alternative("jsma", {"on": "softmax", "gamma": 0.1}, targeted=True)[1] == {"on": "logits",
                                                                                              "gamma": 0.1}
    assert unblinded_alternative("pgd", {"loss": "cw"}) is None
    assert unblinded_alternative("pgd", {"loss": "ce"}, targeted=True) is None     # -log p_t keeps its gradient
    assert unblinded_alternative("cw_l2", {}) is None and unblinded_alternative("deepfool", {}) is None


def test_a_masked_pgd_ce_attack_says_so_and_the_margin_loss_fools_the_same_image(zoo_models, saturated) -> None:
    x, y = saturated
    models = {"T100": zoo_models[DEFENSIVE], "standard": zoo_models[STANDARD]}
    res = attack_one_image(models, "T100", x[:1], int(y[0]), "pgd", eps=0.3, alpha=0.02, steps=10, loss="ce",
                           with_saliency=False)
    assert not res.success and res.gradient_zero and res.gradient_masked
    assert res.attack == "pgd" and res.option.name == BREAK_ATTACKS["pgd_softmax"] and res.option.blinded
    option, params = res.alternative()
    assert option.value == "cw" and params == {"eps": 0.3, "alpha": 0.02, "steps": 10, "loss": "cw"}
    fixed = attack_one_image(models, "T100", x[:1], int(y[0]), res.attack, with_saliency=False, **params)
    assert fixed.success and not fixed.gradient_zero and not fixed.gradient_masked and fixed.alternative() is None

    on_standard = attack_one_image(models, "standard", x[:1], int(y[0]), "pgd", eps=0.3, alpha=0.02, steps=10,
                                   with_saliency=False)
    assert not on_standard.gradient_zero and not on_standard.gradient_masked


def test_a_model_that_detaches_its_input_has_a_zero_gradient(setup) -> None:
    class Detached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny(0)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.inner(v.detach())

    models, x = setup
    res = attack_one_image({"d": Detached()}, "d", x, 0, "fgsm", eps=0.1, with_saliency=False)
    assert res.gradient_zero
    assert not attack_one_image(models, "a", x, 0, "fgsm", eps=0.1, with_saliency=False).gradient_zero
