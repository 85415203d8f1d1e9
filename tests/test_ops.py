"""Operator tools: moving the PHP server's refresh tokens over, stats, revocation."""

from datetime import UTC, datetime, timedelta

import pytest
from helpers import PHP_CSV, PRM1, PRM2, get_code, php_token, refresh, tokens_for

from deviceflow import ops
from deviceflow.flow import DeviceFlow
from deviceflow.metrics import Metrics
from deviceflow.store import digest


@pytest.fixture
def flow(config, sqlite_store, clock):
    return DeviceFlow(config, sqlite_store, clock=clock)


def csv_rows():
    with open(PHP_CSV, newline="", encoding="utf-8") as lines:
        return list(ops.rows_from_csv(lines))


# --- PHP values


@pytest.mark.parametrize(
    "serialized, text",
    [
        ('s:14:"11111111111111";', "11111111111111"),
        ('s:29:"11111111111111;22222222222222";', "11111111111111;22222222222222"),
        ('s:0:"";', ""),
        ('s:2:"\u00e9";', "\u00e9"),  # PHP counts bytes, not characters
        ('s:3:"a"b";\n', 'a"b'),
    ],
)
def test_php_strings_are_read(serialized, text):
    assert ops.php_string(serialized) == text


@pytest.mark.parametrize(
    "serialized", ['s:1:"\u00e9";', 's:3:"ab";', "N;", "i:3;", 'a:1:{i:0;s:1:"a";}', "11111111111111"]
)
def test_other_php_values_are_refused(serialized):
    with pytest.raises(ValueError):
        ops.php_string(serialized)


# --- import from the PostgreSQL CSV export


def test_csv_import_files_live_tokens_and_says_why_others_were_skipped(flow):
    summary = ops.import_php(flow, csv_rows())
    assert (summary.read, summary.imported, summary.other_keys) == (6, 3, 6)
    assert dict(summary.skipped) == {ops.EXPIRED: 1, ops.BAD_POINTS: 1, ops.BAD_VALUE: 1}


def test_imported_token_refreshes_through_device_token(flow, make_web, config, sqlite_store):
    ops.import_php(flow, csv_rows())
    app = make_web(config, sqlite_store)
    # DomoticzLinky sends its client id and the usage points it was given, as it did to the PHP server.
    answer = refresh(app, php_token(3), client_id="domoticz", usage_points_id="44444444444444,55555555555555")
    assert answer.status_int == 200, answer.text
    assert answer.json["usage_points_id"] == "44444444444444,55555555555555"
    assert answer.json["refresh_token"] != php_token(3)
    # The new tokens are ordinary ones: they refresh and rotate as minted tokens do.
    assert refresh(app, answer.json["refresh_token"], client_id="domoticz").status_int == 200


def test_imported_tokens_keep_their_expiry_and_are_stored_hashed(flow, sqlite_store, clock, tmp_path):
    ops.import_php(flow, csv_rows())
    record = sqlite_store.get("refresh", digest(php_token(3)))
    assert record["expires"] == datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert record["usage_points"] == ["44444444444444", "55555555555555"] and record["client_id"] == "test-client"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.sqlite3*"))
    assert php_token(3).encode() not in raw
    clock.now = datetime(2029, 12, 31, 23, 59, 59, 1, tzinfo=UTC).timestamp()
    assert sqlite_store.get("refresh", digest(php_token(3))) is None


def test_expired_and_unusable_tokens_are_not_filed(flow, sqlite_store):
    ops.import_php(flow, csv_rows())
    for n in (4, 5, 6):
        assert sqlite_store.get("refresh", digest(php_token(n))) is None
    assert sqlite_store.count("access") == 0  # PHP access tokens are not carried over


def test_a_re_run_imports_nothing_and_revives_nothing(flow, make_web, config, sqlite_store):
    ops.import_php(flow, csv_rows())
    app = make_web(config, sqlite_store)
    rotated = refresh(app, php_token(1)).json["refresh_token"]
    refresh(app, rotated)  # first use of the new token retires the imported one
    ops.revoke_refresh_token(flow, php_token(2))

    again = ops.import_php(flow, csv_rows())
    assert again.imported == 0 and again.skipped[ops.ALREADY] == 3
    assert refresh(app, php_token(2)).json["error"] == "invalid_grant"  # still revoked
    assert refresh(app, php_token(1)).json["error"] == "invalid_grant"  # still retired


def test_dry_run_reports_the_same_and_writes_nothing(flow, sqlite_store):
    dry = ops.import_php(flow, csv_rows(), dry_run=True)
    assert (dry.read, dry.imported, dict(dry.skipped)) == (6, 3, {ops.EXPIRED: 1, ops.BAD_POINTS: 1, ops.BAD_VALUE: 1})
    assert sqlite_store.count("refresh") == 0 and sqlite_store.count("chain") == 0
    ops.import_php(flow, csv_rows())
    assert ops.import_php(flow, csv_rows(), dry_run=True).skipped[ops.ALREADY] == 3


def test_csv_dates_without_offset_follow_the_given_zone():
    from zoneinfo import ZoneInfo

    lines = ['refresh_token:abc,"s:14:""11111111111111"";",2030-06-01 10:00:00']
    (row,) = ops.rows_from_csv(lines, ZoneInfo("Europe/Paris"))
    assert row.expires == datetime(2030, 6, 1, 8, tzinfo=UTC)


