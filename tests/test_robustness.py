"""The one robust-accuracy measurement (AutoAttack through pyautoattack) and its record on disk."""

import pytest
import torch
from torch import nn

from distill_core.data import load_dataset
from distill_core.robustness import (
    PROTOCOLS,
    RECORD_KEY,
    RobustnessReport,
    evaluate_robustness,
    read_record,
    report_summary,
)
from distill_core.zoo import list_zoo, load_zoo_model

pytestmark = pytest.mark.skipif(not list_zoo(dataset="mnist-5k"), reason="the zoo is not built")


@pytest.fixture(scope="module")
def mnist_test():
    test, info = load_dataset("mnist-5k", "test")
    return test.tensors[0], test.tensors[1], info


def zoo(name):
    return load_zoo_model(name)[0]


def test_defensive_T100_is_masked_not_robust(mnist_test):
    """Carlini & Wagner's lesson: the apparent robustness of defensive distillation is gradient masking."""
    x, y, info = mnist_test
    r = evaluate_robustness(zoo("mnist-5k/defensive-T100"), x, y, eps=info.default_eps, protocol="autoattack-fast",
                            n=100, seed=0)
    assert r.robust_accuracy <= 0.05
    assert r.apparent_robust_accuracy >= 0.5
    assert r.masked and r.flags["zero_gradients"] > 0.5
    assert r.gap_shown and r.masking_gap > 0.4
    assert r.per_attack["apgd-t"] == r.robust_accuracy       # the DLR loss gets through the saturated softmax
    assert "gradient masking" in report_summary(r)


def test_trades_is_robust_and_not_masked(mnist_test):
    x, y, info = mnist_test
    r = evaluate_robustness(zoo("mnist-5k/trades"), x, y, eps=0.3, protocol="autoattack-fast", n=100, seed=0)
    assert not r.masked and r.flags["zero_gradients"] == 0
    assert r.robust_accuracy >= 0.3
    assert r.robust_accuracy <= r.apparent_robust_accuracy + 0.02   # AutoAttack is at least as strong as PGD-CE
    assert r.robust_accuracy <= r.clean_accuracy


def test_standard_model_has_no_robustness(mnist_test):
    x, y, _ = mnist_test
    r = evaluate_robustness(zoo("mnist-5k/standard"), x, y, eps=0.3, protocol="autoattack-fast", n=100, seed=0)
    assert r.clean_accuracy >= 0.9 and r.robust_accuracy <= 0.05 and not r.masked


def test_same_seed_same_report_and_rng_untouched(mnist_test):
    x, y, _ = mnist_test
    model = zoo("mnist-5k/kd")
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = evaluate_robustness(model, x, y, eps=0.1, protocol="autoattack-fast", n=40, seed=7).to_dict()
    after = torch.rand(3)
    b = evaluate_robustness(model, x, y, eps=0.1, protocol="autoattack-fast", n=40, seed=7).to_dict()
    assert torch.equal(before, after)   # the caller's RNG stream is not moved by the attacks' seeding
    for d in (a, b):
        d.pop("seconds")
    assert a == b
    assert a["n"] == 40 and a["seed"] == 7 and a["eps"] == 0.1 and a["library"].startswith("pyautoattack")


def test_standard_protocol_runs_all_four_attacks_and_each_lowers_or_keeps(mnist_test):
    x, y, _ = mnist_test
    r = evaluate_robustness(zoo("mnist-5k/kd"), x, y, eps=0.05, protocol="autoattack", n=20, seed=0)
    assert r.attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = [r.per_attack[a] for a in r.attacks]
    assert accs == sorted(accs, reverse=True) and accs[-1] == r.robust_accuracy
    assert "AutoAttack (APGD-CE, APGD-T, FAB-T, Square)" in r.label and "n = 20" in r.label


def test_eps_zero_is_clean_accuracy(mnist_test):
    x, y, _ = mnist_test
    r = evaluate_robustness(zoo("mnist-5k/kd"), x, y, eps=0.0, protocol="autoattack-fast", n=30)
    assert r.robust_accuracy == r.clean_accuracy == r.apparent_robust_accuracy


