"""Schedules: weekly windows and holidays (lotcontrol.schedule, pure), judged by the policy on the
lot's local time; the configuration's errors."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from lotcontrol.config import parse_config
from lotcontrol.errors import ConfigError
from lotcontrol.policy import FREE, Rules, admission, credential_admission
from lotcontrol.schedule import allowed, group, parse_window
from lotcontrol.store import Resident

BEIJING = ZoneInfo("Asia/Shanghai")


def at(text):
    """A local time in Beijing: 2026-12-04 is a Friday."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def resident(**fields):
    base = dict(id=1, name="A", unit=None, phone=None, note=None, status="active", valid_from=None,
                valid_until=None, created="", updated="")
    return Resident(**{**base, **fields})


DAY = group("day", ["mon-fri 06:00-23:00", "sat 08:00-20:00"], ["2026-10-01"])
NIGHT = group("night", ["fri 22:00-02:00"], ["2026-12-11"])


@pytest.mark.parametrize("when, open_", [
    ("2026-12-04 05:59:59", False), ("2026-12-04 06:00:00", True),  # Friday: start inclusive
    ("2026-12-04 22:59:59", True), ("2026-12-04 23:00:00", False),  # end exclusive
    ("2026-12-05 07:59", False), ("2026-12-05 08:00", True), ("2026-12-05 20:00", False),  # Saturday
    ("2026-12-06 12:00", False),  # Sunday: no window
    ("2026-10-01 12:00", False), ("2026-10-02 12:00", True),  # a holiday (a Thursday), then the Friday
])
def test_weekly_windows_and_a_holiday(when, open_):
    assert DAY.open_at(at(when)) is open_


@pytest.mark.parametrize("when, open_", [
    ("2026-12-04 21:59", False), ("2026-12-04 22:00", True), ("2026-12-04 23:59:59", True),
    ("2026-12-05 00:00", True), ("2026-12-05 01:59:59", True), ("2026-12-05 02:00", False),  # into Saturday
    ("2026-12-05 22:30", False), ("2026-12-06 01:00", False),  # Saturday night is not Friday's
    ("2026-12-11 23:00", False), ("2026-12-12 01:00", False),  # Friday the 11th a holiday: its night shut
])
def test_a_window_crossing_midnight_belongs_to_the_day_it_starts(when, open_):
    assert NIGHT.open_at(at(when)) is open_


def test_a_holiday_the_day_after_leaves_the_night_before_open():
    night = group("night", ["fri 22:00-02:00"], ["2026-12-05"])  # the Saturday
    assert night.open_at(at("2026-12-05 01:00")) is True
    assert night.open_at(at("2026-12-04 23:00")) is True


def test_day_lists_ranges_wrapping_and_the_whole_day():
    assert parse_window("fri-mon 10:00-11:00").days == {4, 5, 6, 0}
    assert parse_window("mon,wed,sat-sun 10:00-11:00").days == {0, 2, 5, 6}
    whole = group("all", ["daily 00:00-24:00"], [])
    assert whole.open_at(at("2026-12-06 00:00")) and whole.open_at(at("2026-12-06 23:59:59"))


@pytest.mark.parametrize("window, said", [
    ("mon-fry 06:00-23:00", "unknown day 'fry'"), ("mon 6-23", "'6' is not a time HH:MM"), ("mon-fri", "is not DAYS HH:MM-HH:MM"),
    ("mon 25:00-26:00", "is not a time of day"), ("mon 06:60-07:00", "is not a time of day"),
    ("mon 24:00-02:00", "is not a time of day"), ("mon 08:00-08:00", "is empty"),
    ("mon- 08:00-09:00", "is not a day or a range"), ("monday 08:00-09:00", "unknown day 'monday'"),
])
def test_a_bad_window_says_what_is_wrong(window, said):
    with pytest.raises(ValueError, match=said):
        parse_window(window)


def test_beijing_time_has_no_daylight_saving_and_utc_is_converted():
    """The lot's wall clock is UTC; a window is in site.timezone: 22:30 UTC is 06:30 the next day in
    Beijing, all year round (China keeps no daylight-saving time)."""
    for month in (1, 7):
        utc = dt.datetime(2026, month, 1, 22, 30, tzinfo=dt.timezone.utc)
        local = utc.astimezone(BEIJING)
        assert (local.hour, local.minute) == (6, 30)
    friday_morning = dt.datetime(2026, 12, 3, 22, 30, tzinfo=dt.timezone.utc).astimezone(BEIJING)
    assert DAY.open_at(friday_morning) is True
    assert DAY.open_at(dt.datetime(2026, 12, 3, 21, 30, tzinfo=dt.timezone.utc).astimezone(BEIJING)) is False


def test_no_groups_is_always_and_an_unknown_group_has_no_window():
    groups = {"day": DAY}
    assert allowed(groups, (), None) == (True, [])
    assert allowed(groups, ("day",), at("2026-12-04 12:00")) == (True, [])
    assert allowed(groups, ("gone",), at("2026-12-04 12:00")) == (False, ["gone"])
    assert allowed(groups, ("day", "gone"), at("2026-12-04 12:00")) == (True, ["gone"])
    assert allowed(groups, ("day",), None) == (False, [])  # the clock not synchronised


