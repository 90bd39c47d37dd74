"""A page's main settings in the address bar (``st.query_params``), so a link reopens the same view.

A page declares its settings once, before drawing its widgets::

    link = UrlState("attack-lab", [
        Choice("dataset", "dataset", app_datasets),                   # URL name, widget key, allowed values
        Number("index", "atk_index", 0, lambda: n - 1, integer=True),
        Choices("models", "atk_models", lambda: [r.label for r in available_models(ss.dataset)]),
    ])
    link.apply()           # a link's values into the widgets (once per link); bad ones: default + a notice
    ... widgets ...
    link.publish()         # the widgets' values into the address bar (only when they changed) + "Copy link"

Reading happens when the address bar holds a query string this session has not applied or written
yet (a link opened, pasted or shared), so the user's own changes are never overwritten. Writing
replaces the query string only when it differs, so a rerun never triggers another one (no reload
loop). Values are validated against what the page offers now: a model that no longer exists, a
number out of range, text where a number goes fall back to the page's default with one visible
notice, never an exception. Uploaded or drawn images never go into a link.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException

from ui.classroom import shareable

Options = Sequence[Any] | Callable[[], Sequence[Any]]


def _resolve(options: Options) -> list:
    return list(options() if callable(options) else options)


def _text(value: Any) -> str:
    """A value as a link writes it: floats without trailing zeros (``5``, ``0.3``), anything else ``str``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class BadValue(ValueError):
    """A link's value that the page cannot use; the message says why in a few words."""


@dataclass
class Param:
    """One setting: its name in the URL, its widget key in ``st.session_state``, how to read and write it."""

    name: str
    key: str

    def parse(self, raw: list[str]) -> Any:
        raise NotImplementedError

    def format(self, value: Any) -> list[str]:
        return [str(value)]


@dataclass
class Choice(Param):
    """One of a list of values (a select box, radio, select slider); the list may be computed at apply time."""

    options: Options = ()

    def parse(self, raw: list[str]) -> Any:
        options = _resolve(self.options)
        by_text = {_text(o): o for o in options}
        if raw[-1] in by_text:
            return by_text[raw[-1]]
        # a number written another way ("5.0" for 5), or within 2 % of one offered (T = 5 on a grid holding 5.01)
        try:
            number = float(raw[-1])
            numbers = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
            nearest = min(numbers, key=lambda o: abs(o - number))
            if math.isclose(nearest, number, rel_tol=0.02):
                return nearest
        except ValueError:
            pass
        raise BadValue(f"{raw[-1]!r} is not one of the choices here")

    def format(self, value: Any) -> list[str]:
        return [_text(value)]


@dataclass
class Choices(Param):
    """Several of a list of values (a multiselect); repeated in the URL (``models=a&models=b``)."""

    options: Options = ()

    def parse(self, raw: list[str]) -> Any:
        options = _resolve(self.options)
        by_text = {str(o): o for o in options}
        unknown = [r for r in raw if r and r not in by_text]
        if unknown:
            raise BadValue(f"{', '.join(repr(u) for u in unknown)} not available here")
        return [by_text[r] for r in dict.fromkeys(raw) if r]

    def format(self, value: Any) -> list[str]:
        return [str(v) for v in value or []]


@dataclass
class Number(Param):
    """A number in ``[lo, hi]`` (bounds may be computed at apply time); ``integer`` for counts and indices."""

    lo: float | Callable[[], float] = -math.inf
    hi: float | Callable[[], float] = math.inf
    integer: bool = False

    def parse(self, raw: list[str]) -> Any:
        lo = self.lo() if callable(self.lo) else self.lo
        hi = self.hi() if callable(self.hi) else self.hi
        try:
            value = float(raw[-1])
        except ValueError:
            raise BadValue(f"{raw[-1]!r} is not a number") from None
        if not math.isfinite(value) or (self.integer and value != int(value)):
            raise BadValue(f"{raw[-1]!r} is not {'a whole number' if self.integer else 'a finite number'}")
        if not lo <= value <= hi:
            raise BadValue(f"{raw[-1]} is outside {lo:g} - {hi:g}")
        return int(value) if self.integer else value

    def format(self, value: Any) -> list[str]:
        return [f"{value:g}" if isinstance(value, float) else str(value)]


@dataclass
class Flag(Param):
    """A checkbox or toggle: ``1`` / ``0`` (``true`` / ``false`` accepted)."""

    def parse(self, raw: list[str]) -> Any:
        text = raw[-1].lower()
        if text not in ("1", "0", "true", "false"):
            raise BadValue(f"{raw[-1]!r} is not 1 or 0")
        return text in ("1", "true")

    def format(self, value: Any) -> list[str]:
        return ["1" if value else "0"]


