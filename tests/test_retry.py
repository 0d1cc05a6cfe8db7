"""Table tests of the pure retry decisions: classify, backoff, should_retry, Retry-After."""

from __future__ import annotations

import math
import random
from email.utils import formatdate

import pytest

from batch_embed import errors
from batch_embed.errors import ConfigError
from batch_embed.retry import RETRY_AFTER_CAP, RetryPolicy, Verdict, classify, parse_retry_after

RETRY, THROTTLED, ROW, ABORT = Verdict.RETRY, Verdict.THROTTLED, Verdict.ROW_ERROR, Verdict.ABORT

# -- classify -----------------------------------------------------------------------------------

# (error, verdict when reading, verdict when submitting)
CLASSIFY_TABLE: list[tuple[errors.ApiError, Verdict, Verdict]] = [
    (errors.RateLimited("429", status=429), THROTTLED, THROTTLED),
    (errors.RateLimited("429", status=429, retry_after=3.0), THROTTLED, THROTTLED),
    (errors.AuthError("401", status=401), ABORT, ABORT),
    (errors.Forbidden("403", status=403), ABORT, ABORT),
    (errors.InsufficientCredits("406", status=406), ABORT, ABORT),
    (errors.NotFound("404", status=404), RETRY, ABORT),
    (errors.BadRequest("400", status=400), ROW, ROW),
    (errors.JobFailed("422", status=422, detail="blocked"), ROW, ROW),
    (errors.BadVector("nan"), ROW, ROW),
    (errors.ForeignOrigin("elsewhere"), ROW, ROW),
    (errors.MalformedResponse("not json", status=200), RETRY, RETRY),
    (errors.AnswerTooLarge("over the cap", cap=4096, status=200), RETRY, RETRY),
    (errors.ServerError("500", status=500), RETRY, RETRY),
    (errors.ServerError("502", status=502), RETRY, RETRY),
    (errors.ServerError("504", status=504), RETRY, RETRY),
    (errors.ServerError("599", status=599), RETRY, RETRY),
    (errors.RequestTimeout("slow"), RETRY, RETRY),
    (errors.ConnectionDropped("reset", maybe_sent=True), RETRY, RETRY),
    (errors.ConnectionDropped("refused", maybe_sent=False), RETRY, RETRY),
    (errors.TransportError("no answer"), RETRY, RETRY),
    (errors.HttpError("408", status=408), RETRY, RETRY),
    (errors.HttpError("409", status=409), RETRY, RETRY),
    (errors.HttpError("425", status=425), RETRY, RETRY),
    (errors.HttpError("413", status=413), ROW, ROW),
    (errors.HttpError("418", status=418), ROW, ROW),
    (errors.HttpError("422 without a terminal body", status=422), ROW, ROW),
    (errors.HttpError("no status"), ROW, ROW),
    (errors.ApiError("base"), ROW, ROW),
]


@pytest.mark.parametrize(
    ("error", "reading", "submitting"),
    CLASSIFY_TABLE,
    ids=[f"{type(e).__name__}-{e.status}-{i}" for i, (e, _, _) in enumerate(CLASSIFY_TABLE)],
)
def test_classify(error: errors.ApiError, reading: Verdict, submitting: Verdict) -> None:
    assert classify(error, reading=True) is reading
    assert classify(error, reading=False) is submitting


def test_classify_table_covers_every_api_error_class() -> None:
    def subclasses(cls: type) -> set[type]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= subclasses(sub)
        return found

    covered = {type(error) for error, _, _ in CLASSIFY_TABLE}
    assert subclasses(errors.ApiError) <= covered


@pytest.mark.parametrize("status", [400, 401, 403, 404, 406, 429, 500, 502, 504, 418])
def test_classify_follows_the_status_class_mapping(status: int) -> None:
    cls = errors.http_error_class(status)
    verdict = classify(cls("x", status=status), reading=True)
    expected = {
        400: ROW,
        401: ABORT,
        403: ABORT,
        404: RETRY,
        406: ABORT,
        429: THROTTLED,
        418: ROW,
    }.get(status, RETRY)
    assert verdict is expected


