"""Languages: the gettext catalogues (ru, en) and the formats people read (money, dates with
their time zone, "in 3 days"). The pages and the e-mails use the same catalogues.

The catalogues are the .po files themselves, compiled in memory when first used: a newcomer
has no step to run, and a translator edits one file."""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

from babel import Locale, negotiate_locale
from babel.dates import format_date, format_datetime, format_timedelta, get_timezone_location
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LOCALES = ("ru", "en")
DEFAULT_LOCALE = "ru"
DEFAULT_TIME_ZONE = "Europe/Moscow"  # the operator's city
CATALOGUES = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"

_current: contextvars.ContextVar[str] = contextvars.ContextVar("locale", default=DEFAULT_LOCALE)


@cache
def translations(locale: str) -> NullTranslations:
    """The locale's catalogue, read from its .po file once per process."""
    path = CATALOGUES / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def current_locale() -> str:
    return _current.get()


@contextmanager
def using(locale: str) -> Iterator[None]:
    """Translate in `locale` within the block (the task's own context: requests never mix)."""
    token = _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    try:
        yield
    finally:
        _current.reset(token)


def set_locale(locale: str) -> None:
    """Translate in `locale` for the rest of this task (a request's own context)."""
    _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)


def gettext(message: str, **variables: object) -> str:
    text = translations(_current.get()).ugettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: object) -> str:
    """The plural form for `num` (Russian has three: 1 заявка, 3 заявки, 5 заявок)."""
    text = translations(_current.get()).ungettext(singular, plural, num)
    return text % {"num": num, **variables}


_ = gettext


def negotiate(accept_language: str | None) -> str:
    """The best of our locales for a browser's Accept-Language header."""
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _sep, quality = part.strip().partition(";q=")
        try:
            q = float(quality) if quality else 1.0
        except ValueError:
            continue
        if tag:
            wanted.append((q, tag.replace("-", "_")))
    ordered = [tag for _q, tag in sorted(wanted, key=lambda w: -w[0])]
    return negotiate_locale(ordered, list(LOCALES)) or DEFAULT_LOCALE


def valid_time_zone(name: str) -> bool:
    return name in _time_zones()


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone_choices() -> list[str]:
    """Time zones to choose from: Russia's first, then the rest of the world."""
    russian = [
        "Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg",
        "Asia/Omsk", "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Yakutsk",
        "Asia/Vladivostok", "Asia/Magadan", "Asia/Kamchatka",
    ]  # fmt: skip
    rest = sorted(z for z in _time_zones() if "/" in z and z not in russian)
    return [*russian, "UTC", *rest]


def time_zone_options(now: datetime) -> list[tuple[str, str]]:
    """The time zones to choose from, each named by its city and offset in the current
    language ("Москва, UTC+03:00"); worked out once an hour per language (554 zones)."""
    return _time_zone_options(_current.get(), now.strftime("%Y-%m-%dT%H"))


@cache
def _time_zone_options(locale: str, hour: str) -> list[tuple[str, str]]:
    at = datetime.fromisoformat(f"{hour}:00+00:00")
    with using(locale):
        return [(zone, zone_label(zone, at)) for zone in time_zone_choices()]


def money(amount: int | float | None) -> str:
    """Whole roubles, grouped as the locale groups them: "30 000 000 ₽"."""
    if amount is None:
        return ""
    return f"{format_decimal(round(amount), locale=_current.get())}\u00a0₽"


def number(value: int | float) -> str:
    return format_decimal(value, locale=_current.get())


def percent(share: float) -> str:
    return f"{format_decimal(round(share * 100, 1), locale=_current.get())}\u00a0%"


def zone_label(zone: str, at: datetime) -> str:
    """The zone as a person reads it: its city and its offset from UTC at `at`."""
    offset = at.astimezone(ZoneInfo(zone)).utcoffset() or timedelta(0)
    return _zone_label(zone, _current.get(), offset)


@cache
def _zone_label(zone: str, locale: str, offset: timedelta) -> str:
    # Babel's city lookup costs about 0.1 ms, and a page's history says it for every line
    # (over a hundred for one lifecycle): a zone's label changes only with its offset (summer time).
    city = get_timezone_location(ZoneInfo(zone), locale=locale, return_city=True)
    minutes = int(offset.total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    return f"{city}, UTC{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"  # Babel's "xxx"


def when(at: datetime, zone: str) -> str:
    """A moment in the reader's time zone, the zone named: "5 March 2026, 18:00 (Moscow,
    UTC+03:00)". Never a bare time: users read GMT as their own and miss deadlines."""
    local = at.astimezone(ZoneInfo(zone))
    # Babel's "d MMMM y, HH:mm" in two parts: the day's words once per day and locale (Babel
    # takes about 0.05 ms a call, and an admin's history has over a hundred lines), the hour and
    # minute as the pattern gives them (two digits each, Latin in both languages).
    shown = f"{_day(local.date(), _current.get())}, {local:%H:%M}"
    return f"{shown} ({zone_label(zone, at)})"


@lru_cache(maxsize=4096)
def _day(on: date, locale: str) -> str:
    return format_date(on, "d MMMM y", locale=locale)


def day(at: datetime, zone: str) -> str:
    return format_datetime(at, "d MMMM y", tzinfo=ZoneInfo(zone), locale=_current.get())


def duration(span: timedelta) -> str:
    """A length of time in words: "14 days", "1 hour"."""
    return format_timedelta(span, threshold=1.5, locale=_current.get())


def relative(at: datetime, now: datetime) -> str:
    """ "in 3 days" before `at`, "overdue by 2 days" after it."""
    left = at - now
    span = format_timedelta(abs(left), threshold=1.5, locale=_current.get())
    if left >= timedelta(0):
        return gettext("in %(span)s", span=span)
    return gettext("overdue by %(span)s", span=span)


def language_name(locale: str) -> str:
    """A language named in itself, as a switch should show it ("Русский", "English")."""
    return (Locale.parse(locale).get_display_name(locale) or locale).capitalize()