@dataclass
class Dynamic:
    """Settings that depend on earlier ones (an attack's own parameters): ``build()`` returns them, called after
    the settings before it were applied, and again when publishing."""

    build: Callable[[], Sequence[Param]]


def query_string(params: dict[str, list[str]]) -> str:
    """``params`` as the address bar writes them (repeated keys for lists), in a stable order."""
    return urlencode([(k, v) for k, values in sorted(params.items()) for v in values])


class UrlState:
    """The settings of page ``page`` in the address bar: :meth:`apply` before the widgets, :meth:`publish` after."""

    def __init__(self, page: str, params: Sequence[Param | Dynamic]):
        self.page = page
        self.params = list(params)
        self.notices: list[str] = []
        self.applied = False                       # True when this run read a new link
        self.extra: dict[str, list[str]] = {}      # published beside the settings (e.g. run=1: show the result)

    def _expanded(self):
        for p in self.params:
            if isinstance(p, Dynamic):
                yield from p.build()
            else:
                yield p

    # -- reading

    def _current(self) -> dict[str, list[str]]:
        qp = st.query_params
        return {k: qp.get_all(k) for k in qp.keys()}

    def _seen(self) -> dict[str, str]:
        return st.session_state.setdefault("_url_seen", {})

    def apply(self) -> list[str]:
        """Put a new link's values into the widgets' session state (before the widgets are drawn).

        Only a query string this session has not applied or written for this page is read. Each
        parameter is checked in order (a later one may depend on an earlier one, e.g. the models
        offered depend on the dataset); a bad one keeps the page's value and adds a notice, shown at
        once. Unknown parameter names are ignored. Returns the notices.
        """
        current = self._current()
        qs = query_string(current)
        written = st.session_state.setdefault("_url_written", {})
        if not current or self._seen().get(self.page) == qs or written.get(qs, self.page) != self.page:
            return []           # applied already, written by this page, or left over from another page
        self.applied = True
        ss = st.session_state
        pending = {}
        for p in self._expanded():               # in order: a Dynamic's parameters see the ones applied before
            raw = current.get(p.name)
            if not raw:
                continue
            try:
                value = p.parse(raw)
            except BadValue as e:
                self.notices.append(f"**{p.name}**: {e}")
                continue
            if ss.get(p.key) == value:
                continue
            try:
                ss[p.key] = value
            except StreamlitAPIException:        # a widget drawn before the page (the sidebar's dataset box)
                pending[p.key] = value
        if pending:                              # app.py puts them in before it draws the sidebar; the page is
            ss["_url_pending"] = pending         # then read again from the top, the link still unapplied
            st.rerun()
        self._seen()[self.page] = qs
        if self.notices:
            st.warning("This link has settings the page cannot use, so their defaults are shown instead: "
                       + "; ".join(self.notices) + ".", icon=":material/link_off:")
        return self.notices

    # -- writing

    def values(self) -> dict[str, list[str]]:
        """The settings now, as URL values: those a link could give back (a widget not drawn this run, an uploaded
        image's source, a value the page would refuse are left out), then :attr:`extra`."""
        ss = st.session_state
        out = {}
        for p in self._expanded():
            if p.key not in ss or ss[p.key] is None:
                continue
            raw = p.format(ss[p.key])
            try:
                p.parse(raw or [""])
            except BadValue:
                continue
            out[p.name] = raw
        return {**out, **self.extra}

    def link(self) -> str:
        """This view's link: the page's address in the user's browser plus its settings."""
        base = shareable((st.context.url or "").split("?")[0])     # class mode: the address students can open
        return f"{base}?{query_string(self.values())}"

    def publish(self, container=st, note: str | None = None) -> str:
        """Write the settings into the address bar when they changed, and show a "Copy link" control.

        ``note``: a sentence under the link (e.g. that an uploaded image is not in it). Returns the link.
        """
        wanted = self.values()
        qs = query_string(wanted)
        if query_string(self._current()) != qs:
            st.query_params.from_dict(wanted)
        self._seen()[self.page] = qs
        st.session_state.setdefault("_url_written", {})[qs] = self.page
        link = self.link()
        with container.popover("Copy link", icon=":material/link:",
                               help="A link that reopens this page with these settings (for a class, a slide, "
                                    "a student)."):
            st.code(link, language=None, wrap_lines=True)
            st.caption("The copy icon at the code's top right copies it. " + (note or ""))
        return link


def apply_pending() -> None:
    """Before the sidebar is drawn (``app.py``): the link values a page could not set because their widget was
    already drawn (the sidebar's dataset box); the page then reruns and applies the rest of the link."""
    for key, value in st.session_state.pop("_url_pending", {}).items():
        st.session_state[key] = value
