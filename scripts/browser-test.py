"""The browser half of scripts/browser-test (run by it, in its venv).

  browser-test.py BASE EMAIL PASSWORD OUTDIR

Drives headless Chromium (Debian's chromium + chromedriver) through /my/tokens:
sign-in redirect, the service without a token, a token that fails validation, a
good token, its hint. On failure: a message, a screenshot and the page's HTML in
OUTDIR, exit 1.
"""
import os
import shutil
import sys
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

TOKEN = "nt_browser_test_0001"
BAD = "bad"


class StepFailed(Exception):
    pass


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    base, email, password, outdir = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], sys.argv[4]

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server",
              "--no-first-run", "--window-size=1280,1000", "--password-store=basic"):
        opts.add_argument(a)
    if os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver",
                      log_output=os.path.join(outdir, "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=opts, service=service)
    except WebDriverException as e:
        print(f"browser-test: FAIL: cannot start headless Chromium: {e.msg or e}", file=sys.stderr)
        return 1
    driver.set_page_load_timeout(30)
    step = "start"
    try:
        version = driver.capabilities.get("browserVersion", "?")
        print(f"browser-test: headless Chromium {version}")

        def path():
            return urllib.parse.urlsplit(driver.current_url).path

        def query():
            return urllib.parse.parse_qs(urllib.parse.urlsplit(driver.current_url).query)

        def text():
            return driver.find_element(By.TAG_NAME, "body").text

        def wait_for(what, cond, timeout=15):
            try:
                WebDriverWait(driver, timeout).until(lambda d: cond())
            except TimeoutException:
                raise StepFailed(f"timed out waiting for {what}")

        def expect(cond, msg):
            if not cond:
                raise StepFailed(msg)

        def token_form():
            inputs = driver.find_elements(By.CSS_SELECTOR, "input[type=password][name=token]")
            expect(len(inputs) == 1, f"expected one password-type token input, found {len(inputs)}")
            return inputs[0]

        def submit(field, value):
            field.clear()
            field.send_keys(value)
            field.find_element(By.XPATH, "./ancestor::form//button[@type='submit']").click()

        step = "1. /my/tokens without a session redirects to the sign-in form"
        driver.get(base + "/my/tokens")
        wait_for("the sign-in form", lambda: driver.find_elements(By.NAME, "password"))
        expect(path() != "/my/tokens", f"still on {driver.current_url}; expected a redirect to sign-in")
        expect(driver.find_elements(By.NAME, "email"), "the sign-in form has no `email` field")
        print(f"browser-test: ok  {step} ({path()})")

        step = "2. sign in"
        driver.find_element(By.NAME, "email").send_keys(email)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for("/my/tokens after sign-in",
                 lambda: path() == "/my/tokens" or driver.find_elements(By.CSS_SELECTOR, ".error"))
        if path() != "/my/tokens":
            raise StepFailed("sign-in refused: " + driver.find_element(By.CSS_SELECTOR, ".error").text)
        body = text()
        expect("Your tokens" in body, "the page after sign-in is not 'Your tokens'")
        expect(email in body, f"the page does not say who is signed in ({email})")
        expect("Notes" in body, "the Notes service is not listed")
        expect("not set" in body, "Notes is not shown as 'not set'")
        expect("Paste your Notes token." in body, "the service's instructions are not shown")
        print(f"browser-test: ok  {step} -> Notes is 'not set'")

        step = "3. a token that fails validation is refused"
        submit(token_form(), BAD)
        wait_for("the error after a bad token", lambda: "error" in query())
        errors = driver.find_elements(By.CSS_SELECTOR, ".error")
        expect(errors and errors[0].text.strip(), "no error message is shown for an invalid token")
        msg = errors[0].text.strip()
        expect("Notes" in msg, f"the error does not name the service: {msg!r}")
        expect("not set" in text(), "after the refused token, Notes is no longer 'not set'")
        print(f"browser-test: ok  {step}: {msg!r}")

        step = "4. a good token is saved and only its hint is shown"
        submit(token_form(), TOKEN)
        wait_for("the saved notice", lambda: "saved" in query())
        body = text()
        expect("Saved" in body, "the page does not say Saved")
        expect("\u20260001" in body, "the hint '\u20260001' is not shown")
        expect("not set" not in body, "Notes is still shown as 'not set'")
        expect(TOKEN not in driver.page_source, "the whole token appears in the page")
        expect(TOKEN not in driver.current_url, "the whole token appears in the URL")
        expect(token_form().get_attribute("value") == "", "the token input is not empty after saving")
        print(f"browser-test: ok  {step} -> 'set (ends in \u20260001)'")

        step = "5. a reload still shows the hint only"
        driver.get(base + "/my/tokens")
        wait_for("/my/tokens", lambda: path() == "/my/tokens" and "Your tokens" in text())
        expect("\u20260001" in text(), "after a reload the hint is gone")
        expect(TOKEN not in driver.page_source, "after a reload the whole token appears in the page")
        print(f"browser-test: ok  {step}")
        return 0
    except (StepFailed, WebDriverException) as e:
        reason = str(e) if isinstance(e, StepFailed) else f"WebDriver error: {e.msg or e}"
        shot = os.path.join(outdir, "failure.png")
        try:
            driver.save_screenshot(shot)
            with open(os.path.join(outdir, "failure.html"), "w") as f:
                f.write(driver.page_source)
        except WebDriverException:
            shot = "(no screenshot)"
        print(f"browser-test: FAIL at step {step!r}: {reason}\n"
              f"  url: {driver.current_url}\n  screenshot: {shot}", file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
