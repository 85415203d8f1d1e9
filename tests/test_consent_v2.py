"""Consent v2 (Data Connect 2026): Enedis sends the person back with an
`autorisation_id`, and the proxy asks `POST /subscribed_services/v1` which
usage points it covers. Enedis is `responses`; the browser is WebTest."""

import json
import logging

import pytest
import requests
import responses
from helpers import PRM1, PRM2, confirm, get_code, poll

from deviceflow.enedis import SUBSCRIBED_RETRY_PAUSES
from deviceflow.errors import PageError
from deviceflow.flow import DeviceFlow
from deviceflow.store import digest

TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
SUBSCRIBED_URL = "https://gw.ext.prod.api.enedis.fr/subscribed_services/v1"
AUTORISATION_ID = "417265119"
PRM3, PRM4 = "33333333333333", "44444444444444"
TODAY = "2027-01-15"  # the test clock's day in France
ATTEMPTS = len(SUBSCRIBED_RETRY_PAUSES) + 1


def services(*points, etat="ACTIF", since=TODAY, share=1):
    """Enedis's answer for one share; a share made again opens services with new ids."""
    listed = [
        {
            "id": f"{share}{n:02d}",
            "pointId": point,
            "etatCode": etat,
            "dateDebut": since,
            "dateFin": "2030-01-15",
            "serviceCode": "ACCES",
            "mesuresTypeCode": "CDC",
            "injection": False,
            "soutirage": True,
            "autorisation": {"autorisationId": int(AUTORISATION_ID), "autorisationType": "EXPLICITE"},
        }
        for n, point in enumerate(points)
    ]
    return {"nbTotalServices": len(listed), "serviceSouscrit": listed}


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(ENEDIS_AUTHORIZE_VERSION="v2")


@pytest.fixture
def enedis(enedis_mock):
    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    return enedis_mock


def subscribed(mock, answer=None, **kwargs):
    mock.add(responses.POST, SUBSCRIBED_URL, **({"json": answer} if answer is not None else {}), **kwargs)


def searches(mock):
    return [call.request for call in mock.calls if call.request.url == SUBSCRIBED_URL]


def back_from_enedis(app, state, **params):
    return app.get("/auth/redirect", {"state": state, **params}, expect_errors=True)


def start_flow(app):
    code = get_code(app)
    return code, confirm(app, code["user_code"])["state"]


# --- the usage points come from Enedis


def test_v2_consent_binds_the_tokens_to_the_usage_points_enedis_names(proxy, enedis):
    subscribed(enedis, services(PRM1))
    code, state = start_flow(proxy)
    # A usage_point_id added to the URL by hand changes nothing: Enedis names the meter.
    page = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID, usage_point_id=PRM2)
    assert page.status_int == 200 and PRM1 in page.text and PRM2 not in page.text
    assert poll(proxy, code["device_code"]).json["usage_points_id"] == PRM1

    search = searches(enedis)[0]
    assert json.loads(search.body) == {"autorisationId": int(AUTORISATION_ID), "comptage": False}
    assert search.headers["Authorization"] == "Bearer enedis-token"
    assert search.headers["Content-Type"] == "application/json"


def test_every_distinct_active_or_requested_meter_is_kept(proxy, enedis):
    answer = services(PRM1, PRM1, PRM2)
    answer["serviceSouscrit"][2]["etatCode"] = "DEMANDE"
    answer["serviceSouscrit"] += services(PRM3, etat="TERMINE")["serviceSouscrit"]
    answer["serviceSouscrit"] += services(PRM4, etat="SUPPRIME")["serviceSouscrit"]
    subscribed(enedis, answer)
    code, state = start_flow(proxy)
    back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert poll(proxy, code["device_code"]).json["usage_points_id"] == f"{PRM1},{PRM2}"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_only_the_configured_kind_of_redirect_is_accepted(make_proxy, enedis, version):
    proxy = make_proxy(ENEDIS_AUTHORIZE_VERSION=version)
    subscribed(enedis, services(PRM1))
    v2_code, v2_state = start_flow(proxy)
    v1_code, v1_state = start_flow(proxy)
    v2_page = back_from_enedis(proxy, v2_state, autorisation_id=AUTORISATION_ID)
    v1_page = back_from_enedis(proxy, v1_state, code="enedis-code", usage_point_id=PRM2)
    assert (v2_page.status_int, v1_page.status_int) == ((200, 400) if version == "v2" else (400, 200))
    accepted, refused = (v2_code, v1_code) if version == "v2" else (v1_code, v2_code)
    assert "access_token" in poll(proxy, accepted["device_code"]).json
    assert poll(proxy, refused["device_code"]).json["error"] == "authorization_pending"


def test_state_is_single_use_after_a_v2_consent(proxy, enedis):
    subscribed(enedis, services(PRM1))
    _, state = start_flow(proxy)
    assert back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID).status_int == 200
    again = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert again.status_int == 400 and len(searches(enedis)) == 1


# --- Enedis registers the share a moment later


def test_an_empty_list_is_asked_again_briefly(proxy, enedis):
    subscribed(enedis, {"nbTotalServices": 0, "serviceSouscrit": []})
    subscribed(enedis, {"nbTotalServices": 0})
    subscribed(enedis, services(PRM1))
    code, state = start_flow(proxy)
    assert back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert len(searches(enedis)) == 3
    assert poll(proxy, code["device_code"]).json["usage_points_id"] == PRM1


def test_still_empty_tells_the_person_to_reload_and_the_reload_completes(proxy, enedis):
    subscribed(enedis, {"nbTotalServices": 0, "serviceSouscrit": []})
    code, state = start_flow(proxy)
    page = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert page.status_int == 503 and "Rechargez cette page" in page.text
    assert int(page.headers["Retry-After"]) > 0
    assert len(searches(enedis)) == ATTEMPTS
    assert poll(proxy, code["device_code"]).json["error"] == "authorization_pending"

    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM1))
    reloaded = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert reloaded.status_int == 200
    assert poll(proxy, code["device_code"]).json["usage_points_id"] == PRM1


