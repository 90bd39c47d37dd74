"""AppTest: the Attack lab renders, an attack flips the prediction shown, bad uploads are messages, not crashes;
each loss says whether a saturated softmax blinds it, a masked attack says so and offers the margin loss in one
click; the model list says which model is attacked."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.lab.attack_lab import attack_options
from distill_core.papers.defensive import BREAK_ATTACKS
from tests._apptest import ROOT, chart, require_zoo

PAGE = str(ROOT / "pages" / "attack_lab_page.py")
NEEDED = {"mnist-5k/standard", "mnist-5k/trades", "mnist-5k/defensive-T100"}
require_zoo(*NEEDED)


def page(models: tuple[str, ...] = ("zoo: standard", "zoo: trades")) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["atk_models"] = list(models)
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str):
    return next(m for m in at.metric if m.label == label)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_strong_pgd_flips_the_standard_model_and_is_kept_across_reruns() -> None:
    at = page()
    assert not at.metric                                  # nothing attacked yet
    at.selectbox(key="atk_name").set_value("pgd").run()
    at.slider(key="atk_p_pgd_eps").set_value(0.5)
    at.number_input(key="atk_p_pgd_steps").set_value(20)
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    before, after = metric(at, "Prediction before"), metric(at, "Prediction after")
    assert before.value != after.value
    assert "fooled" in after.proto.delta
    for key in ("atk_images", "atk_bars", "atk_trajectory", "atk_saliency", "atk_transfer"):
        assert chart(at, key)["data"]
    result = at.session_state["atk_result"]["result"]
    assert set(result.probs) == {"zoo: standard", "zoo: trades"}
    assert len(result.series["step"]) == 21 and result.success

    at.run()                                              # a rerun shows the stored result, not a new attack
    assert at.session_state["atk_result"]["result"] is result
    assert metric(at, "Prediction after").value == after.value
    assert not at.info or all("changed" not in i.value for i in at.info)

    at.slider(key="atk_p_pgd_eps").set_value(0.1).run()   # a changed setting is flagged, the old result stays
    assert any("changed" in i.value for i in at.info)
    assert at.session_state["atk_result"]["result"] is result


def test_uploads_good_and_bad() -> None:
    at = page(("zoo: standard",))
    at.radio(key="atk_source").set_value("Upload").run()

    cases = {
        "notes.png": (b"this is not an image at all" * 20, "not an image"),
        "cut.png": (png(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8))[:3000],
                    "damaged or truncated"),
        "huge.png": (png(np.zeros((7000, 7000), np.uint8)), "megapixels"),
    }
    for name, (data, message) in cases.items():
        at.get("file_uploader")[0].set_value((name, data, "image/png"))
        at.run()
        assert not at.exception, (name, at.exception)
        assert any(message in e.value for e in at.error), (name, [e.value for e in at.error])
        assert at.button(key="atk_run").disabled

    digit = np.full((120, 90), 255, np.uint8)           # a dark '1' on white paper, 16-bit
    digit[15:105, 40:52] = 0
    at.get("file_uploader")[0].set_value(("one.png", png(digit.astype(np.uint16) * 257), "image/png"))
    at.run()
    assert not at.exception, at.exception
    assert not at.error
    notes = " ".join(c.value for c in at.caption)
    assert "16-bit" in notes and "inverted" in notes
    assert chart(at, "atk_preview")["data"]
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert metric(at, "Prediction before").value


def test_draw_option_and_targeted_attack_widgets() -> None:
    at = page(("zoo: standard",))
    assert "Draw" in at.radio(key="atk_source").options
    at.radio(key="atk_source").set_value("Draw").run()
    assert not at.exception, at.exception
    assert any("empty" in i.value for i in at.info)        # the canvas starts empty
    at.radio(key="atk_source").set_value("Test set").run()
    at.selectbox(key="atk_name").set_value("jsma").run()
    assert not at.exception, at.exception
    target = at.selectbox(key="atk_target_class")
    assert target.value in target.options and len(target.options) == 10     # any of the 10 digit classes
    at.selectbox(key="atk_name").set_value("fgsm").run()
    at.checkbox(key="atk_targeted").check().run()
    at.selectbox(key="atk_target_class").set_value("3")
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert at.session_state["atk_result"]["result"].target == 3


def test_missing_zoo_is_a_message_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No model" in w.value for w in at.warning)


def test_a_2d_dataset_falls_back_to_mnist() -> None:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = "moons"
    at.run()
    assert not at.exception, at.exception
    assert any("mnist-5k is used here" in i.value for i in at.info)


def test_the_model_list_says_the_attack_box_decides_and_the_box_does() -> None:
    at = page(("zoo: standard", "zoo: trades"))
    label = at.multiselect(key="atk_models").label
    assert "first selected" not in label and "Attack this model" in label
    assert not any("first model is attacked" in m.value for m in at.markdown)
    at.selectbox(key="atk_target_model").set_value("zoo: trades").run()     # the second model, picked in the box
    at.selectbox(key="atk_name").set_value("fgsm").run()
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert at.session_state["atk_result"]["result"].attacked == "zoo: trades"
    assert metric(at, "Attack time").proto.delta.endswith("on zoo: trades")


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_l2", "jsma"])
def test_each_loss_option_carries_the_cores_masking_label(attack: str) -> None:
    at = page(("zoo: standard",))
    at.selectbox(key="atk_name").set_value(attack).run()
    options = attack_options(attack)
    radio = at.radio(key=f"atk_p_{attack}_{options[0].param}")
    assert radio.options == [o.short for o in options]
    targeted = attack == "jsma"                                # JSMA is targeted only
    assert list(radio.proto.captions) == [o.masking(targeted) for o in options]
    assert sum("can be blinded" in c for c in radio.proto.captions) == sum(o.is_blinded(targeted) for o in options) > 0
    if attack == "pgd":                                        # named like the Defensive page's Break it
        assert any(BREAK_ATTACKS["pgd_softmax"] in c.value for c in at.caption)
        at.checkbox(key="atk_targeted").check().run()          # targeted, -log p_t keeps its gradient
        captions = list(at.radio(key="atk_p_pgd_loss").proto.captions)
        assert captions == [o.masking(True) for o in options] and "not blinded" in captions[0]


def test_a_masked_attack_says_so_and_one_click_on_the_margin_loss_fools_the_model() -> None:
    at = page(("zoo: standard", "zoo: defensive-T100"))
    at.selectbox(key="atk_target_model").set_value("zoo: defensive-T100").run()
    at.selectbox(key="atk_name").set_value("pgd").run()
    at.number_input(key="atk_p_pgd_steps").set_value(10)          # few steps, each big enough to cross 0.3
    at.number_input(key="atk_p_pgd_alpha").set_value(0.04)
    assert at.radio(key="atk_p_pgd_loss").value == "ce"         # PGD on the cross-entropy, the default
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    assert "not fooled" in metric(at, "Prediction after").proto.delta
    warnings = [w.value for w in at.warning]
    assert any("gradient masked: the attack got no gradient signal (a saturated softmax)" in w.lower()
               for w in warnings), warnings
    fix = at.button(key="atk_unblind")
    assert "C&W margin" in fix.label and "same eps" in fix.label
    eps = at.slider(key="atk_p_pgd_eps").value

    fix.click().run()                                          # one click: the margin loss, run at once
    assert not at.exception, at.exception
    assert at.radio(key="atk_p_pgd_loss").value == "cw"         # what ran is what the widgets show
    result = at.session_state["atk_result"]["result"]
    assert result.settings["loss"] == "cw" and result.settings["eps"] == eps and result.settings["steps"] == 10
    after = metric(at, "Prediction after")
    assert "fooled" in after.proto.delta and "not fooled" not in after.proto.delta
    assert result.success and not result.gradient_zero
    assert not any("gradient masked" in w.value.lower() for w in at.warning)
    assert not any("changed" in i.value for i in at.info)       # the result is the one for the settings shown
    assert not [b for b in at.button if b.key == "atk_unblind"]