def test_malformed_rows_and_repeated_tokens_are_skipped(flow):
    lines = [
        "key,value,expire_at",
        "only,two",
        f'refresh_token:{php_token(7)},"s:14:""11111111111111"";",someday',
        f'refresh_token:{php_token(8)},"s:14:""11111111111111"";",2030-01-01 00:00:00',
        f'refresh_token:{php_token(8)},"s:14:""11111111111111"";",2030-01-01 00:00:00',
        'refresh_token:,"s:14:""11111111111111"";",2030-01-01 00:00:00',
    ]
    summary = ops.import_php(flow, ops.rows_from_csv(lines))
    assert summary.imported == 1
    assert dict(summary.skipped) == {ops.MALFORMED: 1, ops.BAD_EXPIRY: 1, ops.DUPLICATE: 1, ops.BAD_TOKEN: 1}


# --- import from the PHP server's MongoDB


@pytest.fixture
def php_mongo(clock):
    mongomock = pytest.importorskip("mongomock")
    collection = mongomock.MongoClient()["devicecode"]["cache"]
    now = datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None)  # BSON dates: naive UTC
    collection.insert_many(
        [
            {"key": f"refresh_token:{php_token(1)}", "value": f"{PRM1},{PRM2}", "expireAt": now + timedelta(days=900)},
            {
                "key": f"refresh_token:{php_token(2)}",
                "value": "33333333333333;44444444444444",
                "expireAt": now + timedelta(days=10),
            },
            {"key": f"refresh_token:{php_token(3)}", "value": PRM1, "expireAt": now - timedelta(seconds=1)},
            {"key": f"refresh_token:{php_token(4)}", "value": PRM1},  # no expiry: PHP never drops it
            {"key": f"access_token:{php_token(5)}", "value": PRM1, "expireAt": now + timedelta(hours=3)},
            {"key": php_token(6), "value": {"status": "pending", "timestamp": 1}, "expireAt": now},
        ]
    )
    return collection


def test_mongodb_import_reads_refresh_tokens_only(flow, php_mongo, sqlite_store, clock):
    summary = ops.import_php(flow, ops.rows_from_mongodb(php_mongo))
    assert (summary.read, summary.imported, dict(summary.skipped)) == (4, 3, {ops.EXPIRED: 1})
    assert sqlite_store.get("refresh", digest(php_token(1)))["usage_points"] == [PRM1, PRM2]
    assert sqlite_store.get("refresh", digest(php_token(2)))["usage_points"] == ["33333333333333", "44444444444444"]
    assert sqlite_store.get("refresh", digest(php_token(4)))["expires"] == clock() + 3 * 365 * 86400


def test_mongodb_import_into_a_mongodb_store_refreshes(php_mongo, mongo_store, config, make_web, clock):
    ops.import_php(DeviceFlow(config, mongo_store, clock=clock), ops.rows_from_mongodb(php_mongo))
    app = make_web(config, mongo_store)
    answer = refresh(app, php_token(1), usage_points_id=f"{PRM2};{PRM1}")
    assert answer.status_int == 200 and answer.json["usage_points_id"] == f"{PRM1},{PRM2}"


# --- stats and revocation


def test_stats_count_what_the_store_holds(make_web, config, sqlite_store, flow, clock):
    app = make_web(config, sqlite_store)
    tokens_for(app, PRM1)
    tokens_for(app, f"{PRM1};{PRM2}")
    get_code(app)  # pending
    ops.import_php(flow, csv_rows())
    Metrics(sqlite_store, clock).enedis_call("data", 200)
    ops.revoke_usage_point(flow, "11111111111111")

    numbers = ops.stats(sqlite_store, clock())
    assert numbers["pending_flows"] == 1
    # 2 native + 3 imported, of which 3 cover PRM1 and are revoked
    assert (numbers["authorizations"], numbers["imported"], numbers["revoked"]) == (2, 2, 3)
    assert numbers["usage_points"] == 4  # 2222..., 3333..., 4444..., 5555... (PRM1's chains are revoked)
    assert numbers["enedis_calls_hour"] == numbers["enedis_calls_day"] == 1
    assert numbers["budget_waits_day"] == 0


def test_revoking_a_usage_point_ends_every_authorization_covering_it(make_web, config, sqlite_store, flow):
    app = make_web(config, sqlite_store)
    alone, shared, other = tokens_for(app, PRM1), tokens_for(app, f"{PRM1},{PRM2}"), tokens_for(app, PRM2)
    revoked = ops.revoke_usage_point(flow, PRM1)
    assert sorted(revoked) == [[PRM1], [PRM1, PRM2]]
    for tokens in (alone, shared):
        assert refresh(app, tokens["refresh_token"]).json["error"] == "invalid_grant"
        assert flow.store.get("chain", flow.store.get("access", digest(tokens["access_token"]))["chain"])["revoked"]
    assert refresh(app, other["refresh_token"]).status_int == 200
    assert ops.revoke_usage_point(flow, PRM1) == []


def test_revoking_a_refresh_token_ends_its_chain_only(make_web, config, sqlite_store, flow):
    app = make_web(config, sqlite_store)
    first, second = tokens_for(app, PRM1), tokens_for(app, PRM1)
    rotated = refresh(app, first["refresh_token"]).json
    assert ops.revoke_refresh_token(flow, first["refresh_token"]) == [PRM1]
    assert refresh(app, rotated["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(app, second["refresh_token"]).status_int == 200
    assert ops.revoke_refresh_token(flow, first["refresh_token"]) is None
    assert ops.revoke_refresh_token(flow, "never-issued") is None
