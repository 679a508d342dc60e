"""The OTA dashboard in a real browser (headless Chromium through Selenium and the Debian
chromedriver; nothing is downloaded): sign in with password and one-time code, watch a
simulated card's session appear without a reload, push a script from the page, see its result
arrive, and check that markup in card identities and event fields is shown as text.

Run by crates/warden/tests/dashboard_browser.rs, which starts `warden ota serve`. Writes one
screenshot per step into --screenshots and prints a JSON summary on the last line.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import pyotp
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

XSS_ID = "<img src=x onerror=window.__xss=1>"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--totp-uri-file", required=True)
    ap.add_argument("--warden", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--card", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--screenshots", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    a = ap.parse_args()
    os.makedirs(a.screenshots, exist_ok=True)
    shots = []

    def shot(driver, name):
        path = os.path.join(a.screenshots, name)
        driver.save_screenshot(path)
        shots.append(path)
        print("screenshot:", path, flush=True)

    def simulate(identity, check=True):
        r = subprocess.run(
            [a.warden, "ota", "simulate-card", "--server", a.server, "--identity", identity,
             "--key-file", a.key_file],
            capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise SystemExit("simulate-card failed: " + r.stdout + r.stderr)
        return r

    password = open(a.password_file).read().splitlines()[0]
    totp = pyotp.parse_uri(open(a.totp_uri_file).read().strip())

    opts = webdriver.ChromeOptions()
    opts.binary_location = a.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1300", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=a.chromedriver), options=opts)
    # The page re-renders its tables as events arrive: an element found a moment ago may be gone
    # when its text is read. Such a condition is tried again, not failed.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    try:
        # 1. Sign in.
        driver.get(a.url + "/")
        wait.until(lambda d: d.current_url.endswith("/signin"))
        driver.find_element(By.ID, "username").send_keys(a.user)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "code").send_keys(totp.now())
        shot(driver, "01-sign-in.png")
        driver.find_element(By.ID, "signin").click()
        wait.until(lambda d: d.find_element(By.ID, "conn").text == "live")
        assert driver.find_element(By.ID, "who").text == a.user
        # A marker that a reload would wipe: everything below happens without one.
        driver.execute_script("window.__noReload = 42;")
        shot(driver, "02-signed-in.png")

        # 2. A simulated card's session appears live.
        simulate(a.card)
        wait.until(lambda d: any(
            r.get_attribute("data-card") == a.card
            for r in d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")))
        wait.until(lambda d: any(
            "session_active" in li.text and a.card in li.text
            for li in d.find_elements(By.CSS_SELECTOR, "#event-list li")))
        shot(driver, "03-session-live.png")

        # 3. Push a script from the page: a template, checked, then queued.
        driver.find_element(By.ID, "push-cards").send_keys(a.card)
        Select(driver.find_element(By.ID, "push-template")).select_by_visible_text(
            "GET STATUS applications")
        assert driver.find_element(By.ID, "push-script").get_attribute("value") == "80F24002024F0000"
        driver.find_element(By.ID, "push-label").send_keys("inventory")
        driver.find_element(By.ID, "push-check").click()
        wait.until(lambda d: d.find_element(By.ID, "push-result").text.startswith("OK: would queue 1"))
        driver.find_element(By.ID, "push-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "push-result").text.startswith("Queued 1 command"))
        script = driver.find_element(By.CSS_SELECTOR, "#push-result li.queued").text
        wait.until(lambda d: d.find_element(By.ID, "stat-pending").text == "1")
        shot(driver, "04-pushed.png")

        # 4. The card connects; its result arrives, and the card's history shows each APDU.
        simulate(a.card)
        wait.until(lambda d: any(
            r.get_attribute("data-card") == a.card and "ok" in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr.script")))
        wait.until(lambda d: any(
            "9000" in r.text for r in d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr.apdu")))
        def open_card(d):
            # Found and clicked in one try: the table may be re-rendered in between.
            link = next((b for b in d.find_elements(By.CSS_SELECTOR, "#card-table .card-link")
                         if b.text == a.card), None)
            if link is None:
                return False
            link.click()
            return True
        wait.until(open_card)
        wait.until(lambda d: "80F24002024F0000" in d.find_element(By.ID, "history-body").text
                   and "9000" in d.find_element(By.ID, "history-body").text)
        shot(driver, "05-result.png")

        # 5. Markup from a scanner stays text: unknown identities (which also raise the PSK
        #    failure alarm) and a card identity with tags.
        for _ in range(3):
            simulate(XSS_ID, check=False)
        wait.until(lambda d: any(XSS_ID in li.text for li in d.find_elements(By.CSS_SELECTOR, "#event-list li")))
        wait.until(lambda d: "psk failure burst" in d.find_element(By.ID, "alarms").text)
        driver.find_element(By.ID, "card-search").send_keys("<b>")
        wait.until(lambda d: any("<b>" in b.text for b in d.find_elements(By.CSS_SELECTOR, "#card-table .card-link")))
        assert driver.execute_script("return window.__xss === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, "#event-list img, #card-table b, #alarms img")
        assert driver.execute_script("return window.__noReload") == 42, "the page was reloaded"
        driver.find_element(By.ID, "card-search").clear()
        driver.find_element(By.ID, "card-search").send_keys(" ")
        time.sleep(0.5)
        shot(driver, "06-alarm-and-escaping.png")
        print(json.dumps({"ok": True, "script": script, "screenshots": shots}))
    except (TimeoutException, AssertionError) as e:
        shot(driver, "failure.png")
        print("page text at failure:\n" + driver.find_element(By.TAG_NAME, "body").text, file=sys.stderr)
        for entry in driver.get_log("browser") if hasattr(driver, "get_log") else []:
            print("console:", entry, file=sys.stderr)
        raise SystemExit("dashboard browser test failed: %r" % (e,))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
