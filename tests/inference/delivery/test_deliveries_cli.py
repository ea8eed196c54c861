"""`defectlens deliveries list | retry`: dead letters seen and re-sent from the command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from store_factories import make_result

from defectlens.cli import main
from defectlens.inference.store import Store, open_database
from defectlens.inference.store.tables import utc_now


def test_list_and_retry_a_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    database = open_database(f"sqlite:///{tmp_path / 'home' / 'defectlens.db'}")
    store = Store(database)
    result = make_result(1)
    store.save_result(result, sinks=("webhook",))
    (claimed,) = store.claim_deliveries("webhook")
    store.mark_failed(claimed.id, "webhook answered 400", utc_now() + timedelta(hours=1), True)

    assert main(["deliveries", "list"]) == 0
    out = capsys.readouterr().out
    assert result.result_id in out and "dead" in out and "webhook answered 400" in out

    assert main(["deliveries", "retry", str(claimed.id)]) == 0
    assert "will be sent again" in capsys.readouterr().out
    assert store.get_delivery(claimed.id).state == "pending"  # type: ignore[union-attr]
    assert main(["deliveries", "list"]) == 0
    assert "no dead deliveries" in capsys.readouterr().out
    assert main(["deliveries", "retry", "424242"]) == 2
    assert "not found" in capsys.readouterr().err
    database.close()