# -- backoff ------------------------------------------------------------------------------------

POLICIES = [
    RetryPolicy(),
    RetryPolicy(base=1.0, cap=1.0),
    RetryPolicy(base=0.001, cap=1000.0),
    RetryPolicy(base=100.0, cap=10.0),  # base above cap: every delay is the cap
    RetryPolicy(base=1e-9, cap=1e9),
]


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("attempt", range(1, 71))
def test_backoff_bounds(policy: RetryPolicy, attempt: int) -> None:
    low = policy.backoff(attempt, rand=lambda: 0.0)
    high = policy.backoff(attempt, rand=lambda: 1.0)
    exp = min(policy.cap, policy.base * 2.0 ** (attempt - 1))
    assert 0 < low <= high <= policy.cap
    assert low == pytest.approx(exp / 2)
    assert high == pytest.approx(exp)
    assert math.isfinite(low) and math.isfinite(high)


@pytest.mark.parametrize("attempt", [0, -1, -1000, 10**9, 2**63])
def test_backoff_hostile_attempt_numbers(attempt: int) -> None:
    policy = RetryPolicy()
    for rand in (0.0, 0.5, 1.0):
        delay = policy.backoff(attempt, rand=lambda r=rand: r)
        assert 0 < delay <= policy.cap
    if attempt <= 1:
        assert policy.backoff(attempt, rand=lambda: 1.0) == policy.base


def test_backoff_is_exact_for_the_default_policy() -> None:
    policy = RetryPolicy()  # base 0.5, cap 30
    highs = [policy.backoff(n, rand=lambda: 1.0) for n in range(1, 10)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    lows = [policy.backoff(n, rand=lambda: 0.0) for n in range(1, 10)]
    assert lows == [h / 2 for h in highs]


@pytest.mark.parametrize("attempt", [1, 3, 6, 40])
def test_backoff_jitter_spans_the_upper_half(attempt: int) -> None:
    policy = RetryPolicy()
    exp = min(policy.cap, policy.base * 2.0 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [policy.backoff(attempt, rand=rng.random) for _ in range(2000)]
    assert all(exp / 2 <= d <= exp for d in delays)
    # spread over the whole range, not stuck at one end
    assert min(delays) < exp / 2 + exp * 0.02
    assert max(delays) > exp - exp * 0.02
    assert len(set(delays)) > 1000


def test_backoff_with_the_default_random_source_stays_in_range() -> None:
    policy = RetryPolicy()
    assert all(0.25 <= policy.backoff(1) <= 0.5 for _ in range(200))


def test_backoff_is_non_decreasing_in_attempt() -> None:
    for policy in POLICIES:
        for rand in (0.0, 0.3, 1.0):
            delays = [policy.backoff(n, rand=lambda r=rand: r) for n in range(1, 71)]
            assert delays == sorted(delays)


# -- should_retry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "elapsed", "expected"),
    [
        (1, 0.0, True),
        (5, 0.0, True),
        (6, 0.0, False),  # max_attempts tries in all
        (7, 0.0, False),
        (100, 0.0, False),
        (1, 299.999, True),
        (1, 300.0, False),  # max_elapsed reached
        (1, 301.0, False),
        (5, 299.0, True),
        (6, 299.0, False),
        (1, math.inf, False),
        (1, math.nan, False),  # an unreadable clock never retries forever
        (0, 0.0, True),
        (-3, 0.0, True),
    ],
)
def test_should_retry_bounds_by_count_and_elapsed(
    attempt: int, elapsed: float, expected: bool
) -> None:
    policy = RetryPolicy(max_attempts=6, max_elapsed=300.0)
    assert policy.should_retry(attempt=attempt, elapsed=elapsed) is expected


def test_a_single_attempt_policy_never_retries() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert not policy.should_retry(attempt=1, elapsed=0.0)


def test_retry_loop_driven_by_the_policy_is_bounded() -> None:
    policy = RetryPolicy(max_attempts=6, base=1.0, cap=8.0, max_elapsed=20.0)
    elapsed, attempt, waits = 0.0, 1, []
    while policy.should_retry(attempt=attempt, elapsed=elapsed):
        wait = policy.backoff(attempt, rand=lambda: 1.0)
        waits.append(wait)
        elapsed += wait
        attempt += 1
    # 1 + 2 + 4 + 8 = 15 s, then 15 + 8 = 23 s would be the 6th try: elapsed stops it first
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert attempt == 6


# -- RetryPolicy validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("base", 0.0),
        ("base", -0.5),
        ("base", math.nan),
        ("base", math.inf),
        ("cap", 0.0),
        ("cap", -1.0),
        ("cap", math.nan),
        ("cap", math.inf),
        ("max_elapsed", 0.0),
        ("max_elapsed", math.inf),
        ("max_elapsed", -math.inf),
        ("max_throttled", 0.0),
        ("max_throttled", math.nan),
    ],
)
def test_retry_policy_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_retry_policy_is_frozen_and_keyword_only() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.cap = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(6)  # type: ignore[misc]


