"""The people-facing pages in a real browser: headless Chromium (Debian's
`chromium` and `chromium-driver`, which .ci/run installs) driven by Selenium,
against `deviceflow serve --demo`, in a phone-sized window.

Each page is photographed into a temporary folder (printed with `-rs`); with
DEVICEFLOW_SCREENSHOTS=docs/screenshots the set shown in the README is
refreshed from the same run. Without Chromium the tests are skipped, unless
DEVICEFLOW_REQUIRE_BROWSER is set (CI), where a missing browser fails them.
"""

import os
import shutil
import tempfile
import threading
import time

import pytest
import requests
from helpers import DEVICE_GRANT, control_headers
from test_e2e import PRM, device_post

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = {"width": 360, "height": 740, "pixelRatio": 2}
OPERATOR = {"OPERATOR_NAME": "Association Domotique Exemple", "OPERATOR_CONTACT": "contact@example.org"}

pytestmark = pytest.mark.e2e

# WCAG 2.x contrast of every piece of text on the page against the background
# it is painted on: the failures, as "text: ratio" strings.
CONTRAST_FAILURES = """
function rgb(value) { return value.match(/[\\d.]+/g).map(Number); }
function luminance(c) {
  var l = c.slice(0, 3).map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
}
function background(el) {
  for (; el; el = el.parentElement) {
    var c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255];
}
var failures = [];
document.querySelectorAll("body *").forEach(function (el) {
  var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own || !el.getClientRects().length) return;
  var style = getComputedStyle(el), a = luminance(rgb(style.color)), b = luminance(background(el));
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  var size = parseFloat(style.fontSize), large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) failures.push(el.textContent.trim().slice(0, 40) + ": " + ratio.toFixed(2));
});
return failures;
"""

UNLABELLED_CONTROLS = """
return Array.prototype.filter.call(document.querySelectorAll("input:not([type=hidden]), button, select, textarea"),
  function (el) { return !(el.labels && el.labels.length) && !el.textContent.trim() && !el.getAttribute("aria-label"); }
).map(function (el) { return el.outerHTML.slice(0, 80); });
"""


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Where the pages are photographed; copied to DEVICEFLOW_SCREENSHOTS at the end."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    keep = os.environ.get("DEVICEFLOW_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for picture in sorted(folder.glob("*.png")):
            shutil.copy(picture, keep)


