"""Completion after a crash: an answer opted in with `recover_with` whose writer is
gone reads as recovering (not interrupted), is claimed by at most one claimant at a
time, fenced like any takeover, and completed by a `Recoverer`."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from support import OffsetClock

from chatpersist import ChatStore
from chatpersist.providers import CANNED_ANSWER, FakeModelServer, OpenAICompatible
from chatpersist.recovery import Recoverer

LATER = 31  # seconds past the default lease of 30


def _open_with_text(store: ChatStore, text: str = "partial ", **options: object) -> object:
    """A draft left open with its text flushed (its writer will look dead to a store
    whose clock is `LATER` seconds ahead)."""
    sid = store.create_session()
    d = store.draft(sid, **options)  # type: ignore[arg-type]
    d.__enter__()
    d.append(text)
    d.flush()
    return d


def test_a_crashed_opted_in_answer_is_recovering_and_claimed_once(
    make_store: Callable[..., ChatStore],
) -> None:
    writer = make_store()
    d = _open_with_text(writer, recover_with="fake")
    later = make_store(clock=OffsetClock(LATER))
    m = later.get_message(d.message_id)  # type: ignore[attr-defined]
    assert (m.recovering, m.interrupted, m.live, m.recover_with) == (True, False, True, "fake")
    assert later.interrupted() == []  # the audit does not count it as cut
    seen = later.activity()  # what `chatpersist top` shows
    assert [(a.message_id, a.state) for a in seen.answers] == [(m.id, "recovering")]
    assert seen.totals.recovering == 1
    assert later.sweep() == 0  # nor does sweep mark it abandoned
    (claimed,) = later.claim_recoverable(5)
    assert claimed.id == d.message_id and claimed.recoveries == 1  # type: ignore[attr-defined]
    assert claimed.live and claimed.recovering
    assert later.claim_recoverable(5) == []  # one claimant only
    # The paused writer comes back: fenced, its text lands nowhere.
    d.append("late")  # type: ignore[attr-defined]
    d.__exit__(None, None, None)  # type: ignore[attr-defined]
    assert d.superseded  # type: ignore[attr-defined]
    assert later.get_message(d.message_id).content == "partial "  # type: ignore[attr-defined]


def test_answers_not_opted_in_or_ended_by_a_user_are_not_claimed(
    make_store: Callable[..., ChatStore],
) -> None:
    writer = make_store()
    plain = _open_with_text(writer)
    sid = writer.create_session()
    with writer.draft(sid, recover_with="fake") as stopped:
        stopped.append("x")
        stopped.stop("stopped")
    later = make_store(clock=OffsetClock(LATER))
    assert later.claim_recoverable(5) == []
    assert later.get_message(plain.message_id).interrupted  # type: ignore[attr-defined]
    assert later.get_message(stopped.message_id).interrupted
    plain.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_a_closed_process_leaves_its_answers_to_recover_at_once(
    make_store: Callable[..., ChatStore],
) -> None:
    """A worker that shuts down (its drafts end 'cancelled') is no crash to wait for."""
    writer = make_store()
    d = _open_with_text(writer, recover_with="fake")
    writer.close()
    other = make_store()
    m = other.get_message(d.message_id)  # type: ignore[attr-defined]
    assert m.finish_reason == "cancelled" and m.recovering and not m.interrupted
    assert [c.id for c in other.claim_recoverable()] == [d.message_id]  # type: ignore[attr-defined]


def test_recoveries_are_bounded(make_store: Callable[..., ChatStore]) -> None:
    writer = make_store()
    d = _open_with_text(writer, recover_with="fake")
    for attempt in range(1, 3):
        later = make_store(clock=OffsetClock(LATER * attempt), max_recoveries=2)
        assert len(later.claim_recoverable()) == 1  # its claimant dies in turn
    last = make_store(clock=OffsetClock(LATER * 3), max_recoveries=2)
    assert last.claim_recoverable() == []
    m = last.get_message(d.message_id)  # type: ignore[attr-defined]
    assert (m.recoveries, m.recovering, m.interrupted) == (2, False, True)
    d.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_claimants_racing_get_each_answer_once(make_store: Callable[..., ChatStore]) -> None:
    writer = make_store()
    drafts = [_open_with_text(writer, recover_with="fake") for _ in range(6)]
    claimants = [make_store(clock=OffsetClock(LATER)) for _ in range(4)]
    got: list[list[str]] = [[] for _ in claimants]
    start = threading.Barrier(len(claimants))

    def claim(i: int) -> None:
        start.wait()
        for _ in range(3):
            got[i] += [str(m.id) for m in claimants[i].claim_recoverable(2)]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(claimants))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(mid for ids in got for mid in ids)
    assert everything == sorted(d.message_id for d in drafts)  # type: ignore[attr-defined]
    for d in drafts:
        d.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_bad_recover_with_is_refused(store: ChatStore) -> None:
    sid = store.create_session()
    for bad in ("", "x" * 256, 3):
        with pytest.raises(ValueError, match="recover_with"):
            store.draft(sid, recover_with=bad)  # type: ignore[arg-type]


def test_a_recoverer_completes_the_answer(make_store: Callable[..., ChatStore]) -> None:
    writer = make_store()
    d = _open_with_text(writer, "It was cut here", recover_with="fake")
    later = make_store(clock=OffsetClock(LATER))
    specs: list[str] = []
    with FakeModelServer(delay=0) as fake:

        def provider_for(spec: str) -> OpenAICompatible:
            specs.append(spec)
            return OpenAICompatible(fake.base_url, "fake-model")

        recoverer = Recoverer(later, provider_for)
        assert recoverer.run_once() == [d.message_id]  # type: ignore[attr-defined]
        assert recoverer.run_once() == []
        requests = fake.requests
    m = later.get_message(d.message_id)  # type: ignore[attr-defined]
    assert m.complete and not m.recovering
    assert m.content == "It was cut here" + CANNED_ANSWER
    assert specs == ["fake"] and recoverer.completed == 1
    # The continuation asked the model to go on from the stored text.
    assert "It was cut here" in str(requests[-1])
    d.__exit__(None, None, None)  # type: ignore[attr-defined]
