"""The request id: taken or generated, echoed, in every log line, carried into Celery tasks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from kombu import Connection

from adsplatform import logging as ads_logging
from adsplatform.celery import app as celery_app


@pytest.fixture
def json_log():
    """The root logger's output as the production formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ads_logging.JsonFormatter())
    handler.addFilter(ads_logging.RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    root.removeHandler(handler)


def test_given_request_id_is_echoed(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    # /healthz answers before the request-id middleware, by design; use a normal page.
    response = client.get("/api/v1/missing/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"


def test_missing_or_unsafe_request_id_is_replaced(client):
    generated = client.get("/api/v1/missing/")["X-Request-ID"]
    assert len(generated) == 32
    unsafe = client.get("/api/v1/missing/", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert unsafe != "bad id\nwith newline" and len(unsafe) == 32


def test_every_log_line_of_a_request_carries_its_id(client, json_log):
    client.get("/api/v1/missing/", HTTP_X_REQUEST_ID="req-log-1")
    lines = [line for line in json_log() if line["logger"] == "django.request"]
    assert lines, "Django logs the 404"
    assert all(line["request_id"] == "req-log-1" for line in lines)
    assert lines[0]["level"] == "WARNING"


def test_request_id_travels_in_task_headers(tmp_path):
    """A task published during a request carries the request id in its message headers."""
    folder = tmp_path / "broker"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    ads_logging.set_request_id("req-task-7")
    try:
        with Connection("filesystem://", transport_options=options) as conn:
            celery_app.send_task("adsplatform.example", args=[1], connection=conn)
    finally:
        ads_logging.set_request_id(None)
    messages = [json.loads(path.read_text()) for path in folder.iterdir()]
    assert len(messages) == 1
    assert messages[0]["headers"]["request_id"] == "req-task-7"


def test_task_logs_use_the_request_id_it_was_sent_with(json_log):
    @celery_app.task(name="tests.log_something")
    def log_something():
        logging.getLogger("tests.task").warning("inside the task")

    log_something.apply(headers={"request_id": "req-task-9"})
    lines = [line for line in json_log() if line["logger"] == "tests.task"]
    assert lines and lines[0]["request_id"] == "req-task-9"
