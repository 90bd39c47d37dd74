"""Helpers the AppTest modules share: the page's path, its charts as JSON, plotly arrays, the shipped zoo."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo

ROOT = Path(__file__).resolve().parents[1]


def page_path(url_path: str) -> str:
    """The file of the page served at ``url_path`` (``ui.navigation.PAGES``), absolute."""
    from ui.navigation import page

    return str(ROOT / page(url_path).file)


def open_page(url_path: str, query: dict | None = None, **state) -> AppTest:
    """Run the page at ``url_path`` on its own, with ``query`` as its address's query parameters (a link) and
    ``state`` in session state; asserts it raised nothing."""
    at = AppTest.from_file(page_path(url_path), default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with widget key ``key``."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, f"no chart {key!r}"
    return json.loads(found[0].proto.spec)


def charts(at: AppTest) -> list[dict]:
    """Every plotly figure on the page, in order, as JSON."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(v) -> np.ndarray:
    """A trace's array, whether plotly wrote it as a list or as typed base64 data."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


def require_zoo(*names: str) -> None:
    """Fail loudly (at collection) when the shipped zoo lacks a model a page test needs.

    The zoo ships in ``assets/zoo``; a missing model is a broken checkout, not a reason to skip.
    """
    have = {m["name"] for m in zoo.list_zoo()}
    missing = sorted(set(names) - have)
    if missing:
        pytest.fail(f"the shipped zoo lacks {', '.join(missing)} (assets/zoo; rebuild with "
                    "`python -m distill_core zoo build`)", pytrace=False)
