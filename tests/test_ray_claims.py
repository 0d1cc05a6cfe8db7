"""Who submits a text across Ray actors: the pure claim states (batch_embed.ray.claims)."""

from __future__ import annotations

import pytest

from batch_embed.ray.claims import ClaimBook, ClaimKind, SubmittedJob
from batch_embed.records import ErrorKind


def test_the_first_claimant_submits_and_the_others_wait_then_share_the_job() -> None:
    book = ClaimBook(max_resubmits=2)
    assert book.claim("a").kind is ClaimKind.SUBMIT
    assert book.claim("a").kind is ClaimKind.PENDING
    book.publish("a", "req-1", submitted_at=5.0)
    joined = book.claim("a")
    assert (joined.kind, joined.request_id, joined.submitted_at) == (ClaimKind.JOB, "req-1", 5.0)
    assert book.submits_granted == 1
    assert len(book) == 1


def test_a_failed_submit_fails_every_waiter_without_another_submit() -> None:
    book = ClaimBook(max_resubmits=2)
    book.claim("a")
    book.fail("a", ErrorKind.REJECTED, "HTTP 400")
    for _ in range(3):
        claim = book.claim("a")
        assert (claim.kind, claim.error_kind, claim.message) == (
            ClaimKind.FAILED,
            ErrorKind.REJECTED,
            "HTTP 400",
        )
    assert book.submits_granted == 1


def test_a_lost_job_is_resubmitted_once_by_its_first_reporter_then_fails_as_lost() -> None:
    book = ClaimBook(max_resubmits=1)
    book.claim("a")
    book.publish("a", "req-1", 1.0)
    assert book.lost("a", "req-1").kind is ClaimKind.SUBMIT
    # A second worker that polled the same lost job waits for the resubmit instead.
    assert book.lost("a", "req-1").kind is ClaimKind.PENDING
    book.publish("a", "req-2", 2.0)
    assert book.lost("a", "req-1").request_id == "req-2"  # a stale report changes nothing
    final = book.lost("a", "req-2")
    assert final.kind is ClaimKind.FAILED and final.error_kind is ErrorKind.LOST
    assert final.message is not None and "2 times" in final.message
    assert "req-1" in final.message and "req-2" in final.message
    assert book.submits_granted == 2
    assert book.peek("a").kind is ClaimKind.FAILED


def test_peek_never_claims() -> None:
    book = ClaimBook(max_resubmits=0)
    with pytest.raises(KeyError):
        book.peek("a")
    assert book.claim("a").kind is ClaimKind.SUBMIT


def test_the_resubmit_allowance_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="max_resubmits"):
        ClaimBook(max_resubmits=-1)


def test_an_adopted_job_is_joined_without_a_submit_and_resubmitted_once_when_lost() -> None:
    book = ClaimBook(max_resubmits=1)
    book.adopt(SubmittedJob("a", "req-old", 10.0))
    joined = book.claim("a")
    assert (joined.kind, joined.request_id, joined.submitted_at) == (ClaimKind.JOB, "req-old", 10.0)
    assert book.submits_granted == 0
    assert book.lost("a", "req-old").kind is ClaimKind.SUBMIT  # expired since: paid once more
    book.publish("a", "req-new", 20.0)
    final = book.lost("a", "req-new")
    assert final.kind is ClaimKind.FAILED and final.message is not None
    assert "req-old" in final.message and "req-new" in final.message
    assert book.submits_granted == 1


def test_adopting_a_digest_already_claimed_changes_nothing() -> None:
    book = ClaimBook(max_resubmits=1)
    assert book.claim("a").kind is ClaimKind.SUBMIT
    book.adopt(SubmittedJob("a", "req-old", 1.0))
    assert book.peek("a").kind is ClaimKind.PENDING
    assert book.published_since(0) == ([], 0)  # adopting publishes nothing


def test_published_jobs_come_out_once_acknowledged_ones_are_dropped() -> None:
    book = ClaimBook(max_resubmits=1)
    for digest in "abc":
        book.claim(digest)
    book.publish("a", "r-a", 1.0)
    book.publish("b", "r-b", 2.0)
    first, cursor = book.published_since(0)
    assert first == [SubmittedJob("a", "r-a", 1.0), SubmittedJob("b", "r-b", 2.0)]
    assert cursor == 2
    assert book.published_since(0) == (first, 2)  # not acknowledged yet: read again
    book.publish("c", "r-c", 3.0)
    assert book.published_since(cursor) == ([SubmittedJob("c", "r-c", 3.0)], 3)
    assert book.published_since(3) == ([], 3)
    assert book.published_since(0) == ([], 3)  # what was acknowledged is gone


def test_past_the_submit_cap_claims_and_resubmits_are_capped() -> None:
    book = ClaimBook(max_resubmits=2, max_submits=2)
    assert book.claim("a").kind is ClaimKind.SUBMIT
    assert book.claim("b").kind is ClaimKind.SUBMIT
    assert book.claim("c").kind is ClaimKind.CAPPED
    assert book.claim("c").kind is ClaimKind.CAPPED  # asked again: still not granted
    book.adopt(SubmittedJob("d", "r-d", 1.0))
    assert book.claim("d").kind is ClaimKind.JOB  # an earlier run's job costs nothing
    book.publish("a", "r-a", 1.0)
    assert book.lost("a", "r-a").kind is ClaimKind.CAPPED  # its resubmit would pass the cap
    assert book.peek("a").kind is ClaimKind.CAPPED
    assert (book.submits_granted, book.capped) == (2, 2)


def test_a_cap_of_zero_submits_nothing() -> None:
    book = ClaimBook(max_resubmits=2, max_submits=0)
    assert book.claim("a").kind is ClaimKind.CAPPED
    assert book.submits_granted == 0
    with pytest.raises(ValueError, match="max_submits"):
        ClaimBook(max_resubmits=0, max_submits=-1)
