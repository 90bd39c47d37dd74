"""attack_one_image: the Attack lab's one call - success, transfer, trace, seeding, bad options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from distill_core.lab.attack_lab import attack_one_image, trace_series


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
