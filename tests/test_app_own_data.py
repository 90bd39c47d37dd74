"""AppTest: the lab on a researcher's own data and model - CIFAR-10 from disk (tiny files in the real format) and a
checkpoint trained elsewhere, imported: the sidebar offers the set, the Attack lab and Sensitivity pages run on it
with the imported model, a page says how many test images it used, and the import form refuses bad input."""

from __future__ import annotations

import io

import pytest
import torch
from streamlit.testing.v1 import AppTest

from distill_core.data import registered_info
from distill_core.model_import import import_checkpoint
from distill_core.models import build_model
from tests._apptest import ROOT, chart, open_page
from tests._data_files import write_cifar

MODEL = "run: rn8-cifar (imported)"


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    """$DISTILL_DATA with a 40-image CIFAR-10 test set, $DISTILL_RUNS with an imported resnet8 (raw-pixel code)."""
    root, runs = tmp_path / "data", tmp_path / "runs"
    write_cifar(root, n=10, n_test=40)
    torch.manual_seed(0)
    state = {k: v for k, v in build_model("resnet8", registered_info("cifar10")).state_dict().items()
             if not k.startswith("normalize.")}
    buf = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 120}, buf)
    import_checkpoint(buf.getvalue(), "resnet8", "cifar10", runs, name="rn8-cifar", source_name="rn8.pth")
    monkeypatch.setenv("DISTILL_DATA", str(root))
    monkeypatch.setenv("DISTILL_RUNS", str(runs))
    return root, runs


def test_sidebar_offers_disk_sets_only_when_their_files_are_there(own_data, tmp_path, monkeypatch):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert "cifar10" in at.sidebar.selectbox(key="dataset").options
    assert "mnist" not in at.sidebar.selectbox(key="dataset").options
    assert any("MNIST/raw" in c.value for c in at.sidebar.caption)           # how to get the missing ones, once
    monkeypatch.setenv("DISTILL_DATA", str(tmp_path / "empty"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["dataset"] = "cifar10"                                 # e.g. its files were removed
    at.run()
    assert not at.exception and not at.error
    assert "cifar10" not in at.sidebar.selectbox(key="dataset").options
    assert at.session_state["dataset"] == "mnist-5k"


def test_attack_lab_attacks_one_cifar_image_with_the_imported_model(own_data, monkeypatch):
    monkeypatch.setattr("ui.common.APP_TEST_IMAGES", 20)
    at = open_page("attack-lab", None, dataset="cifar10", atk_models=[MODEL])
    assert MODEL in at.multiselect(key="atk_models").options
    assert any("uses 20 of the 40 test images" in c.value for c in at.caption)
    at.selectbox(key="atk_name").set_value("fgsm").run()
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    images = chart(at, "atk_images")
    assert images["data"] and next(m for m in at.metric if m.label == "Prediction before").value
    result = at.session_state["atk_result"]["result"]
    assert tuple(result.x.shape) == (1, 3, 32, 32) and set(result.probs) == {MODEL}
    assert abs(result.x_adv - result.x).max() <= 8 / 255 + 1e-6             # CIFAR's eps, not MNIST's


def test_sensitivity_runs_on_cifar_with_the_imported_model(own_data):
    at = open_page("sensitivity", None, dataset="cifar10", sens_models=[MODEL])
    assert not at.error, [e.value for e in at.error]
    assert chart(at, "sens_gallery")["data"] and chart(at, "sens_slice")["data"]


def test_import_form_refuses_without_a_file_and_lists_every_architecture(own_data):
    at = open_page("train", None, dataset="cifar10")
    form_button = next(b for b in at.button if b.label == "Import")
    assert set(at.selectbox(key="train_import_arch").options) >= {"resnet18", "resnet56", "wrn-34-10"}
    form_button.click().run()
    assert any("Choose a checkpoint file first" in e.value for e in at.error)
    assert list((own_data[1]).iterdir()) == [own_data[1] / "rn8-cifar"]      # nothing written