class Flat(nn.Module):
    """Logits that do not depend on the input: the gradient is exactly zero everywhere."""

    def __init__(self, classes=10):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(classes, dtype=torch.float32))

    def forward(self, x):
        return x.flatten(1)[:, :1] * 0 + self.bias


def test_zero_gradient_model_gets_the_masking_flag_not_an_exception():
    x = torch.rand(16, 1, 28, 28)
    y = torch.full((16,), 9)
    r = evaluate_robustness(Flat(), x, y, eps=0.3, protocol="autoattack-fast", n=16)
    assert r.flags["zero_gradients"] == 1.0 and r.masked
    assert r.clean_accuracy == 1.0 and r.robust_accuracy == 1.0   # nothing can move it: a constant classifier


def test_two_class_points_use_untargeted_stand_ins():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.rand(30, 2)
    y = model(x).argmax(1)
    r = evaluate_robustness(model, x, y, eps=0.1, protocol="autoattack")
    assert r.attacks == ["apgd-ce", "fab"]   # no targeted DLR with 2 classes, no Square off images
    assert r.clean_accuracy == 1.0 and 0 <= r.robust_accuracy <= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(n=0), "n must be"),
    (dict(n=1000), "n must be"),
    (dict(protocol="pgd-20"), "unknown protocol"),
    (dict(norm="L3"), "unknown norm"),
])
def test_bad_settings_are_clear_value_errors(kwargs, message):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
    args = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate_robustness(model, x, y, **args)


def test_bad_data_and_models_are_clear_value_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        evaluate_robustness(model, x, torch.full((8,), 3), eps=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_robustness(model, x * 255, y, eps=0.1)
    with pytest.raises(ValueError, match="same N"):
        evaluate_robustness(model, x, y[:5], eps=0.1)
    with pytest.raises(ValueError, match=r"logits \(N, classes\)"):
        evaluate_robustness(nn.Flatten(0), x, y, eps=0.1)          # returns (N * 4,)
    with pytest.raises(ValueError, match=r"logits \(N, classes\)"):
        evaluate_robustness(nn.Identity(), x, y, eps=0.1)          # returns the images


def test_record_round_trips_and_old_records_read_as_not_evaluated():
    r = RobustnessReport(protocol="autoattack", attacks=["apgd-ce"], clean_accuracy=0.9, robust_accuracy=0.4,
                         apparent_robust_accuracy=0.7, per_attack={"apgd-ce": 0.4}, flags={"zero_gradients": 0.0},
                         n=100, eps=0.3, norm="Linf", seed=0, seconds=1.0)
    d = r.to_dict()
    assert d["masking_gap"] == pytest.approx(0.3) and d["masked"] is False and "label" in d
    back = read_record({RECORD_KEY: d})
    assert back == r and back.gap_shown
    assert read_record({"metrics": {RECORD_KEY: d}}) == r
    # what `eval --attacks` and the old trade-off button wrote before: not an AutoAttack record
    assert read_record({RECORD_KEY: {"n": 300, "table": [], "robust_accuracy": 0.8}}) is None
    assert read_record({}) is None and read_record(None) is None
    assert report_summary(None) == "not evaluated"
    assert set(PROTOCOLS) == {"autoattack", "autoattack-fast", "pgd-ce"}


def test_masked_follows_autoattacks_own_checks():
    base = dict(protocol="autoattack", attacks=["apgd-ce", "apgd-t", "fab-t", "square"], clean_accuracy=0.9,
                robust_accuracy=0.7, apparent_robust_accuracy=0.75, per_attack={}, n=500, eps=0.3, norm="Linf",
                seed=0, seconds=1.0)
    # one sample of 500 found by Square only: AutoAttack's check (more than 0.2 points) stays quiet
    quiet = RobustnessReport(**base, flags={"zero_gradients": 0.0, "square_beats_white_box": 0.002, "messages": []})
    assert not quiet.masked
    loud = RobustnessReport(**base, flags={"zero_gradients": 0.0, "square_beats_white_box": 0.01, "messages": [
        "Square Attack has decreased the robust accuracy of 1.00%. This might indicate that the robustness "
        "evaluation using AutoAttack is unreliable."]})
    assert loud.masked
    assert RobustnessReport(**base, flags={"zero_gradients": 0.002, "messages": []}).masked
