"""The simulated meters and the measurements they produce.

Everything derives from the half-hour curves of one day, seeded by PRM and
date, so that every API (v5 or 2026, daily or load curve) tells the same story:
daily Wh = sum(curve W) / 2. Slot i of day D covers [D + 30 min * i,
D + 30 min * (i + 1)[ and is timestamped at its END, as Enedis does.

A measurement has a `kind`, "daily" (Wh per day), "curve" (W per half hour) or
"pmax" (the day's maximum apparent power, VA), and a `direction`, "CONS"
(drawn from the grid) or "PROD" (injected into it), Enedis's own words.

Simplifications, on purpose: every day has 48 half-hour points (no 46/50
point days at DST changes); meters are single-phase; any syntactically valid
PRM that is not one of the test meters behaves like a plain consumer (so that
tests may use made-up PRMs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import random

from deviceflow.simulator.dates import minus_months


@dataclasses.dataclass(frozen=True)
class Meter:
    prm: str
    label: str  # shown on the consent page
    kva: int  # subscribed power
    tariff: str  # "HPHC" or "BASE"
    consumption_activation: dt.date
    production_activation: dt.date | None = None  # None: not a producer
    kwc: float = 0.0  # solar peak power
    base_w: int = 300  # always-on load
    activity_w: int = 250  # scale of the daily activity profile
    heating_w: int = 0  # electric heating at full winter
    water_heater_w: int = 0  # off-peak hot water tank
    secondary: bool = False  # often empty (secondary residence)
    customer_id: str = "1358019319"
    title: str = "M."
    firstname: str = "Camille"
    lastname: str = "Demo"
    email: str = "camille.demo@example.invalid"
    phone: str = "0600000000"
    street: str = "1 rue de la Démonstration"
    postal_code: str = "69001"
    city: str = "LYON"
    insee_code: str = "69381"
    latitude: str = "45.767"
    longitude: str = "4.834"
    altitude: str = "170"
    contract_start: dt.date = dt.date(2020, 1, 1)

    @property
    def producer(self) -> bool:
        return self.production_activation is not None

    @property
    def offpeak_hours(self) -> str | None:
        return "HC (22H00-6H00)" if self.tariff == "HPHC" else None

    @property
    def distribution_tariff(self) -> str:
        if self.tariff == "HPHC":
            # as in the 2026 fixtures
            return "Tarif BT<=36kVA Moyenne Utilisation heures pleines heures creuses associées à deux saisons"
        return "Tarif BT<=36kVA Courte Utilisation sans différenciation temporelle"


# The first two PRMs are those of the anonymised 2026 fixtures (a consumer and
# a self-consumption point), with their activation dates.
METERS: dict[str, Meter] = {
    m.prm: m
    for m in (
        Meter(
            prm="99999999999991",
            label="Maison — consommateur, heures creuses, 12 kVA",
            kva=12,
            tariff="HPHC",
            consumption_activation=dt.date(2018, 8, 31),
            base_w=320,
            activity_w=300,
            heating_w=2600,
            water_heater_w=2200,
            customer_id="1358019391",
            title="Mme",
            firstname="Sandra",
            lastname="Demo",
            email="sandra.demo@example.invalid",
            phone="0600000091",
            street="12 rue des Compteurs",
            postal_code="69003",
            city="LYON",
            insee_code="69383",
            latitude="45.760",
            longitude="4.850",
            contract_start=dt.date(2026, 2, 11),
        ),
        Meter(
            prm="99999999999992",
            label="Maison solaire — autoconsommation (production 3 kWc), 12 kVA",
            kva=12,
            tariff="HPHC",
            consumption_activation=dt.date(2014, 1, 22),
            production_activation=dt.date(2024, 7, 31),
            kwc=3.0,
            base_w=280,
            activity_w=280,
            heating_w=1500,
            water_heater_w=2000,
            customer_id="1358019392",
            title="M.",
            firstname="Paul",
            lastname="Soleil",
            email="paul.soleil@example.invalid",
            phone="0600000092",
            street="5 chemin du Photon",
            postal_code="31000",
            city="TOULOUSE",
            insee_code="31555",
            latitude="43.604",
            longitude="1.444",
            altitude="146",
            contract_start=dt.date(2024, 10, 12),
        ),
        Meter(
            prm="99999999999993",
            label="Résidence secondaire — consommateur, base, 6 kVA",
            kva=6,
            tariff="BASE",
            consumption_activation=dt.date(2025, 3, 17),
            base_w=120,
            activity_w=220,
            heating_w=1800,
            secondary=True,
            customer_id="1358019393",
            title="M.",
            firstname="Louis",
            lastname="Chalet",
            email="louis.chalet@example.invalid",
            phone="0600000093",
            street="3 route du Lac",
            postal_code="74000",
            city="ANNECY",
            insee_code="74010",
            latitude="45.899",
            longitude="6.129",
            altitude="448",
            contract_start=dt.date(2025, 3, 17),
        ),
    )
}
CONSUMER_PRM, PRODUCER_PRM, SECONDARY_PRM = list(METERS)


@functools.lru_cache(maxsize=1024)
def meter_for(prm: str) -> Meter:
    """The test meter, or a plain consumer for any other (made-up) PRM."""
    if prm in METERS:
        return METERS[prm]
    return Meter(
        prm=prm,
        label="Compteur",
        kva=9,
        tariff="BASE",
        consumption_activation=dt.date(2015, 1, 1),
        customer_id=str(1_000_000_000 + int(prm) % 999_999_999),
    )


def _winter(day: dt.date) -> float:
    """1.0 mid-January, 0.0 from spring to autumn: the heating need."""
    return max(0.0, math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25))


def _summer(day: dt.date) -> float:
    """1.0 mid-June, 0.0 mid-December: the sun."""
    return (1 - math.cos(2 * math.pi * (day.timetuple().tm_yday - 355) / 365.25)) / 2


def _activity(hour: float, weekend: bool) -> float:
    """Relative use of appliances along a day (lighting, cooking, ...)."""
    if hour < 6:
        return 0.2
    if hour < 9:
        return 2.5 if weekend else 4.0
    if hour < 12:
        return 3.0 if weekend else 1.0
    if hour < 14:
        return 3.5
    if hour < 18:
        return 2.5 if weekend else 1.2
    if hour < 22.5:
        return 6.0
    return 2.0


@functools.lru_cache(maxsize=8192)
def production_curve(prm: str, day: dt.date) -> tuple[int, ...]:
    """48 average powers (W) injected by the meter's solar panels."""
    meter = meter_for(prm)
    if not meter.producer:
        return (0,) * 48
    rng = random.Random(f"prod|{prm}|{day.isoformat()}")
    summer = _summer(day)
    daylight = 8.5 + 7.5 * summer  # hours
    noon = 13.0 + 0.5 * summer  # solar noon in legal time, roughly
    sunrise = noon - daylight / 2
    clearness = rng.uniform(0.1, 1.0) ** (1.0 - 0.6 * summer)
    peak = meter.kwc * 1000 * 0.75 * (0.55 + 0.45 * summer) * clearness
    values = []
    for i in range(48):
        x = ((i + 0.5) / 2 - sunrise) / daylight
        if 0 < x < 1:
            jitter = rng.uniform(0.6, 1.1) if clearness < 0.6 else rng.uniform(0.93, 1.02)
            values.append(int(round(peak * math.sin(math.pi * x) ** 1.3 * jitter)))
        else:
            values.append(0)
    return tuple(values)


