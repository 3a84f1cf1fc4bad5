"""The review page (GET /ui) in a real browser: Debian's chromium, headless, driven by Playwright for Python,
against `imos serve` with the bundled model. A dev CT sequence is uploaded as a DICOM series, a lesion is
painted on the middle slice, propagated both ways; the overlay the page shows is checked pixel by pixel
against the masks the API returns; a slice is corrected with the eraser and the run repeats; a DICOM SEG
is downloaded with the object's name. IMOS_UI_SCREENSHOTS=DIR keeps screenshots there (docs/images)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from service.io.medical import DicomWebClient, PacsEndpoint
from tests.e2e.procs import free_port, imos_process, wait_ready
from tests.integration.conftest import orthanc  # noqa: F401 (the Orthanc fixture, shared with the PACS tests)
from tests.integration.orthanc import OrthancServer
from tests.medical_builders import ct_series, dev_sequence

SEQUENCE = "deeplesion__000009_03_01_036-048"
ALPHA = 128 / 255  # the page's overlay at 50 % opacity: round(255 * 0.5) over the frame

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
expect = playwright_api.expect
CHROMIUM = os.environ.get("IMOS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: scripts/install_debian_packages.sh chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ct_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    frames, gt = dev_sequence(SEQUENCE)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, blob in enumerate(ct_series(frames)):
            zf.writestr(f"ct/{i:03d}.dcm", blob)
    path = tmp_path_factory.mktemp("ui") / "ct.zip"
    path.write_bytes(buf.getvalue())
    return path, frames, gt


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def _palette() -> np.ndarray:
    im = Image.new("P", (1, 1))
    from service.io.images import davis_palette
    im.putpalette(davis_palette())
    return np.array(im.getpalette(), np.int16).reshape(-1, 3)


def _overlay_matches(page: object, api: httpx.Client, sid: str, t: int, alpha: float = ALPHA,
                     hidden: tuple[int, ...] = ()) -> float:
    """Share of pixels where the page's composite differs (by more than 3 levels) from the frame blended with
    the API's mask for frame t (objects in ``hidden`` not drawn)."""
    box = page.locator("#overlay").bounding_box()  # type: ignore[attr-defined]
    assert box["x"] == int(box["x"]) and box["y"] == int(box["y"]), box  # whole pixels: no resampling
    shot = _png(page.screenshot(clip=box))  # type: ignore[attr-defined]
    grey = _png(api.get(f"/v1/sessions/{sid}/frames/{t}").content)
    labels = np.asarray(Image.open(io.BytesIO(api.get(f"/v1/sessions/{sid}/masks/{t}").content)))
    colours = _palette()[labels]
    shown = (labels > 0) & ~np.isin(labels, hidden)
    expected = np.where(shown[..., None], np.rint(grey * (1 - alpha) + colours * alpha), grey)
    assert shot.shape == expected.shape, (shot.shape, expected.shape)
    return float((np.abs(shot - expected).max(-1) > 3).mean())


def _paint(page: object, gt: np.ndarray, box: dict[str, float]) -> None:
    """Click the brush over the ground-truth lesion on a grid (a radius-3 brush every 3 pixels)."""
    ys, xs = np.nonzero(gt)
    for y in range(int(ys.min()), int(ys.max()) + 1, 3):
        for x in range(int(xs.min()), int(xs.max()) + 1, 3):
            if gt[y, x]:
                page.mouse.click(box["x"] + x + 0.5, box["y"] + y + 0.5)  # type: ignore[attr-defined]


