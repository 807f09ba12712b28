# ruff: noqa: RUF001 - Russian is what these tests read: its letters are meant
"""Languages as people read them: Russian plural forms, money, deadlines in the reader's time
zone with the zone named, "in 3 days" and "overdue by 2 days"; and catalogues that hold every
text the pages and e-mails show, translated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from grantflow import i18n
from grantflow.pages.agreement import tranche_text
from grantflow.pages.display import refusal, stage_name, status_bar, why
from schemas.agreement import Tranche, TrancheStatus
from schemas.common import Role, Stage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOON = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "says"),
    [(1, "У вас 1 заявка."), (3, "У вас 3 заявки."), (5, "У вас 5 заявок."),
     (11, "У вас 11 заявок."), (21, "У вас 21 заявка."), (22, "У вас 22 заявки.")],
)  # fmt: skip
def test_russian_counts_applications_with_its_three_plural_forms(n: int, says: str) -> None:
    with i18n.using("ru"):
        shown = i18n.ngettext("You have %(num)d application.", "You have %(num)d applications.", n)
    assert shown == says


@pytest.mark.parametrize(
    ("n", "says"),
    [(1, "проголосует 1 член совета"), (2, "проголосуют 2 члена совета"),
     (5, "проголосуют 5 членов совета")],
)  # fmt: skip
def test_the_councils_quorum_is_said_with_russian_plurals(n: int, says: str) -> None:
    singular = (
        "An item is decided by the majority of the votes cast once %(num)d member has voted; "
        "you may change your vote until it is decided."
    )
    plural = singular.replace("member has", "members have")
    with i18n.using("ru"):
        assert says in i18n.ngettext(singular, plural, n)
    with i18n.using("en"):
        assert "once 1 member has voted" in i18n.ngettext(singular, plural, 1)


def test_amounts_in_recorded_reasons_read_as_money_in_each_language() -> None:
    approved = "approved 3 of 3 for 30 000 000 RUB"
    with i18n.using("ru"):
        assert why(approved) == "approved 3 of 3 for 30\u00a0000\u00a0000\u00a0₽"
    with i18n.using("en"):
        assert why(approved) == "approved 3 of 3 for 30,000,000\u00a0₽"
        assert why("tranche 2: 15000000 RUB") == "tranche 2: 15,000,000\u00a0₽"
        assert why("report 2 is due") == "report 2 is due"


def test_a_held_tranche_names_the_report_it_waits_for() -> None:
    held = Tranche(
        seq=2,
        amount_rub=15_000_000,
        due_at=NOON,
        status=TrancheStatus.held,
        held_reason="report 3 is not accepted yet",
    )
    with i18n.using("ru"):
        assert tranche_text(held, "Europe/Moscow") == "Задержан, пока не принят отчёт 3"
    with i18n.using("en"):
        assert tranche_text(held, "Europe/Moscow") == "Held back until report 3 is accepted"


def test_money_is_grouped_as_each_language_groups_it() -> None:
    with i18n.using("ru"):
        assert i18n.money(30_000_000) == "30\u00a0000\u00a0000\u00a0₽"
    with i18n.using("en"):
        assert i18n.money(2_540_000_000) == "2,540,000,000\u00a0₽"


def test_a_deadline_is_shown_in_the_readers_zone_with_the_zone_named() -> None:
    with i18n.using("ru"):
        assert i18n.when(NOON, "Europe/Moscow") == "5 марта 2026, 12:00 (Москва, UTC+03:00)"
        assert i18n.when(NOON, "Asia/Yekaterinburg").startswith("5 марта 2026, 14:00 (Екатеринбург")
    with i18n.using("en"):
        assert i18n.when(NOON, "America/New_York") == "5 March 2026, 04:00 (New York, UTC-05:00)"


def test_time_left_reads_in_days_and_overdue_reads_as_overdue() -> None:
    with i18n.using("en"):
        assert i18n.relative(NOON + timedelta(days=3), NOON) == "in 3 days"
        assert i18n.relative(NOON - timedelta(days=2), NOON) == "overdue by 2 days"
    with i18n.using("ru"):
        assert i18n.relative(NOON + timedelta(days=3), NOON) == "через 3 дня"
        assert i18n.relative(NOON - timedelta(days=5), NOON) == "просрочено на 5 дней"


def test_an_applicant_never_reads_a_stage_by_its_internal_name() -> None:
    for locale in i18n.LOCALES:
        with i18n.using(locale):
            for stage in Stage:
                name = stage_name(stage, Role.applicant)
                assert "_" not in name and name != stage.value, (locale, stage)
    with i18n.using("en"):
        assert stage_name(Stage.under_review, Role.applicant) == "With the experts"
        assert stage_name(Stage.under_review, Role.reviewer) == "Under review"


def test_the_status_bar_says_where_an_application_stopped() -> None:
    with i18n.using("en"):
        bar = status_bar(Stage.revision_requested)
    assert [s.state for s in bar][:3] == ["done", "attention", "todo"]
    assert status_bar(Stage.withdrawn) == []
    assert [s.state for s in status_bar(Stage.closed)] == ["done"] * 8


def test_accept_language_picks_the_best_of_our_languages() -> None:
    assert i18n.negotiate("en-GB,en;q=0.9,ru;q=0.5") == "en"
    assert i18n.negotiate("de-DE,ru;q=0.8,en;q=0.5") == "ru"
    assert i18n.negotiate("fr") == i18n.DEFAULT_LOCALE
    assert i18n.negotiate(None) == i18n.DEFAULT_LOCALE


def _extracted() -> set[str]:
    method_map = [
        ("grantflow/**.py", "python"),
        ("grantflow/pages/templates/**.html", "jinja2"),
    ]
    options = {"grantflow/pages/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_text_of_the_pages_is_in_the_russian_catalogue_translated() -> None:
    path = ROOT / "grantflow" / "locale" / "ru" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalogue = read_po(po, locale="ru")
    ids = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalogue if m.id}
    missing = sorted(_extracted() - ids)
    assert not missing, f"run `make messages` and translate: {missing}"
    untranslated = [
        m.id
        for m in catalogue
        if m.id and not (all(m.string) if isinstance(m.string, tuple) else m.string)
    ]
    assert not untranslated, f"translate in {path}: {untranslated}"


def test_a_refusal_an_applicant_meets_is_said_in_their_language() -> None:
    closed = "intake for 'Grants 2026' closed at 2026-03-01T00:00:00+00:00: late applications"
    with i18n.using("ru"):
        assert refusal(closed) == "Приём заявок закрыт: опоздавшие заявки не принимаются."
        assert refusal("the application is already withdrawn").startswith("Рассмотрение")
        # One nobody translated yet keeps the service's own words rather than saying nothing.
        assert refusal("too many changes in flight") == "too many changes in flight"