@functools.lru_cache(maxsize=8192)
def consumption_curve(prm: str, day: dt.date) -> tuple[int, ...]:
    """48 average powers (W) drawn from the grid."""
    meter = meter_for(prm)
    rng = random.Random(f"cons|{prm}|{day.isoformat()}")
    weekend = day.weekday() >= 5
    winter = _winter(day)
    occupied = not meter.secondary or (weekend and rng.random() < 0.6) or (day.month in (7, 8) and rng.random() < 0.8)
    base = meter.base_w * rng.uniform(0.9, 1.1)
    appliances = set(rng.sample(range(14, 44), rng.randint(1, 3)))  # washing machine, oven
    hot_water_slots = rng.randint(3, 6) if meter.water_heater_w else 0  # from 00:00, off-peak
    production = production_curve(prm, day)
    values = []
    for i in range(48):
        hour = i / 2 + 0.25
        watts = base
        if occupied:
            watts += meter.activity_w * _activity(hour, weekend) * rng.uniform(0.7, 1.3)
            heating_share = 1.0 if (6 <= hour < 9 or 17 <= hour < 23) else 0.6
            watts += meter.heating_w * winter * heating_share * rng.uniform(0.8, 1.2)
            if i in appliances:
                watts += rng.choice((1800, 2200, 2500))
        else:
            watts += 0.25 * meter.heating_w * winter * rng.uniform(0.8, 1.2)  # frost protection
        if i < hot_water_slots:
            watts += meter.water_heater_w
        # self-consumption: the panels feed part of the house first
        watts = max(60.0, watts - 0.7 * production[i])
        values.append(int(round(min(watts, meter.kva * 1000 * 0.95))))
    return tuple(values)