def admit(who, local, *, fire_alarm=False, **rules):
    return admission("grant", None, fire_alarm=fire_alarm, bays=FREE, lot_full="refuse", resident=who,
                     today=None if local is None else local.date(),
                     rules=Rules({"day": DAY, "night": NIGHT}, local, **rules))


def test_the_policy_refuses_outside_every_window_as_schedule():
    worker = resident(access_groups="day,night")
    assert admit(worker, at("2026-12-04 12:00")).grant
    assert admit(worker, at("2026-12-05 01:00")).grant  # Friday's night window
    refused = admit(worker, at("2026-12-05 03:00"))
    assert (refused.grant, refused.reason) == (False, "schedule")
    assert admit(resident(), at("2026-12-05 03:00")).grant  # no groups: any time


def test_the_midnight_edge():
    worker = resident(access_groups="day")
    assert admit(worker, at("2026-12-04 22:59:59")).grant
    assert admit(worker, at("2026-12-04 23:00:00")).reason == "schedule"
    night = resident(access_groups="night")
    assert admit(night, at("2026-12-04 23:59:59")).grant and admit(night, at("2026-12-05 00:00:00")).grant


def test_before_ntp_a_resident_in_groups_is_refused_and_others_are_not():
    refused = admit(resident(access_groups="day"), None)
    assert (refused.grant, refused.reason, refused.notes) == (False, "schedule", {"clock_unsynced": True})
    assert admit(resident(), None).grant


def test_precedence_fire_then_the_record_then_the_schedule():
    worker = resident(access_groups="day", status="suspended")
    assert admit(worker, at("2026-12-05 03:00"), fire_alarm=True).reason == "fire_alarm"
    assert admit(worker, at("2026-12-05 03:00")).reason == "suspended"


def test_a_card_outside_the_windows_is_refused_as_schedule():
    decision = credential_admission("ok", None, fire_alarm=False, bays=FREE, lot_full="refuse",
                                    resident=resident(access_groups="day"), today=None, site_mode="face_or_card",
                                    rules=Rules({"day": DAY}, at("2026-12-06 12:00")))
    assert (decision.grant, decision.reason) == (False, "schedule")


def test_anti_passback_enforce_refuses_a_second_entry_and_log_admits_and_says_it():
    noon = at("2026-12-04 12:00")
    inside = frozenset({1})
    assert admit(resident(), noon, antipassback="enforce", inside=inside).reason == "antipassback"
    logged = admit(resident(), noon, antipassback="log", inside=inside)
    assert (logged.grant, logged.notes) == (True, {"antipassback": True})
    assert admit(resident(), noon, antipassback="enforce").grant  # not counted inside
    assert admit(resident(antipassback="off"), noon, antipassback="enforce", inside=inside).grant  # their own
    assert admit(resident(antipassback="enforce"), noon, inside=inside).reason == "antipassback"


def config(groups, **access):
    return parse_config({"access": {"groups": groups, **access}})


def test_the_configuration_takes_groups_and_refuses_bad_ones_naming_them():
    good = config({"day": {"windows": ["mon-fri 06:00-23:00"], "holidays": ["2026-10-01"]}}, antipassback="log")
    assert good.access.groups["day"].windows == ["mon-fri 06:00-23:00"] and good.access.antipassback == "log"
    for groups, said in [
        ({"day": {"windows": ["mon-fry 06:00-23:00"]}}, r"access.groups.day: .*unknown day 'fry'"),
        ({"day": {"windows": ["mon 06:00-25:00"]}}, r"access.groups.day: .*'25:00' is not a time of day"),
        ({"day": {"windows": ["mon 06:00-07:00"], "holidays": ["2026-13-01"]}}, r"holiday '2026-13-01' is not a date"),
        ({"day": {"windows": []}}, r"access.groups.day.windows"),
        ({"bad name": {"windows": ["mon 06:00-07:00"]}}, r"access.groups.bad name"),
    ]:
        with pytest.raises(ConfigError, match=said):
            config(groups)
    with pytest.raises(ConfigError, match="access.antipassback"):
        config({}, antipassback="strict")


def test_a_window_crossing_midnight_is_the_two_halves_at_every_minute_of_a_week():
    """Every minute of a week (and a holiday's week): fri 22:00-02:00 admits exactly where fri 22:00-24:00
    and sat 00:00-02:00 do, with the holiday closing both halves that start on a Friday holiday."""
    crossing = group("x", ["fri 22:00-02:00", "sun-mon 23:30-00:30"], ["2026-12-11"])
    halves = [group("a", ["fri 22:00-24:00", "sun-mon 23:30-24:00"], ["2026-12-11"]),
              group("b", ["sat 00:00-02:00", "mon-tue 00:00-00:30"], ["2026-12-12"])]
    monday = at("2026-11-30 00:00")
    for minute in range(2 * 7 * 24 * 60):
        local = monday + dt.timedelta(minutes=minute)
        if local.date() == dt.date(2026, 12, 12) and local.hour < 2:
            assert not crossing.open_at(local)  # the night of a holiday Friday
            continue
        assert crossing.open_at(local) == any(h.open_at(local) for h in halves), local