# -- parse_retry_after --------------------------------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a fixed "now"
CAP = RETRY_AFTER_CAP


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("0.0", 0.0),
        ("  7  ", 7.0),
        ("+4", 4.0),
        ("120", 120.0),
        ("121", CAP),
        ("86400", CAP),
        ("-5", 0.0),
        ("-0.1", 0.0),
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("-nan", None),
        ("inf", CAP),
        ("Infinity", CAP),
        ("1e309", CAP),
        ("1e-400", 0.0),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("3 seconds", None),
        ("3,5", None),
        ("0x10", None),
        ("\x00", None),
        ("Wed, 32 Foo 2015 07:28:00 GMT", None),
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),
    ],
)
def test_parse_retry_after_table(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == expected
        assert 0.0 <= result <= CAP


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (30, 30.0),
        (1, 1.0),
        (0, 0.0),
        (-1, 0.0),
        (-3600, 0.0),
        (119, 119.0),
        (121, CAP),
        (10**6, CAP),
    ],
)
def test_parse_retry_after_http_date(offset: int, expected: float) -> None:
    value = formatdate(NOW + offset, usegmt=True)  # "Tue, 14 Nov 2023 22:13:50 GMT"
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 14 Nov 2023 22:13:50 GMT",  # IMF-fixdate
        "Tuesday, 14-Nov-23 22:13:50 GMT",  # obsolete RFC 850
        "Tue Nov 14 22:13:50 2023",  # obsolete asctime: no zone, GMT by definition
        "Tue, 14 Nov 2023 22:13:50 +0000",
        "Tue, 14 Nov 2023 22:13:50 -0000",
        "Tue, 14 Nov 2023 22:13:50",  # no zone at all: HTTP dates are always GMT
        "Tue, 14 Nov 2023 23:13:50 +0100",
    ],
)
def test_every_http_date_format_is_read_as_gmt(value: str) -> None:
    # RFC 9110 5.6.7: recipients must accept all three formats; every HTTP-date is GMT.
    assert parse_retry_after(value, now=NOW) == 30.0


def test_parse_retry_after_custom_cap() -> None:
    assert parse_retry_after("500", now=NOW, cap=10.0) == 10.0
    assert parse_retry_after("5", now=NOW, cap=10.0) == 5.0
    assert parse_retry_after(formatdate(NOW + 60, usegmt=True), now=NOW, cap=10.0) == 10.0


def test_parse_retry_after_date_depends_only_on_the_given_now() -> None:
    value = formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(value, now=NOW + 10) == 20.0
    assert parse_retry_after(value, now=NOW + 100) == 0.0
    assert parse_retry_after(value, now=NOW - 1000) == CAP
