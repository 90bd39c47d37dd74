"""Class mode: who may do what when the lab is served to a classroom network.

By default the app listens on this machine only (``.streamlit/config.toml``: ``server.address =
"127.0.0.1"``). ``streamlit run app.py --server.address 0.0.0.0`` serves a class: a browser on
another machine is then a *visitor*, who may explore, attack and train small jobs (the limits
below, at most one running job each) but not delete runs, import models or stop other people's
jobs. The teacher's browser on this machine (``http://localhost:8501``) keeps every right.

Who is who is read from the connection's address (``st.context.ip_address``; Streamlit reports a
loopback connection as None). Behind a reverse proxy on this machine every browser looks local
and so gets the teacher's rights: serve a class directly, not through a proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import streamlit as st

from distill_core.data import list_datasets
from distill_core.papers.defensive import POINT_DATASETS
from distill_core.spec import TrainSpec
from ui.jobs import JOBS

VISITOR_MAX_EPOCHS = 5                  # per run on an image set
VISITOR_MAX_POINT_EPOCHS = 50           # per run on a 2-D point set (an epoch there takes well under a second)
VISITOR_MAX_RUNS = 4                    # per job (a defensive pair, a short sweep)
VISITOR_MODELS = ("mlp", "papernot-cnn", "small-cnn", "resnet8")   # the models that train in seconds on a CPU
VISITOR_JOBS_AT_ONCE = 8                # visitors' running jobs in all: each is a worker process with its own torch
VISITOR_LIMITS = (f"embedded datasets, the models {', '.join(VISITOR_MODELS)}, at most {VISITOR_MAX_EPOCHS} epochs "
                  f"per run ({VISITOR_MAX_POINT_EPOCHS} on the 2-D sets), {VISITOR_MAX_RUNS} runs per job, one "
                  f"running job each and {VISITOR_JOBS_AT_ONCE} for the whole class")


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)          # ::ffff:127.0.0.1 on a dual-stack socket
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _server_address() -> str | None:
    return st.get_option("server.address")


def _client_ip() -> str | None:
    return st.context.ip_address


def network_address() -> str | None:
    """This machine's address on the network students reach it by (the interface of the default route; no packet
    is sent), or None when there is none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if _is_loopback(address) else address


def shareable(url: str) -> str:
    """``url`` as other machines can open it: in class mode, a ``localhost`` / loopback host (the teacher's own
    browser) is replaced by :func:`network_address`; otherwise unchanged."""
    parts = urlsplit(url)
    if not (serving_a_class() and parts.hostname and _is_loopback(parts.hostname)):
        return url
    address = network_address()
    if address is None:
        return url
    netloc = address + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def serving_a_class() -> bool:
    """True when the server listens beyond this machine (``server.address`` unset or not a loopback address)."""
    address = _server_address()
    return not address or not _is_loopback(address)


def is_visitor() -> bool:
    """True for a browser on another machine while serving a class; False for this machine's browser (whose
    address is loopback, or None: Streamlit's value for a loopback connection and outside a server)."""
    ip = _client_ip()
    return serving_a_class() and ip is not None and not _is_loopback(ip)


def job_owner() -> str | None:
    """What a page stores as ``TrainingJob.owner``: the visitor's address, None for the teacher."""
    return _client_ip() if is_visitor() else None


def may_control(job) -> bool:
    """Whether this browser may stop or steer ``job`` (Stop, live tuning): the teacher any job, a visitor only
    their own."""
    return not is_visitor() or job.owner == _client_ip()


def visitor_job_refusal(specs: list[TrainSpec]) -> str | None:
    """Why a visitor may not start a job of these stages (one sentence), or None (the teacher: always None)."""
    if not is_visitor():
        return None
    embedded = list_datasets(embedded_only=True)
    for s in specs:
        if s.dataset not in embedded:
            return (f"In class mode visitors train on the embedded datasets only ({', '.join(embedded)}), "
                    f"not {s.dataset}.")
        if s.model not in VISITOR_MODELS:
            return f"In class mode visitors train small models only ({', '.join(VISITOR_MODELS)}), not {s.model}."
        most = VISITOR_MAX_POINT_EPOCHS if s.dataset in POINT_DATASETS else VISITOR_MAX_EPOCHS
        if s.train.epochs > most:
            return (f"In class mode visitors train at most {most} epochs per run on {s.dataset}; this asks for "
                    f"{s.train.epochs}.")
    if len(specs) > VISITOR_MAX_RUNS:
        return f"In class mode a visitor's job has at most {VISITOR_MAX_RUNS} runs; this one has {len(specs)}."
    ip = _client_ip()
    visitors = [j for j in JOBS.running() if j.owner is not None]
    if any(j.owner == ip for j in visitors):
        return "In class mode each visitor runs one job at a time: yours is still running (see the Train page)."
    if len(visitors) >= VISITOR_JOBS_AT_ONCE:
        return (f"In class mode visitors run at most {VISITOR_JOBS_AT_ONCE} jobs at once and that many are running: "
                "try again when one has finished.")
    return None


def teacher_only(what: str) -> str | None:
    """For a visitor, why ``what`` (server-wide work: a reproduction, AutoAttack on every run) is refused; else None."""
    if is_visitor():
        return f"In class mode, {what} runs from the teacher's machine only."
    return None


def visitor_notice(container=st) -> None:
    """To a visitor, a caption beside a Start button: the limits of a visitor's job."""
    if is_visitor():
        container.caption(f":material/school: Class mode: your jobs are limited to {VISITOR_LIMITS}.")


def sidebar_note() -> None:
    """In class mode, one caption in the sidebar: what visitors may do (and, to a visitor, what they may not)."""
    if not serving_a_class():
        return
    who = ("You are a visitor: deleting runs, importing models and stopping others' jobs are for the teacher's "
           "machine." if is_visitor() else "Only this machine's browser can delete runs and import models.")
    st.caption(f":material/school: **Class mode:** visitors can explore, attack and train small jobs "
               f"({VISITOR_LIMITS}). {who}")
