"""The lesson page: it runs start to end on the shipped zoo, quotes the zoo's and the reproductions' own numbers (read
at render time), and every step's link opens its page with its settings applied (no notice, no exception)."""

from __future__ import annotations

import json

import pytest

from distill_core.lab.lesson import COMPARED, DEFENSIVE, STANDARD, TRADES, lesson_facts, lesson_steps
from distill_core.lab.tradeoff import tradeoff_rows
from distill_core.reproduce import expectation_status
from distill_core.zoo import list_zoo
from tests._apptest import ROOT, open_page, require_zoo

require_zoo(STANDARD, TRADES, DEFENSIVE, *COMPARED)
REPRO = ROOT / "assets" / "reproductions"
STEPS = lesson_steps(lesson_facts(tradeoff_rows(list_zoo(), []), json.loads((REPRO / "papernot/results.json")
                                                                             .read_text()),
                                  json.loads((REPRO / "mtard/results.json").read_text())))


def pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def test_the_page_quotes_the_zoo_and_the_reproductions():
    at = open_page("lesson")
    text = "\n".join(m.value for m in at.markdown)
    rows = {r["name"]: r for r in tradeoff_rows(list_zoo(), [])}
    for name in COMPARED:                                        # step 5: clean / AutoAttack of each method
        assert f"{name.split('/')[1]} {pct(rows[name]['clean'])} / {pct(rows[name]['robust'])}" in text
    assert f"{pct(rows[DEFENSIVE]['apparent'])} accurate: that is its *apparent* robustness" in text
    assert f"standard model {pct(rows[STANDARD]['robust'])} accurate and TRADES {pct(rows[TRADES]['robust'])}" in text
    papernot = json.loads((REPRO / "papernot/results.json").read_text())
    success = {r["key"]: r["success"] for r in papernot["break_it"]["rows"]}
    assert f"the C&W margin on {pct(success['cw_margin'])}" in text
    mtard_results = json.loads((REPRO / "mtard/results.json").read_text())
    mtard = {r["method"]: r for r in mtard_results["rows"]}
    assert f"MTARD {pct(mtard['mtard']['clean'])} clean / {pct(mtard['mtard']['autoattack'])} AutoAttack" in text
    assert "(not in the zoo)" not in text and "nan" not in text
    verdict = mtard_results["expectations"][0]
    assert f"[{expectation_status(verdict)}] {verdict['claim']}" in text           # the reproduction's own verdict
    assert len([m for m in at.markdown if m.value.startswith("[Open ")]) == len(STEPS)   # one link per step


@pytest.mark.parametrize("step", STEPS, ids=[s.page + "-" + s.title.split()[0].lower() for s in STEPS])
def test_each_steps_link_opens_its_setup(step):
    at = open_page(step.page, step.params)
    assert not [w.value for w in at.warning if "This link has settings" in w.value]
    published = {k: v if isinstance(v, list) else [v] for k, v in at.query_params.items()}
    for k, v in step.params.items():
        assert published.get(k) == (v if isinstance(v, list) else [v]), (k, published.get(k))
