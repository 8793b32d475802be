from __future__ import annotations

import pytest

from domain.events import account_id_for
from domain.ids import account_of_withdrawal, withdrawal_id_for


def test_withdrawal_id_names_its_account() -> None:
    acct = account_id_for("asm_1")
    wid = withdrawal_id_for(acct, "usr_1", None)
    assert account_of_withdrawal(wid) == acct
    assert withdrawal_id_for(acct, "usr_1", None) != wid


def test_same_idempotency_key_same_id_other_user_other_id() -> None:
    acct = account_id_for("asm_1")
    assert withdrawal_id_for(acct, "u", "k") == withdrawal_id_for(acct, "u", "k")
    assert withdrawal_id_for(acct, "u", "k") != withdrawal_id_for(acct, "v", "k")


def test_foreign_ids_are_refused() -> None:
    assert account_of_withdrawal("w-1") is None
    with pytest.raises(ValueError):
        withdrawal_id_for("acct_x", "u", None)
