"""One error vocabulary inside and out: what the server raises for a refused
request is what a client raises on reading the answer."""

from __future__ import annotations

from sessionwatch import errors
from sessionwatch.clients.http import ApiError as ClientApiError
from sessionwatch.clients.http import ClientError


def test_the_servers_refusals_carry_a_status_and_one_sentence() -> None:
    taken = errors.IdTaken("abc")
    assert isinstance(taken, errors.ApiError) and taken.status == 409 and taken.sid == "abc"
    bad = errors.BadRequest('source must be "claude" or "panel"')
    assert isinstance(bad, errors.ApiError) and bad.status == 400 and str(bad) == bad.sentence


def test_a_client_reading_a_refusal_raises_the_same_kind_of_error() -> None:
    read = ClientApiError(409, "that id belongs to a Claude session")
    assert isinstance(read, errors.ApiError) and isinstance(read, ClientError)
    assert (read.status, read.sentence) == (errors.IdTaken("x").status, errors.IdTaken("x").sentence)
