"""A simulated Enedis, for ``serve --demo`` and for end-to-end tests.

One plain Bottle application per :class:`Simulator`, no module-level state.
Mount it on the main app with
``main_app.mount("/enedis/", Simulator(base + "/enedis").app)``; its routes are
relative to that mount point. What it imitates (tests/fixtures/enedis-2026
holds real answers it is checked against), module by module:

* ``meters``: the test meters and their deterministic measurements;
* ``consent``: the consent pages, v1 (``code`` + ``usage_point_id``) and v2
  (Data Connect 2026: ``autorisation_id`` only), their HTML in ``templates/``;
* ``tokens``: ``/oauth2/v3/token`` (client_credentials) and ``/v1/oauth2/token``
  (authorization_code with PKCE S256, refresh_token);
* ``v5``: the v5 data APIs (``metering_data_*``, ``customers_*``);
* ``data_connect_2026``: the Data Connect 2026 APIs (``subscribed_services``,
  ``mesure_synchrone_auto/v2``, ``situation_contrat_auto``, ...), serving the
  same numbers as v5, so that a v5 <-> 2026 translation can be checked end to end;
* ``protocol``: Enedis's error bodies and headers, shared by all;
* ``control``: the test knobs (one table of defaults and bounds), ``POST /_control``,
  ``GET /_stats`` and the injected failures;
* ``app``: :class:`Simulator`, which wires them to their routes.
"""

from deviceflow.simulator.app import Simulator
from deviceflow.simulator.control import KNOBS, Knob
from deviceflow.simulator.meters import (
    CONSUMER_PRM,
    METERS,
    PRODUCER_PRM,
    SECONDARY_PRM,
    Meter,
    consumption_curve,
    curve,
    curve_points,
    daily_energy,
    max_power,
    meter_for,
    monthly_max_power,
    production_curve,
)

__all__ = [
    "CONSUMER_PRM",
    "KNOBS",
    "METERS",
    "PRODUCER_PRM",
    "SECONDARY_PRM",
    "Knob",
    "Meter",
    "Simulator",
    "consumption_curve",
    "curve",
    "curve_points",
    "daily_energy",
    "max_power",
    "meter_for",
    "monthly_max_power",
    "production_curve",
]