def _shoot(page: object, name: str) -> None:
    folder = os.environ.get("IMOS_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))  # type: ignore[attr-defined]


def test_open_draw_propagate_scroll_correct_download(browser: object, bundled_service: str,
                                                    ct_zip: tuple[Path, list[np.ndarray], list[np.ndarray]],
                                                    tmp_path: Path) -> None:
    path, frames, gt = ct_zip
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{bundled_service}/ui")
    page.set_input_files("#file", str(path))
    page.get_by_role("button", name="Open file").click()
    expect(page.locator("#status")).to_have_text(re.compile("^Opened"), timeout=60000)
    sid = page.locator("#sid").inner_text()
    n, k = len(frames), len(frames) // 2
    assert page.locator("#frame-label").inner_text() == f"{k + 1} / {n}"

    page.get_by_label("Name of object 1").fill("Lesion")
    page.get_by_label("Size").fill("3")
    _paint(page, gt[k] > 0, page.locator("#overlay").bounding_box())
    page.get_by_role("button", name="Add object").click()  # a second object, drawn with its own colour
    page.get_by_label("Name of object 2").fill("Marker")
    marker = np.zeros_like(gt[k], dtype=bool)
    marker[300:316, 120:136] = True
    _paint(page, marker, page.locator("#overlay").bounding_box())
    _shoot(page, "review-draw.png")
    page.get_by_role("button", name="Propagate both ways").click()
    expect(page.locator("body")).to_have_attribute("data-run", "1", timeout=120000)
    assert page.locator("#progress").get_attribute("value") == page.locator("#progress").get_attribute("max")

    with httpx.Client(base_url=bundled_service, timeout=60) as api:
        drawn = np.asarray(Image.open(io.BytesIO(api.get(f"/v1/sessions/{sid}/masks/{k}").content))) == 1
        assert (drawn & (gt[k] > 0)).sum() / (drawn | (gt[k] > 0)).sum() > 0.8  # what was painted is the lesion
        for step in (0, 1, 1, 1):  # the keyboard scrolls; the overlay equals the API's mask on each frame
            if step:
                page.locator("#overlay").press("ArrowRight")
            t = int(page.locator("#frame").input_value())
            expect(page.locator("#frame-label")).to_have_text(f"{t + 1} / {n}")
            page.wait_for_timeout(150)
            assert _overlay_matches(page, api, sid, t) < 0.002, f"frame {t}"
        assert set(np.unique(np.asarray(Image.open(io.BytesIO(api.get(f"/v1/sessions/{sid}/masks/{k}").content))))
                   ) == {0, 1, 2}
        page.get_by_label("Show object 2").uncheck()  # per-object visibility, then full opacity
        page.get_by_label("Opacity").fill("100")
        assert _overlay_matches(page, api, sid, t, alpha=1.0, hidden=(2,)) < 0.002
        page.get_by_label("Show object 2").check()
        page.get_by_label("Opacity").fill("50")
        page.locator("#frame").fill(str(k + 2))  # the slider
        expect(page.locator("#frame-label")).to_have_text(f"{k + 3} / {n}")
        page.locator("#overlay").hover()
        page.wait_for_timeout(200)  # a wheel right after the pointer arrives can be dropped by the browser
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(200)
        page.mouse.wheel(0, 120)
        expect(page.locator("#frame-label")).to_have_text(f"{k + 5} / {n}")
        assert _overlay_matches(page, api, sid, k + 4) < 0.002
        _shoot(page, "review-result.png")

        # Correct frame k+4 (the one shown): erase across the middle of the object, propagate again
        j = k + 4
        before = np.asarray(Image.open(io.BytesIO(api.get(f"/v1/sessions/{sid}/masks/{j}").content))) == 1
        run1 = {t: api.get(f"/v1/sessions/{sid}/masks/{t}").content for t in range(n)}
        page.keyboard.press("1")  # the eraser clears the active object: the lesion
        page.keyboard.press("e")
        page.get_by_label("Size").fill("6")
        ys, xs = np.nonzero(before)
        row, box = int(ys.mean()), page.locator("#overlay").bounding_box()
        page.mouse.move(box["x"] + int(xs.min()) - 8, box["y"] + row)
        page.mouse.down()
        page.mouse.move(box["x"] + int(xs.max()) + 8, box["y"] + row, steps=20)
        page.mouse.up()
        page.get_by_role("button", name="Propagate both ways").click()
        expect(page.locator("body")).to_have_attribute("data-run", "2", timeout=120000)
        # only what the fix owns is recomputed: from halfway between the two annotations to the end
        lo = (k + j) // 2 + 1
        expect(page.locator("body")).to_have_attribute("data-span", f"{lo}-{n - 1}")
        assert api.get(f"/v1/sessions/{sid}").json()["run"]["span"] == [lo, n - 1]
        for t in range(lo):
            assert api.get(f"/v1/sessions/{sid}/masks/{t}").content == run1[t], f"frame {t} was recomputed"
        after = np.asarray(Image.open(io.BytesIO(api.get(f"/v1/sessions/{sid}/masks/{j}").content))) == 1
        assert not after[row - 3: row + 4].any() and before[row - 3: row + 4].any()
        assert after.sum() < before.sum()
        assert api.get(f"/v1/sessions/{sid}").json()["annotated_frames"] == [k, j]
        assert _overlay_matches(page, api, sid, j) < 0.002

    with page.expect_download() as dl:
        page.get_by_role("button", name="DICOM SEG").click()
    seg_path = tmp_path / "seg.dcm"
    dl.value.save_as(seg_path)
    seg = pydicom.dcmread(seg_path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lesion", "Marker"]
    with page.expect_download() as dl:
        page.get_by_role("button", name="PNG zip", exact=True).click()
    dl.value.save_as(tmp_path / "masks.zip")
    assert len(zipfile.ZipFile(tmp_path / "masks.zip").namelist()) == n
    again = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    again.goto(f"{bundled_service}/ui#session={sid}")  # reopened later: masks and names come back
    expect(again.locator("#status")).to_have_text(re.compile(f"^Opened {n} frames"), timeout=60000)
    expect(again.get_by_label("Name of object 2")).to_have_value("Marker")
    again.close()
    assert not errors, errors
    page.close()


@contextlib.contextmanager
def _serve(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A second `imos serve` (bundled model) with these settings: its URL."""
    http = free_port()
    with imos_process(["serve", "--http-port", str(http), "--grpc-port", str(free_port())], env,
                      tmp_path / "serve.log") as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, proc, tmp_path / "serve.log", timeout_s=180)
        yield url


def test_the_page_uses_the_api_key_and_keeps_tenants_apart(browser: object, tmp_path: Path,
                                                          ct_zip: tuple[Path, list[np.ndarray], list[np.ndarray]]
                                                          ) -> None:
    from service.auth import key_hash

    keys = {"IMOS_API_KEYS": f"alpha:{key_hash('alpha-ui-key')},bravo:{key_hash('bravo-ui-key')}"}
    with _serve(keys, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        page.goto(f"{url}/ui")  # the page itself needs no key
        page.set_input_files("#file", str(ct_zip[0]))
        page.get_by_role("button", name="Open file").click()
        expect(page.locator("#status")).to_have_text(re.compile("Could not open the file: an API key is required"))
        page.get_by_label("API key").fill("alpha-ui-key")
        page.get_by_label("API key").press("Tab")
        page.get_by_role("button", name="Open file").click()
        expect(page.locator("#status")).to_have_text(re.compile("^Opened 13 frames"), timeout=60000)
        sid = page.locator("#sid").inner_text()
        page.get_by_label("API key").fill("bravo-ui-key")
        page.get_by_label("API key").press("Tab")
        page.get_by_label("Session id").fill(sid)
        page.get_by_role("button", name="Open session").click()
        expect(page.locator("#status")).to_have_text(re.compile("Could not open the session: .*(no session|not found)",
                                                                re.I))
        page.close()


def test_a_pacs_series_opens_in_the_page(browser: object, tmp_path: Path, orthanc: OrthancServer,  # noqa: F811
                                         ct_zip: tuple[Path, list[np.ndarray], list[np.ndarray]]) -> None:
    frames = ct_zip[1]
    instances = ct_series(frames)
    ds = pydicom.dcmread(io.BytesIO(instances[0]))
    with DicomWebClient(PacsEndpoint("o", orthanc.dicomweb, *orthanc.auth)) as c:
        c.store(instances)
    user, password = orthanc.auth
    env = {"IMOS_PACS__MAIN__URL": orthanc.dicomweb, "IMOS_PACS__MAIN__USERNAME": user,
           "IMOS_PACS__MAIN__PASSWORD": password}
    with _serve(env, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        page.goto(f"{url}/ui")
        expect(page.get_by_label("PACS")).to_have_value("main")
        page.get_by_label("Study UID").fill(str(ds.StudyInstanceUID))
        page.get_by_label("Series UID").fill(str(ds.SeriesInstanceUID))
        page.get_by_role("button", name="Open series").click()
        expect(page.locator("#status")).to_have_text(re.compile(f"^Opened {len(frames)} frames"), timeout=60000)
        sid = page.locator("#sid").inner_text()
        # the series default window of the builder gives the pixels back: the page shows the PACS's slices
        middle = len(frames) // 2
        shown = httpx.get(f"{url}/v1/sessions/{sid}/frames/{middle}").content
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(shown))), frames[middle])
        page.close()
