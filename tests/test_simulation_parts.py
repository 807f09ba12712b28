"""The simulator's parts: it names the kind of request that is slow, not just the slowest
request, and a failed run keeps the logs that say why."""

import shutil
from pathlib import Path

import pytest

from grantflow.simulation.command import _keep_logs
from grantflow.simulation.http import Api, kind_of

pytestmark = pytest.mark.unit


def test_each_request_the_simulated_people_make_has_its_kind() -> None:
    assert kind_of("POST", "/v1/applications") == "submit"
    assert kind_of("GET", "/v1/applications") == "read"
    assert kind_of("POST", "/v1/applications/a1/revision") == "revise or withdraw"
    assert kind_of("POST", "/v1/reviews/t1/submission") == "review action"
    assert kind_of("POST", "/v1/council-sessions/s1/votes") == "vote"
    assert kind_of("POST", "/v1/council-sessions/s1/close") == "council session"
    assert kind_of("POST", "/v1/admin/applications/a1/pilot/evaluator?evaluator_id=e") == (
        "admin action"
    )
    assert kind_of("POST", "/v1/sites/s1/report") == "agreement, pilot, report"
    assert kind_of("POST", "/v1/users") == "set-up"


def test_the_slowest_kind_comes_first_with_its_own_percentiles() -> None:
    api = Api(client=None)  # type: ignore[arg-type]
    api.by_kind = {"read": [0.010] * 99 + [0.020], "vote": [0.100, 0.300]}
    rows = api.by_kind_ms()
    assert list(rows) == ["vote", "read"]
    assert rows["vote"] == {"requests": 2, "p50_ms": 300.0, "p99_ms": 300.0}
    assert rows["read"]["p50_ms"] == 10.0 and rows["read"]["p99_ms"] == 20.0


def test_a_failed_simulation_keeps_the_logs_of_its_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "worker.log").write_text("Failing workflow task: deadlock\n")
    _keep_logs(home)
    kept = Path(capsys.readouterr().err.split(" kept in ")[1].split()[0])
    try:
        assert (kept / "worker.log").read_text() == "Failing workflow task: deadlock\n"
    finally:
        shutil.rmtree(kept)
