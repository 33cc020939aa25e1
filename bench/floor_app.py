"""The HTTP floors: the benchmarks' work done the plainest way, served by the same gunicorn.

A bare WSGI application (no Django, no DRF, no middleware) that does for each measured
endpoint only what the request cannot do without: check the credential, run the one SQL
statement, encode the answer with orjson. ``bench.common.gunicorn(app="bench.floor_app")``
serves it with the platform's own ``gunicorn.conf.py`` (workers, threads, keep-alive), and
the same load generator drives both, so the ratio of the two is what the platform's code
costs, not what HTTP or the machine costs.

Configured through the environment by the benchmark that starts it:

- ``DATABASE_URL``: the benchmark's database (one psycopg connection per gunicorn thread);
- ``SECRET_KEY``: the HS256 key simplejwt signs access tokens with (``GET /floor/campaigns``);
- ``FLOOR_WEBHOOK_SECRET`` and ``FLOOR_WEBHOOK_SOURCE_ID``: the relay source (``POST /floor/webhooks``);
- ``FLOOR_SERVICE_KEY_SHA256``, ``FLOOR_ACCOUNT_ID``, ``FLOOR_ACTION_ID``: the service key and
  the conversion action the bench posts to (``POST /floor/conversions``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
import psycopg
from psycopg.rows import dict_row

# The campaign list's page: the rows of one page by name of the accounts the user holds a role
# on (per-account grants, as the platform scopes them), each with its window's totals.
CAMPAIGN_PAGE_SQL = """
SELECT c.id, c.platform, c.external_id, c.name, c.status, c.daily_budget_micros, c.budget_micros, c.synced_at,
       a.id AS account_id, a.name AS account_name, a.currency_code,
       m.impressions, m.clicks, m.cost_micros, m.conversions, m.conversion_value_micros
FROM (
    SELECT * FROM campaigns_campaign
    WHERE account_id IN (SELECT account_id FROM campaigns_accountaccess WHERE user_id = %(user_id)s)
    ORDER BY name, id LIMIT %(limit)s
) c
JOIN campaigns_adaccount a ON a.id = c.account_id
LEFT JOIN LATERAL (
    SELECT COALESCE(SUM(impressions), 0) AS impressions, COALESCE(SUM(clicks), 0) AS clicks,
           COALESCE(SUM(cost_micros), 0) AS cost_micros, COALESCE(SUM(conversions), 0) AS conversions,
           COALESCE(SUM(conversion_value_micros), 0) AS conversion_value_micros
    FROM campaigns_dailymetric d WHERE d.campaign_id = c.id AND d.date BETWEEN %(since)s AND %(until)s
) m ON true
ORDER BY c.name, c.id
"""

WEBHOOK_INSERT_SQL = """
INSERT INTO webhooks_webhookevent (source_id, dedupe_key, raw_body, content_type, headers, status, attempts,
                                   last_error, received_at)
VALUES (%s, %s, %s, %s, '{}', 'received', 0, '', now())
ON CONFLICT DO NOTHING
RETURNING id
"""

CONVERSION_INSERT_SQL = """
INSERT INTO conversions_conversion (platform, dedupe_key, order_id, event_name, event_id, click_id_type,
    hashed_email, hashed_phone, value_micros, currency_code, occurred_at, payload, status, attempts, last_error,
    platform_code, platform_message, request_id, source, created_at, updated_at, account_id, action_id)
VALUES ('google', %s, %s, '', '', 'gclid', '', '', %s, %s, %s, %s, 'pending', 0, '', '', '', '', 'floor',
        now(), now(), %s, %s)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""

Response = tuple[str, bytes]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_local = threading.local()


def _db() -> psycopg.Connection[Any]:
    """This thread's connection, opened on first use and kept, as Django's CONN_MAX_AGE does."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return conn


def _json(status: str, payload: Any) -> Response:
    # Decimal (a SUM of numeric) as a number, the way the API writes conversions.
    return status, orjson.dumps(payload, default=float)


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def campaigns(environ: dict[str, Any]) -> Response:
    token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
    try:
        claims = jwt.decode(token, os.environ["SECRET_KEY"], algorithms=["HS256"])
        int(claims["user_id"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return _json("401 Unauthorized", {"detail": "invalid token"})
    query = parse_qs(environ.get("QUERY_STRING", ""))
    limit = min(int(query.get("page_size", ["50"])[0]), 200)
    until = dt.date.today()
    since = until - dt.timedelta(days=29)
    with _db().cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            CAMPAIGN_PAGE_SQL, {"user_id": claims["user_id"], "limit": limit, "since": since, "until": until}
        ).fetchall()
    return _json("200 OK", {"results": rows})


def webhooks(environ: dict[str, Any]) -> Response:
    offered = environ.get("HTTP_X_WEBHOOK_SECRET", "").encode()
    if not hmac.compare_digest(offered, os.environ["FLOOR_WEBHOOK_SECRET"].encode()):
        return _json("401 Unauthorized", {"detail": "bad secret"})
    raw = _body(environ)
    try:
        lead = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json("400 Bad Request", {"detail": "not JSON"})
    row = (
        _db()
        .execute(
            WEBHOOK_INSERT_SQL,
            (
                int(os.environ["FLOOR_WEBHOOK_SOURCE_ID"]),
                f"lead:{lead.get('lead_id', '')}",
                raw.decode(),
                environ.get("CONTENT_TYPE", ""),
            ),
        )
        .fetchone()
    )
    return _json("202 Accepted", {"id": row[0] if row else None, "duplicate": row is None})


def conversions(environ: dict[str, Any]) -> Response:
    offered = hashlib.sha256(environ.get("HTTP_X_SERVICE_AUTH", "").encode()).hexdigest()
    if not hmac.compare_digest(offered, os.environ["FLOOR_SERVICE_KEY_SHA256"]):
        return _json("401 Unauthorized", {"detail": "bad key"})
    try:
        body = orjson.loads(_body(environ))
        occurred_at = dt.datetime.fromisoformat(body["conversion_date_time"])
        value_micros = round(float(body.get("conversion_value", 0)) * 1_000_000)
    except (orjson.JSONDecodeError, KeyError, ValueError):
        return _json("400 Bad Request", {"detail": "invalid conversion"})
    order_id = str(body.get("order_id", ""))
    row = (
        _db()
        .execute(
            CONVERSION_INSERT_SQL,
            (
                hashlib.sha256(f"google:{order_id}".encode()).hexdigest(),
                order_id,
                value_micros,
                body.get("currency_code", ""),
                occurred_at,
                orjson.dumps(body).decode(),
                int(os.environ["FLOOR_ACCOUNT_ID"]),
                int(os.environ["FLOOR_ACTION_ID"]),
            ),
        )
        .fetchone()
    )
    return _json("201 Created" if row else "200 OK", {"id": row[0] if row else None})


ROUTES: dict[tuple[str, str], Callable[[dict[str, Any]], Response]] = {
    ("GET", "/floor/campaigns"): campaigns,
    ("POST", "/floor/webhooks"): webhooks,
    ("POST", "/floor/conversions"): conversions,
}


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if path == "/healthz":
        status, body = "200 OK", b'{"status":"ok"}'
    else:
        handler = ROUTES.get((method, path))
        status, body = handler(environ) if handler else ("404 Not Found", b'{"detail":"not found"}')
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
