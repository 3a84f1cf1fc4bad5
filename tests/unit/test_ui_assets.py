"""The review page's files: all inside the package, nothing fetched from another host, and the CT window
presets it offers are the ones the readers know."""

from __future__ import annotations

import re
from importlib import resources

from fastapi.testclient import TestClient

from service.gateway.rest import ui
from service.io.medical.intensity import PRESETS


def _text(name: str) -> str:
    return resources.files("service.gateway").joinpath("ui", name).read_text()


def test_every_asset_is_in_the_package_and_nothing_comes_from_elsewhere() -> None:
    for name in ui._ASSETS:
        text = _text(name)
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "import(" not in text and not re.search(r"from \"https?:", text), name
    page = _text("index.html")
    assert set(re.findall(r"/ui/static/([\w.]+)", page)) <= set(ui._ASSETS)
    for module in ("app.js", "viewer.js"):
        for imported in re.findall(r"from \"\./([\w.]+)\"", _text(module)):
            assert imported in ui._ASSETS, (module, imported)


def test_the_page_offers_the_readers_ct_presets() -> None:
    listed = re.search(r"CT_PRESETS = \[([^\]]*)\]", _text("app.js"))
    assert listed is not None
    assert set(re.findall(r"\"(\w+)\"", listed.group(1))) == set(PRESETS)


def test_served_with_types_and_a_content_security_policy() -> None:
    from fastapi import FastAPI

    from service.gateway.rest import errors

    app = FastAPI()
    errors.install(app)
    app.include_router(ui.router)
    client = TestClient(app)
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/ui/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/secrets.txt").status_code == 404
    assert client.get("/ui/static/..%2Fui.py").status_code == 404