# --- what cannot be used


@pytest.mark.parametrize(
    "autorisation_id",
    ["abc", "0", "-5", "12.5", "1e9", "9" * 20, "9223372036854775808", "123 456", "\uff11\uff12", " 417265119"],
)
def test_an_id_that_is_not_a_positive_int64_is_refused_without_asking_enedis(proxy, enedis, autorisation_id):
    code, state = start_flow(proxy)
    page = back_from_enedis(proxy, state, autorisation_id=autorisation_id)
    assert page.status_int == 400 and "compteur valable" in page.text
    assert len(enedis.calls) == 0
    assert poll(proxy, code["device_code"]).json["error"] == "authorization_pending"


@pytest.mark.parametrize(
    "answer, status",
    [
        ({"body": requests.ConnectionError("refused")}, 502),
        ({"body": requests.ReadTimeout("slow")}, 504),
        ({"status": 500, "json": {"code": "500", "message": "Probleme technique"}}, 502),
        ({"status": 403, "json": {"code": "900908", "message": "Resource forbidden"}}, 502),
        ({"status": 200, "body": "<html>maintenance</html>"}, 502),
        ({"status": 200, "json": ["not", "an", "object"]}, 502),
        ({"status": 429, "json": {"code": "900802"}, "headers": {"Retry-After": "20"}}, 429),
    ],
    ids=["unreachable", "timeout", "500", "403", "html", "list", "429"],
)
def test_enedis_failing_gives_a_readable_page_and_a_reload_completes(proxy, enedis, answer, status):
    subscribed(enedis, **answer)
    code, state = start_flow(proxy)
    page = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert page.status_int == status and page.content_type == "text/html"
    assert "Enedis ne répond pas" in page.text
    if status == 429:
        assert page.headers["Retry-After"] == "20"

    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM1))
    assert back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert poll(proxy, code["device_code"]).json["usage_points_id"] == PRM1


def test_without_an_enedis_client_a_v2_redirect_is_502(make_web, make_config):
    app = make_web(make_config(ENEDIS_AUTHORIZE_VERSION="v2"))
    code = get_code(app)
    state = confirm(app, code["user_code"])["state"]
    assert back_from_enedis(app, state, autorisation_id=AUTORISATION_ID).status_int == 502


def test_concurrent_completion_delivers_once(make_config, sqlite_store, clock):
    """Another request with the same state completes while this one waits on
    Enedis: the state is taken at the end, so this one gets bad_state."""

    class Enedis:
        def usage_points_for(self, autorisation_id, started, flow_key):
            if not asked:
                asked.append(autorisation_id)
                inner.append(flow.consent.finish(params, "browser"))  # the other request, finishing first
            return [PRM1]

    asked, inner = [], []
    flow = DeviceFlow(make_config(ENEDIS_AUTHORIZE_VERSION="v2"), sqlite_store, upstream=Enedis(), clock=clock)
    start = flow.authorization.issue_codes("test-client")
    pending = flow.verification.find_pending(start["user_code"], "192.0.2.1")
    consent_url = flow.consent.consent_url(pending, "browser")
    state = dict(kv.split("=") for kv in consent_url.split("?", 1)[1].split("&"))["state"]
    params = {"state": state, "autorisation_id": AUTORISATION_ID}
    with pytest.raises(PageError) as caught:
        flow.consent.finish(params, "browser")
    assert caught.value.reason == "bad_state"
    assert inner[0]["usage_points"] == [PRM1]
    assert flow.device_code_grant.poll("test-client", start["device_code"])["usage_points_id"] == PRM1


# --- what the operator sees


def redemptions(caplog):
    return [r for r in caplog.records if r.name == "deviceflow.enedis" and "redeemed" in r.getMessage()]


def test_every_redemption_is_logged_without_the_id_and_counted(proxy, enedis, caplog):
    caplog.set_level(logging.INFO)
    for share in (1, 2):  # a reinstall: the person shares again, and Enedis gives the same id
        enedis.upsert(responses.POST, SUBSCRIBED_URL, json=services(PRM1, share=share))
        code, state = start_flow(proxy)
        assert back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID).status_int == 200
        assert poll(proxy, code["device_code"]).status_int == 200
    lines = [r.getMessage() for r in redemptions(caplog)]
    assert len(lines) == 2 and "redemption 1" in lines[0] and "redemption 2" in lines[1]
    assert all(PRM1 in line for line in lines)
    assert lines[0].split()[2] == lines[1].split()[2]  # the same id, named the same way
    assert [r.levelno for r in redemptions(caplog)] == [logging.INFO] * 2
    everything = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert AUTORISATION_ID not in everything
    assert digest(AUTORISATION_ID)[:12] not in everything  # a plain hash of 9 digits is reversed in seconds


def test_a_share_that_started_before_the_flow_is_refused_with_a_warning(proxy, enedis, caplog):
    caplog.set_level(logging.INFO)
    subscribed(enedis, services(PRM1, since="2026-10-05"))
    code, state = start_flow(proxy)
    page = back_from_enedis(proxy, state, autorisation_id=AUTORISATION_ID)
    assert page.status_int == 403 and "Partage à renouveler" in page.text
    assert poll(proxy, code["device_code"]).json["error"] == "authorization_pending"
    [record] = [r for r in caplog.records if r.name == "deviceflow.enedis" and "v2 consent" in r.getMessage()]
    assert record.levelno == logging.WARNING and "2026-10-05" in record.getMessage()