@pytest.fixture
def chromium(screenshots):
    """A factory of headless Chromium windows the size of a phone, in a language."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("DEVICEFLOW_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)

    opened = []

    def open_browser(language="fr-FR,fr", javascript=True):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ):
            options.add_argument(flag)
        profile = tempfile.mkdtemp(prefix="chromium-")
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--lang={language.split(',')[0]}")
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
        # An explicit driver path: Selenium Manager must not try to download one.
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(20)
        opened.append((driver, profile))
        if not javascript:  # the pages' scripts only; the checks below still run
            driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        return Page(driver, screenshots, javascript)

    yield open_browser
    for driver, profile in opened:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """One browser window and the checks every page of ours must pass."""

    def __init__(self, driver, folder, javascript=True):
        self.driver = driver
        self.folder = folder
        self.javascript = javascript

    def open(self, url):
        self.driver.get(url)
        return self

    def find(self, css):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css="main"):
        return self.find(css).text

    @property
    def url(self):
        return self.driver.current_url

    @property
    def lang(self):
        return self.find("html").get_attribute("lang")

    def click(self, css):
        """Click and wait for the next page to be there."""
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.execute_script("window.beforeClick = true")  # gone once the next page is loaded
        if self.javascript:
            self.find(css).click()
        else:  # chromedriver's click waits forever on a page without scripts: the keyboard does the same
            self.find(css).send_keys(Keys.ENTER)
        WebDriverWait(self.driver, 15).until(
            lambda driver: driver.execute_script("return !window.beforeClick && document.readyState === 'complete'")
        )
        return self

    def type(self, css, text):
        field = self.find(css)
        field.clear()
        field.send_keys(text)
        return field

    def check(self):
        """Readable on a 360 px screen without sideways scrolling, every control
        labelled, every text contrasted enough, no resource refused by the CSP."""
        width = self.driver.execute_script("return window.innerWidth")
        assert width == PHONE["width"]
        assert self.driver.execute_script("return document.documentElement.scrollWidth") <= width
        assert self.driver.execute_script(UNLABELLED_CONTROLS) == []
        assert self.driver.execute_script(CONTRAST_FAILURES) == []
        # the local stylesheet was applied (the CSP lets nothing else in)
        assert self.driver.execute_script("return getComputedStyle(document.body).margin") == "0px"
        return self

    def shoot(self, name):
        """The whole page, as a phone shows it when scrolled through."""
        import base64

        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        picture = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": PHONE["width"], "height": height, "scale": 0.75},
            },
        )
        (self.folder / f"{name}.png").write_bytes(base64.b64decode(picture["data"]))
        return self


# --- the device side, as DomoticzLinky speaks it


def device_code(base):
    answer = device_post(base, "/device/code")
    assert answer.status_code == 200
    return answer.json()


class Poller(threading.Thread):
    """A device polling /device/token at the advertised interval until it gets an answer other than pending."""

    def __init__(self, base, code, limit=90):
        super().__init__(daemon=True)
        self.base, self.code, self.deadline = base, code, time.monotonic() + limit
        self.answers = []

    def run(self):
        while time.monotonic() < self.deadline:
            answer = device_post(
                self.base, "/device/token", grant_type=DEVICE_GRANT, device_code=self.code["device_code"]
            )
            self.answers.append((answer.status_code, answer.json()))
            if answer.json().get("error") != "authorization_pending":
                return
            time.sleep(self.code["interval"])

    def result(self):
        self.join(timeout=max(0.0, self.deadline - time.monotonic()) + 15)
        assert self.answers, "the device never polled"
        return self.answers


# --- the tests


def test_person_confirms_on_a_phone_while_the_device_polls(live_server, chromium):
    base = live_server(LIMIT_REQUESTS_PER_MINUTE="60", **OPERATOR)
    phone = chromium()

    phone.open(f"{base}/").check().shoot("home")
    assert phone.lang == "fr"
    assert "Association Domotique Exemple" in phone.text("#operator")
    assert phone.find("#operator a").get_attribute("href") == "mailto:contact@example.org"
    assert "5 minutes" in phone.text("#stored") and "3 ans" in phone.text("#stored")

    code = device_code(base)
    device = Poller(base, code)
    device.start()

    phone.open(code["verification_uri_complete"]).check().shoot("confirm")
    assert phone.find("#user-code").text == code["user_code"]
    assert float(phone.find("#user-code").value_of_css_property("font-size").rstrip("px")) >= 30
    assert "DomoticzLinky" in phone.text("#application")
    assert "propre appareil" in phone.text("#warning")
    assert [b.text for b in phone.all("main button")] == ["Continuer vers Enedis"]

    phone.click("#confirm")
    assert "/enedis/dataconnect/v1/oauth2/authorize" in phone.url
    phone.shoot("enedis-consent")  # the simulated Enedis page, not ours: photographed, not judged
    phone.find(f"input[value='{PRM}']").click()
    phone.click("button[value=accept]")

    assert phone.url.startswith(f"{base}/auth/redirect")
    phone.check().shoot("done")
    assert phone.text("#done") == "C'est fait !"
    assert "Domoticz" in phone.text("#next") and PRM in phone.text("#usage-points")

    answers = device.result()
    assert answers[0][1]["error"] == "authorization_pending"  # it was polling before the consent
    status, tokens = answers[-1]
    assert status == 200 and tokens["usage_points_id"] == PRM and tokens["access_token"]

    # Enedis's answer cannot be replayed: the switch shows the same page again, in English
    phone.click("#switch-language")
    assert phone.lang == "en" and phone.text("#done") == "All done!" and PRM in phone.text("#usage-points")


def test_a_wrong_code_shows_the_error(live_server, chromium):
    base = live_server()
    phone = chromium()
    phone.open(f"{base}/device").check().shoot("code-entry")
    field = phone.type("#user_code", "bcdfbcdf")
    assert field.get_attribute("value") == "BCDF-BCDF"  # the script only helps the eye
    phone.click("#continue")
    phone.check().shoot("wrong-code")
    assert "inconnu" in phone.text("#error")
    assert phone.find("#user_code").get_attribute("aria-invalid") == "true"
    assert phone.find("#user_code").get_attribute("value") == "BCDF-BCDF"


def test_english_when_the_browser_asks_for_it_even_without_javascript(live_server, chromium):
    base = live_server()
    code = device_code(base)
    phone = chromium(language="en-GB,en", javascript=False)

    phone.open(f"{base}/device")
    assert phone.lang == "en" and "Enter the code" in phone.text("h1")
    typed = code["user_code"].lower().replace("-", " ")
    assert phone.type("#user_code", typed).get_attribute("value") == typed  # no script reformatted it
    phone.click("#continue")
    phone.check().shoot("confirm-en")
    assert phone.find("#user-code").text == code["user_code"]
    assert [b.text for b in phone.all("main button")] == ["Continue to Enedis"]

    # The switch keeps the code being confirmed
    phone.open(code["verification_uri_complete"]).click("#switch-language")
    assert phone.lang == "fr" and phone.find("#user-code").text == code["user_code"]


def test_refusing_at_enedis_says_what_to_do_next(live_server, chromium):
    base = live_server()
    code = device_code(base)
    phone = chromium()
    phone.open(code["verification_uri_complete"]).click("#confirm").click("button[value=refuse]")
    phone.check().shoot("denied")
    assert phone.text("h1") == "Autorisation refusée"
    assert "nouveau code" in phone.text("#next")
    answer = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])
    assert answer.json()["error"] == "access_denied"


def test_enedis_unavailable_says_what_to_do_next(live_server, chromium):
    base = live_server(ENEDIS_AUTHORIZE_VERSION="v2")
    knobs = requests.post(
        f"{base}/enedis/_control",
        timeout=10,
        headers=control_headers(base),
        json={"fail": {"match": "/subscribed_services", "status": 503, "times": 1000}},
    )
    assert knobs.status_code == 200
    code = device_code(base)
    phone = chromium()
    phone.open(code["verification_uri_complete"]).click("#confirm")
    phone.find(f"input[value='{PRM}']").click()
    phone.click("button[value=accept]")
    phone.check().shoot("enedis-unavailable")
    assert phone.text("h1") == "Enedis ne répond pas"
    assert "rechargez cette page" in phone.text("#next")
    # Nothing was spent: once Enedis answers again, reloading the page completes the authorization
    requests.post(f"{base}/enedis/_control", json={"reset": True}, headers=control_headers(base), timeout=10)
    phone.driver.refresh()
    assert phone.find("#done").text == "C'est fait !" and PRM in phone.text("#usage-points")


def test_too_many_wrong_codes_shows_the_wait(live_server, chromium):
    base = live_server()
    for _ in range(10):
        requests.get(f"{base}/device?code=BBBB-BBBB", timeout=10)
    phone = chromium()
    phone.open(f"{base}/device?code=CCCC-CCCC").check().shoot("too-many-attempts")
    assert phone.text("h1") == "Trop d'essais"
    assert "15 minutes" in phone.text("#next")
    assert phone.all("form") == []  # nothing to type until the wait is over
