"""Class mode (ui/classroom.py): local only by default; served to a class, visitors train small jobs and the
teacher's browser on the machine keeps deleting runs and importing models."""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.spec import TrainSpec
from distill_core.train import TrainConfig
from ui import classroom
from ui.jobs import JOBS, TrainingJob

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "train_page.py")
LAN_IP = "192.168.1.23"


def _serve(monkeypatch, address: str | None, ip: str | None) -> None:
    """Pretend the server listens on ``address`` and this browser connects from ``ip``."""
    monkeypatch.setattr(classroom, "_server_address", lambda: address)
    monkeypatch.setattr(classroom, "_client_ip", lambda: ip)


def _spec(dataset: str = "mnist-5k", model: str = "small-cnn", epochs: int = 3) -> TrainSpec:
    return TrainSpec(dataset=dataset, model=model, method="standard", train=TrainConfig(epochs=epochs))


def test_the_app_serves_this_machine_only_by_default():
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    server = re.search(r"^\[server\]$(.*?)(?=^\[|\Z)", config, re.M | re.S)     # the [server] table
    assert server and re.search(r'^address = "127\.0\.0\.1"$', server.group(1), re.M)


def test_the_readme_states_the_limits_the_code_applies():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "--server.address 0.0.0.0" in readme
    assert (f"the models {', '.join(classroom.VISITOR_MODELS[:-1])} and {classroom.VISITOR_MODELS[-1]}, at most "
            f"{classroom.VISITOR_MAX_EPOCHS} epochs per run ({classroom.VISITOR_MAX_POINT_EPOCHS} on the 2-D sets), "
            f"at most {classroom.VISITOR_MAX_RUNS} runs per job, one running job each and "
            f"{classroom.VISITOR_JOBS_AT_ONCE} for the whole class") in readme


@pytest.mark.parametrize("address, serving", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                              ("0.0.0.0", True), ("::", True), ("192.168.1.5", True),
                                              (None, True)])    # unset: Streamlit listens on every interface
def test_serving_a_class_when_the_server_listens_beyond_loopback(monkeypatch, address, serving):
    _serve(monkeypatch, address, None)
    assert classroom.serving_a_class() is serving


@pytest.mark.parametrize("ip, visitor", [(None, False), ("127.0.0.2", False), ("::1", False),
                                         ("::ffff:127.0.0.1", False), (LAN_IP, True), ("fe80::1", True)])
def test_a_visitor_is_a_browser_on_another_machine(monkeypatch, ip, visitor):
    _serve(monkeypatch, "0.0.0.0", ip)
    assert classroom.is_visitor() is visitor
    assert classroom.job_owner() == (ip if visitor else None)
    _serve(monkeypatch, "127.0.0.1", ip)        # not serving a class: nobody is a visitor
    assert not classroom.is_visitor()


def test_visitor_job_refusal_says_which_limit(monkeypatch):
    running: list = []
    monkeypatch.setattr(classroom, "JOBS", SimpleNamespace(running=lambda: running))
    _serve(monkeypatch, "0.0.0.0", None)         # the teacher: no limit
    assert classroom.visitor_job_refusal([_spec("cifar10", "resnet18", 200)] * 9) is None
    _serve(monkeypatch, "0.0.0.0", LAN_IP)
    assert classroom.visitor_job_refusal([_spec()]) is None
    assert classroom.visitor_job_refusal([_spec("moons", "mlp", 50)]) is None
    assert "embedded datasets only" in classroom.visitor_job_refusal([_spec("cifar10")])
    assert "small models only" in classroom.visitor_job_refusal([_spec(model="resnet18")])
    assert "at most 5 epochs per run on mnist-5k; this asks for 6" in classroom.visitor_job_refusal([_spec(epochs=6)])
    assert "at most 50 epochs" in classroom.visitor_job_refusal([_spec("moons", "mlp", 51)])
    assert "at most 4 runs; this one has 5" in classroom.visitor_job_refusal([_spec()] * 5)
    running[:] = [SimpleNamespace(owner=None), SimpleNamespace(owner="10.0.0.9")]   # the teacher's, another's
    assert classroom.visitor_job_refusal([_spec()]) is None
    running.append(SimpleNamespace(owner=LAN_IP))
    assert "one job at a time" in classroom.visitor_job_refusal([_spec()])
    running[:] = [SimpleNamespace(owner=f"10.0.0.{i}") for i in range(classroom.VISITOR_JOBS_AT_ONCE)]
    assert "at most 8 jobs at once" in classroom.visitor_job_refusal([_spec()])


def test_a_visitor_stops_and_steers_only_their_own_jobs(monkeypatch):
    mine, theirs, teachers = (SimpleNamespace(owner=o) for o in (LAN_IP, "10.0.0.9", None))
    _serve(monkeypatch, "0.0.0.0", LAN_IP)
    assert classroom.may_control(mine) and not classroom.may_control(theirs) and not classroom.may_control(teachers)
    _serve(monkeypatch, "0.0.0.0", None)
    assert all(classroom.may_control(j) for j in (mine, theirs, teachers))


