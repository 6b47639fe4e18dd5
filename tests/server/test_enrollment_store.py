"""The participant token store: only digests on disk, verdicts, revocation, clientID binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from disco.server import enrollment
from disco.server.enrollment import EnrollmentError, TokenStore, Verdict


def test_tokens_are_random_and_only_their_digest_is_stored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    record, token = store.create("titanic", "hospital A")
    _, other = store.create("titanic")
    assert token != other and len(token) >= 43  # 256 bits, URL-safe
    on_disk = store.path.read_text()
    assert token not in on_disk and other not in on_disk
    assert record.digest in on_disk
    reloaded = TokenStore(tmp_path)
    reloaded.load()
    assert reloaded.check("titanic", token) == (Verdict.VALID, record)
    assert [r.label for r in reloaded.tokens("titanic")] == ["hospital A", ""]


def test_tokens_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`disco tasks --token T` must parse: a leading "-" would read as an option."""
    drawn = iter(["-starts-like-an-option", "-again", "fine-token"])
    monkeypatch.setattr(enrollment.secrets, "token_urlsafe", lambda _: next(drawn))
    assert enrollment.new_token() == "fine-token"


def test_verdicts(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    record, token = store.create("titanic")
    _, mnist_token = store.create("mnist")
    assert store.check("titanic", None)[0] is Verdict.MISSING
    assert store.check("titanic", "nope")[0] is Verdict.UNKNOWN
    assert store.check("titanic", mnist_token)[0] is Verdict.OTHER_TASK
    store.revoke("titanic", record.token_id)
    assert store.check("titanic", token)[0] is Verdict.REVOKED
    with pytest.raises(EnrollmentError):
        store.revoke("mnist", record.token_id)  # not that task's token


def test_a_client_id_belongs_to_the_first_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    first, _ = store.create("titanic")
    second, _ = store.create("titanic")
    assert store.claim_client("titanic", "alice", first.token_id)
    assert store.claim_client("titanic", "alice", first.token_id)
    assert not store.claim_client("titanic", "alice", second.token_id)
    assert store.claim_client("mnist", "alice", second.token_id)


def test_a_foreign_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "enrollment.json").write_text("[1, 2]")
    with pytest.raises(EnrollmentError, match="cannot read"):
        TokenStore(tmp_path).load()
