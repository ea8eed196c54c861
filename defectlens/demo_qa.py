"""The demo's last step: the QA engineer's pages on the demo's stored parts. The service runs
again on the demo workspace with a new `qa` key, and the demo prints the review queue's
address and the key to sign in with; at a terminal it keeps serving until Enter."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


def show_review_queue(home: Path) -> None:
    """Serve the workspace, print the review queue's URL and a `qa` key for its sign-in page;
    wait for Enter when a person is at the terminal (a script goes straight on)."""
    from defectlens.demo import STATION, _free_port, _running_service
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings(home=home, host="127.0.0.1", port=_free_port())
    store = Store(open_database(settings.resolved_database_url))
    try:
        _key_id, key = store.create_key("qa", "demo-qa", actor="demo")
    finally:
        store.db.close()
    with _running_service(settings) as url:
        print("the QA pages (sign in with the qa key, then label, freeze, retrain, compare):")
        print(f"    qa key:       {key}")
        print(f"    review queue: {url}/review?station={STATION}")
        if sys.stdin.isatty():
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input("    serving; press Enter to stop ")
        else:
            print(f"    (DEFECTLENS_HOME={home} defectlens serve serves the same pages)")
