"""Every page renders in English and Chinese for a signed-in QA engineer; both catalogues have
the same keys; every key a page script asks for is in them; every asset is local."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from api_service import Service
from fastapi.testclient import TestClient
from test_signin import PAGE, sign_in

from defectlens.inference.web.messages import CATALOGUE_DIR, LANGS, catalogue

STATIC = Path(CATALOGUE_DIR).parent / "static"
TEMPLATES = Path(CATALOGUE_DIR).parent / "templates"
PAGES = ["/review", "/review?order=newest", "/datasets", "/jobs", "/compare", "/models", "/audit"]


def test_both_catalogues_have_the_same_keys_and_no_empty_message() -> None:
    keys = {lang: set(catalogue(lang)) for lang in LANGS}
    assert keys["en"] == keys["zh"], keys["en"] ^ keys["zh"]
    for lang in LANGS:
        assert all(text.strip() for text in catalogue(lang).values()), lang
        # The same {fields} in both languages, so a filled message never loses a value.
    for key in keys["en"]:
        fields = {lang: set(re.findall(r"\{(\w+)\}", catalogue(lang)[key])) for lang in LANGS}
        assert fields["en"] == fields["zh"], key


def test_every_key_the_scripts_and_templates_ask_for_is_in_the_catalogue() -> None:
    asked = set()
    for script in STATIC.glob("*.js"):
        asked |= set(re.findall(r"\bt\(\"([\w.]+)\"\s*[,)]", script.read_text()))
    for template in TEMPLATES.glob("*.html"):
        asked |= set(re.findall(r"\bt\(\"([\w.]+)\"\s*[,)]", template.read_text()))
    assert len(asked) > 60
    assert asked <= set(catalogue("en")), asked - set(catalogue("en"))


def test_no_page_or_asset_loads_anything_from_elsewhere() -> None:
    for path in [*STATIC.iterdir(), *TEMPLATES.iterdir()]:
        assert not re.search(r"(src|href)=\"(https?:)?//", path.read_text()), path


@pytest.mark.parametrize("lang", LANGS)
def test_every_page_renders_in_each_language(
    make_service: Callable[..., Service], good_part: bytes, lang: str
) -> None:
    service = make_service(keep_ok_fraction=1.0)  # the OK part's image is kept
    stored = service.inspect(good_part, role="line").json()
    sign_in(service, "qa")
    words = catalogue(lang)
    for path in [*PAGES, f"/review/{stored['result_id']}"]:
        joiner = "&" if "?" in path else "?"
        answer = service.client.get(f"{path}{joiner}lang={lang}", headers=PAGE)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert words["nav.review"] in answer.text and words["nav.signout"] in answer.text
        embedded = re.search(
            r'<script type="application/json" id="messages">(.*?)</script>', answer.text, re.S
        )
        assert embedded and json.loads(embedded.group(1)) == words
    # The choice is remembered in a cookie: the next page without ?lang= is in it too.
    assert words["review.title"] in service.client.get("/review", headers=PAGE).text


def test_the_audit_page_names_each_actor_key(service: Service) -> None:
    second = service.model_dirs[1]
    promoted = service.client.post(
        "/v1/stations/s1/promote", json={"model_dir": str(second)}, headers=service.auth("qa")
    )
    assert promoted.status_code == 200, promoted.text
    entries = service.client.get("/v1/audit", headers=service.auth("admin")).json()
    actor = entries[0]["actor"]
    assert actor.startswith("key:")
    sign_in(service, "qa")
    row = re.search(
        rf"<td>{actor} <span class=\"hint\">\((.*?)\)</span></td>",
        service.client.get("/audit", headers=PAGE).text,
    )
    assert row and row.group(1) == "test-qa"


def test_the_review_page_lists_the_queue(
    service: Service, part_images: dict[str, list[Path]]
) -> None:
    kinds = [k for k in part_images if k not in ("train", "good")]
    ng = service.inspect(part_images[kinds[0]][0].read_bytes(), role="line").json()
    sign_in(service, "qa")
    page = service.client.get("/review", headers=PAGE).text
    assert f'data-result="{ng["result_id"]}"' in page
    assert f"/v1/results/{ng['result_id']}/image" in page


def test_a_page_the_role_may_not_open_or_a_missing_part_says_so_as_a_page(
    service: Service,
) -> None:
    line = TestClient(service.client.app)
    line.post("/signin", data={"key": service.keys["line"]}, follow_redirects=False)
    refused = line.get("/review?lang=zh", headers=PAGE)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert catalogue("zh")["error.forbidden"] in refused.text
    assert "role &#39;line&#39; may not review parts" in refused.text
    assert line.get("/v1/review").json()["detail"].startswith("role 'line' may not")  # API: JSON
    sign_in(service, "qa")
    missing = service.client.get("/review/01NOTAPART?lang=en", headers=PAGE)
    assert missing.status_code == 404
    assert "Not found" in missing.text and "result &#39;01NOTAPART&#39; not found" in missing.text
    assert service.client.get("/v1/results/01NOTAPART").status_code == 404