def _sidebar_page():
    from ui.classroom import sidebar_note

    sidebar_note()


def test_the_sidebar_says_class_mode_only_when_serving_a_class(monkeypatch):
    _serve(monkeypatch, "127.0.0.1", None)
    assert not AppTest.from_function(_sidebar_page).run().caption
    _serve(monkeypatch, "0.0.0.0", LAN_IP)
    [note] = AppTest.from_function(_sidebar_page).run().caption
    assert "Class mode" in note.value and "You are a visitor" in note.value


@pytest.fixture
def train_page(tmp_path, monkeypatch):
    """The Train page on moons, with one (unreadable) run folder in its runs folder; call it after ``_serve``."""
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    old = tmp_path / "runs" / "old-run"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{not json")

    def run() -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=90)
        at.session_state["dataset"] = "moons"
        at.run()
        assert not at.exception
        at.old_run = old
        return at
    return run


def test_the_teacher_deletes_runs_and_imports_while_serving_a_class(monkeypatch, train_page):
    _serve(monkeypatch, "0.0.0.0", None)         # the browser on the machine itself
    at = train_page()
    assert at.get("file_uploader"), "the import form is missing"
    at.selectbox(key="train_delete_run").set_value("old-run")
    at.checkbox(key="train_delete_confirm").check().run()
    assert not at.button(key="train_delete_go").disabled
    at.button(key="train_delete_go").click().run()
    assert not at.exception and not at.old_run.exists()


def test_a_visitor_cannot_delete_or_import_and_trains_within_the_limits(monkeypatch, train_page):
    _serve(monkeypatch, "0.0.0.0", LAN_IP)
    monkeypatch.setattr(TrainingJob, "start", lambda self: self)     # no worker process: the owner is what counts
    at = train_page()
    assert not at.get("file_uploader")
    assert any("only the teacher's machine imports models" in c.value for c in at.caption)
    at.checkbox(key="train_delete_confirm").check().run()
    assert at.button(key="train_delete_go").disabled
    assert any("only the teacher's machine deletes runs" in c.value for c in at.caption)
    assert any("your jobs are limited to" in c.value for c in at.caption)
    at.number_input(key="train_epochs").set_value(51)
    at.button(key="train_start").click().run()
    assert not at.exception and not JOBS.all()
    assert any("at most 50 epochs per run on moons; this asks for 51" in e.value for e in at.error)
    at.number_input(key="train_epochs").set_value(2)
    at.button(key="train_start").click().run()
    assert not at.exception
    [job] = JOBS.all()
    assert job.owner == LAN_IP
    job._status = "running"                      # as if its worker were training
    at.button(key="train_start").click().run()
    assert len(JOBS.all()) == 1
    assert any("one job at a time" in e.value for e in at.error)
    assert at.old_run.exists()


def test_a_link_the_teacher_copies_in_class_mode_names_the_network_address(monkeypatch):
    """The teacher browses at localhost; the links they hand out must open on the students' machines."""
    monkeypatch.setattr(classroom, "network_address", lambda: "192.0.2.7")
    _serve(monkeypatch, "0.0.0.0", None)
    assert classroom.shareable("http://localhost:8501/attack-lab") == "http://192.0.2.7:8501/attack-lab"
    assert classroom.shareable("http://127.0.0.1:8501/x") == "http://192.0.2.7:8501/x"
    assert classroom.shareable("http://192.0.2.7:8501/x") == "http://192.0.2.7:8501/x"
    _serve(monkeypatch, "127.0.0.1", None)                       # not serving a class: unchanged
    assert classroom.shareable("http://localhost:8501/x") == "http://localhost:8501/x"
    address = classroom.network_address()                        # the real lookup: an address, never loopback
    assert address is None or not classroom._is_loopback(address)


def test_a_visitor_finds_only_their_own_job_on_a_page_and_server_wide_work_is_the_teachers(monkeypatch, tmp_path):
    from ui.jobs import JobBoard

    board = JobBoard()
    teacher = board.add(TrainingJob([_spec()], tmp_path, origin="defensive"))
    student = board.add(TrainingJob([_spec()], tmp_path, origin="defensive", owner="192.0.2.9"))
    teacher.started, student.started = 2.0, 1.0                        # the teacher's is the latest
    assert board.page_job("defensive") is teacher                      # the teacher (no owner filter): the latest
    assert board.page_job("defensive", owner="192.0.2.9") is student   # a visitor: their own, not the teacher's
    assert board.page_job("defensive", owner="192.0.2.50") is None     # another visitor: none (Start not blocked)
    _serve(monkeypatch, "0.0.0.0", "192.0.2.9")
    assert "teacher's machine" in classroom.teacher_only("the quick sweep")
    _serve(monkeypatch, "0.0.0.0", None)
    assert classroom.teacher_only("the quick sweep") is None