def curve(prm: str, day: dt.date, direction: str) -> tuple[int, ...]:
    """The 48 half-hour average powers (W) of one day, in `direction`."""
    return production_curve(prm, day) if direction == "PROD" else consumption_curve(prm, day)


def daily_energy(prm: str, day: dt.date, direction: str) -> int:
    """Wh of one day: the integral of its load curve."""
    return int(round(sum(curve(prm, day, direction)) / 2))


@functools.lru_cache(maxsize=8192)
def max_power(prm: str, day: dt.date) -> tuple[int, str]:
    """(VA, "YYYY-MM-DD HH:MM:SS") of the day's maximum apparent power.

    It happens within the half hour of highest average power, and is above
    that average (a peak) but never above the subscribed power.
    """
    meter = meter_for(prm)
    values = consumption_curve(prm, day)
    rng = random.Random(f"pmax|{prm}|{day.isoformat()}")
    slot = max(range(48), key=values.__getitem__)
    va = min(int(values[slot] * rng.uniform(1.15, 1.6)), meter.kva * 1000)
    end = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=30 * (slot + 1))
    when = end - dt.timedelta(seconds=rng.randint(1, 1799))
    return va, when.strftime("%Y-%m-%d %H:%M:%S")


def days(start: dt.date, end: dt.date):
    """Each day of [start, end[."""
    for n in range((end - start).days):
        yield start + dt.timedelta(days=n)


def curve_points(prm: str, start: dt.date, end: dt.date, direction: str):
    """(end-of-interval timestamp, W) of each half hour of [start, end[."""
    for day in days(start, end):
        midnight = dt.datetime.combine(day, dt.time())
        for i, value in enumerate(curve(prm, day, direction)):
            stamp = midnight + dt.timedelta(minutes=30 * (i + 1))
            yield stamp.strftime("%Y-%m-%d %H:%M:%S"), value


def monthly_max_power(prm: str, start: dt.date, end: dt.date):
    """(VA, timestamp) of the highest daily maximum of each month in [start, end[."""
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for day in days(start, end):
        va, when = max_power(prm, day)
        key = (day.year, day.month)
        if key not in best or va > best[key][0]:
            best[key] = (va, when)
    return [best[k] for k in sorted(best)]


def refused_period(
    prm: str, start: dt.date, end: dt.date, kind: str, direction: str, today: dt.date, allow_empty: bool
) -> tuple[str, str] | None:
    """(error code, description) when Enedis refuses to serve [start, end[ of this meter, else None.

    Enedis answers every such refusal with a 400, on the v5 and the 2026 APIs alike.
    """
    meter = meter_for(prm)
    if direction == "PROD" and not meter.producer:
        return "ADAM-ERR0069", "Le sens de la mesure ne correspond pas pour le PRM demandé"
    if end > today:
        return "Invalid_request", "The end date parameter must be earlier than the current date."
    if start > end or (start == end and not allow_empty):
        return "Invalid_request", "Start date should be before end date"
    if kind == "curve" and (end - start).days > 7:
        return "ADAM-ERR0126", "The requested period must be less than 7 days for an access to the load curve."
    if kind != "curve" and (end - start).days > 365:
        return "Invalid_request", "The requested period must be less than 365 days"
    history = 24 if kind == "curve" else 36  # months, plus 15 days
    if start < minus_months(today, history) - dt.timedelta(days=15):
        return "ADAM-ERR0125", "The start date must be greater than the history deadline."
    activation = meter.production_activation if direction == "PROD" else meter.consumption_activation
    if start < activation:
        return "ADAM-ERR0123", "The requested period cannot be anterior to the meter's last activation date"
    return None
