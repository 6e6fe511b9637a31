"""The dashboard in a real headless Chromium (Debian's), driven with Playwright."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.test_store import storing_pipeline
from tests.support.pipeline import Pipeline
from tests.support.procs import Procs, free_port, get, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe runs it: no sandbox as root, no network chatter beyond loopback.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # DNS rebinding, as a hostile page does it: its name resolves to this machine.
    "--host-resolver-rules=MAP evil.example 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: scripts/test installs it"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


def test_dashboard_shows_the_system_and_changes_it(
    procs: Procs, page: Page, artifacts: Path
) -> None:
    p = Pipeline(procs, {"a1": 0.5, "a2": 0.5})
    p.start({"e1": "1-5"}, 50)
    wait_for(lambda: get(f"{p.url}/emitters"), 10, "e1 registered")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(p.url + "/")

    analyzers = page.locator("#analyzers tbody tr")
    expect(analyzers).to_have_count(2)
    expect(page.locator('#analyzers tr[data-id="a1"] td').nth(1)).to_have_text("up")
    expect(page.locator("#logs li").first).to_be_visible(timeout=10_000)
    expect(page.locator("#summary")).to_contain_text("msg/s")

    # Pause the emitter from the page: the running emitter stops.
    page.locator('#emitters tr[data-id="e1"] button', has_text="pause").click()
    wait_for(lambda: get(f"{p.url}/emitter/e1/metrics")["paused"], 5, "e1 paused")
    expect(page.locator('#emitters tr[data-id="e1"] td').nth(4)).to_have_text(
        "paused", timeout=5000
    )
    page.locator('#emitters tr[data-id="e1"] button', has_text="resume").click()
    wait_for(lambda: not get(f"{p.url}/emitter/e1/metrics")["paused"], 5, "e1 resumed")

    # Add an analyzer through the form, with its format and a secret header: the
    # distributor routes to it, and the page never holds the header's value.
    a3 = p.start_analyzer("a3")
    page.fill('#add-form input[name="id"]', "a3")
    page.fill('#add-form input[name="url"]', f"{a3.url}/ingest")
    page.fill('#add-form input[name="weight"]', "1")
    page.select_option('#add-form select[name="format"]', "ndjson")
    page.select_option('#add-form select[name="compression"]', "gzip")
    page.fill('#add-form textarea[name="headers"]', "Authorization: Bearer dash-s3cret")
    page.click('#add-form button[type="submit"]')
    expect(analyzers).to_have_count(3)
    wait_for(lambda: p.stats("a3")["messages"] > 0, 10, "a3 receiving")
    a3_format = page.locator('#analyzers tr[data-id="a3"] td').nth(3)
    expect(a3_format).to_have_text("ndjson · gzip")
    assert "Authorization: ***" in (a3_format.get_attribute("title") or "")
    assert "dash-s3cret" not in page.content()
    row = next(a for a in get(f"{p.url}/registry") if a["id"] == "a3")
    assert (row["format"], row["headers"]) == ("ndjson", {"Authorization": "***"})

    assert errors == []  # nothing went wrong in the page so far

    # An error from the API is shown, not swallowed.
    page.fill('#add-form input[name="id"]', "a3")
    page.fill('#add-form input[name="url"]', f"{a3.url}/ingest")
    page.click('#add-form button[type="submit"]')
    expect(page.locator("#errors")).to_contain_text("already exists")
    expect(page.locator("#errors")).to_be_visible()

    page.wait_for_timeout(1500)  # let the chart draw a few points for the screenshot
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert [e for e in errors if "409" not in e] == []  # the browser logs the refused add itself


def test_dashboard_asks_for_the_admin_token(procs: Procs, page: Page, artifacts: Path) -> None:
    p = Pipeline(procs, {"a1": 1}, token="s3cret")
    p.start({}, 1, "--admin-token", "s3cret")
    page.goto(p.url + "/")
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#errors")).to_contain_text("unauthorized")
    page.fill("#token", "s3cret")
    page.click('#token-form button[type="submit"]')
    expect(page.locator("#token-form")).to_be_hidden()
    expect(page.locator('#analyzers tr[data-id="a1"]')).to_be_visible()
    page.screenshot(path=str(artifacts / "dashboard-token.png"))


def test_with_the_read_token_the_dashboard_changes_nothing(
    procs: Procs, page: Page, tmp_path: Path, artifacts: Path
) -> None:
    # Both tokens from files: neither is on a command line.
    (tmp_path / "admin").write_text("adm1n-s3cret\n")
    (tmp_path / "read").write_text("r3ad-only\n")
    p = Pipeline(procs, {"a1": 1}, token="adm1n-s3cret")
    p.start({"e1": "1"}, 5, "--admin-token-file", str(tmp_path / "admin"),
            "--read-token-file", str(tmp_path / "read"))  # fmt: skip
    page.goto(p.url + "/")
    page.fill("#token", "r3ad-only")
    page.click('#token-form button[type="submit"]')
    row = page.locator('#analyzers tr[data-id="a1"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(page.locator("#read-only")).to_be_visible()
    assert all(not b.is_visible() for b in page.locator("#analyzers button").all())
    weight = row.locator("input").first
    expect(weight).to_have_value("1")  # shown, not editable
    assert weight.evaluate("e => getComputedStyle(e).pointerEvents") == "none"
    expect(page.locator("#add-form")).to_be_hidden()
    page.screenshot(path=str(artifacts / "dashboard-read-only.png"))
    # And the API says the same to the read token.
    answer = page.evaluate(
        """async () => {
          const r = await fetch("/analyzer/a1/disable",
                                {method: "POST", headers: {Authorization: "Bearer r3ad-only"}});
          return [r.status, (await r.json()).code];
        }"""
    )
    assert answer == [403, "read_only"]
    assert [a["state"] for a in p.registry()] == ["enabled"]


HOSTILE_PAGE = """<!doctype html>
<form id="f" method="post" action="{url}/analyzer/a1/disable"><input name="x" value="1"></form>
<script>
  fetch("{url}/emitter/e1/pause", {{method: "POST", mode: "no-cors", body: "x"}});
  document.getElementById("f").submit();
</script>"""


def test_a_page_from_another_site_cannot_drive_the_admin_api(
    procs: Procs, page: Page, tmp_path: Path
) -> None:
    """As `logdist up` runs it (no admin token): a page the operator opens elsewhere posts a
    plain form and a no-cors fetch to the distributor. Both are refused; nothing changes."""
    p = Pipeline(procs, {"a1": 1})
    p.start({"e1": "1"}, 20)
    wait_for(lambda: get(f"{p.url}/emitters"), 10, "e1 registered")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(HOSTILE_PAGE.format(url=p.url))
    port = free_port()
    procs.spawn(
        "hostile-site",
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(port),
            "-d",
            str(site),
        ],
        re.compile(r"(Serving HTTP)"),
    )
    page.goto(f"http://127.0.0.1:{port}/index.html")
    # The form's answer replaces the page: the distributor's JSON refusal.
    expect(page.locator("body")).to_contain_text("cross_origin", timeout=10_000)
    assert "is not this daemon's own" in page.locator("body").inner_text()
    assert [a["state"] for a in p.registry()] == ["enabled"]
    assert get(f"{p.url}/emitter/e1/metrics")["paused"] is False
    # The dashboard itself, on the distributor's own origin, still changes things.
    page.goto(p.url + "/")
    page.locator('#emitters tr[data-id="e1"] button', has_text="pause").click()
    wait_for(lambda: get(f"{p.url}/emitter/e1/metrics")["paused"], 5, "e1 paused from the page")


def test_a_rebound_name_reaches_nothing(procs: Procs, page: Page) -> None:
    """A page on evil.example, whose name now resolves to 127.0.0.1, is same-origin with
    the distributor's port as far as the browser knows: its Host (and Origin) name
    evil.example, and the distributor refuses it (421) before any route runs."""
    p = Pipeline(procs, {"a1": 1})
    p.start({"e1": "1"}, 20)
    wait_for(lambda: get(f"{p.url}/emitters"), 10, "e1 registered")
    port = p.url.rsplit(":", 1)[1]
    answer = page.goto(f"http://evil.example:{port}/")
    assert answer is not None and answer.status == 421
    expect(page.locator("body")).to_contain_text("host_not_allowed")
    results = page.evaluate(
        """async () => {
          const out = [];
          for (const [method, path] of [["POST", "/analyzer/a1/disable"],
                                        ["GET", "/registry"], ["GET", "/logs/search?q=x"]]) {
            const r = await fetch(path, {method});
            out.push([r.status, (await r.json()).code]);
          }
          return out;
        }"""
    )
    assert results == [[421, "host_not_allowed"]] * 3
    assert [a["state"] for a in p.registry()] == ["enabled"]
    # By its own name the dashboard works as before.
    assert page.goto(f"http://localhost:{port}/") is not None
    expect(page.locator('#analyzers tr[data-id="a1"]')).to_be_visible(timeout=10_000)


def test_the_dashboard_pages_and_finds_among_twenty_thousand_emitters(
    procs: Procs, page: Page
) -> None:
    d = procs.start("distributor", "distributor", "serve", "--port", "0")
    # 400 packets/s in all: this is about the views, not throughput.
    fleets = procs.fleets(10000, 0.02, d.url, "red", "blue")
    wait_for(
        lambda: get(f"{d.url}/status")["emitter_summary"]["total"] == 20_000,
        90,
        "20,000 emitters registered",
        0.5,
    )
    page.goto(d.url + "/")
    expect(page.locator("#emitter-summary")).to_contain_text("20000", timeout=10_000)
    expect(page.locator("#emitter-page")).to_have_text("1–25 of 20000 registered")
    expect(page.locator("#emitters tbody tr")).to_have_count(25)
    page.click("#emitter-next")
    expect(page.locator("#emitter-page")).to_have_text("26–50 of 20000 registered")
    page.fill("#emitter-q", "blue-1234")
    row = page.locator('#emitters tr[data-id="blue-1234"]')
    expect(row).to_be_visible(timeout=5000)
    expect(page.locator("#emitters tbody tr")).to_have_count(1)
    row.locator("button", has_text="pause").click()
    wait_for(
        lambda: get(f"{fleets['blue'].url}/e/blue-1234/metrics")["paused"], 5, "paused by the page"
    )
    expect(row.locator("td").nth(4)).to_have_text("paused", timeout=5000)
    assert get(f"{fleets['blue'].url}/e/blue-1235/metrics")["paused"] is False


def test_the_search_view_finds_stored_messages_and_opens_their_context(
    procs: Procs, page: Page, tmp_path: Path
) -> None:
    d = storing_pipeline(procs, tmp_path / "s")
    levels = ["INFO", "WARN", "ERROR"]
    lines = []
    for i in range(150):
        now = time.gmtime(time.time() - 600 + i)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", now)
        message = {"ts": stamp, "level": levels[i % 3], "service": "shop", "message": f"cart {i}"}
        if i == 40:
            message["message"] = "payment gateway timeout"
        packet = {"packetId": f"p{i:03d}", "emitter": "web", "messages": [message]}
        lines.append(json.dumps(packet))
    req = urllib.request.Request(
        f"{d.url}/log-packets",
        data="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert urllib.request.urlopen(req, timeout=10).status == 202
    wait_for(lambda: get(f"{d.url}/logs/histogram")["total"] == 150, 20, "all stored")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(d.url + "/#search")
    expect(page.locator("#live-view")).to_be_hidden()

    # The last hour: 150 messages, newest first, a page of 100 then "load more".
    expect(page.locator("#search-summary")).to_contain_text("150 stored messages in range")
    expect(page.locator("#results tr.hit")).to_have_count(100)
    expect(page.locator("#results tr.hit").first).to_contain_text("cart 149")
    expect(page.locator("#histogram-legend")).to_contain_text("ERROR 50")
    page.locator("#load-more").click()
    expect(page.locator("#results tr.hit")).to_have_count(150)
    expect(page.locator("#results tr.hit").last).to_contain_text("cart 0")
    expect(page.locator("#load-more")).to_be_hidden()

    # A word and a level chip: the one message.
    page.fill("#search-q", "gateway")
    page.locator('#levels input[value="WARN"]').check()
    page.locator('#search-form button[type="submit"]').click()
    expect(page.locator("#results tr.hit")).to_have_count(1)
    expect(page.locator("#search-summary")).to_contain_text("1 stored messages in range")
    # Its row opens all its fields and the same emitter's messages around it.
    page.locator("#results tr.hit").first.click()
    expect(page.locator("#results tr.detail pre")).to_contain_text('"packetId": "p040"')
    context = page.locator("#results tr.detail .context li")
    expect(context).to_have_count(21)
    expect(page.locator("#results tr.detail .context li.anchor")).to_contain_text("gateway")

    # Errors only.
    page.fill("#search-q", "")
    page.locator('#levels input[value="WARN"]').uncheck()
    page.locator('#levels input[value="ERROR"]').check()
    page.locator('#search-form button[type="submit"]').click()
    expect(page.locator("#results tr.hit")).to_have_count(50)
    # A click on a histogram bar zooms to its time range.
    page.locator("#histogram").click(position={"x": 5, "y": 60})
    expect(page.locator("#search-range")).to_have_value("custom")
    # The Live tab brings the live view back.
    page.locator("#tab-live").click()
    expect(page.locator("#search-view")).to_be_hidden()
    expect(page.locator("#live-view")).to_be_visible()
    assert errors == []


def test_the_dashboard_shows_the_cluster_and_a_change_made_there_reaches_every_replica(
    procs: Procs, page: Page, tmp_path: Path, artifacts: Path
) -> None:
    from tests.support.cluster import Pool, one_server, replica

    servers = one_server(procs, tmp_path / "js")
    pool = Pool(procs, {"a1": 1.0, "a2": 1.0})
    d1 = replica(procs, "d1", servers, pool.urls)
    d2 = replica(procs, "d2", servers, pool.urls)
    page.goto(d1.url + "/")
    expect(page.locator("#cluster")).to_be_visible(timeout=10_000)
    expect(page.locator("#cluster-summary")).to_contain_text("served by d1")
    expect(page.locator("#replica-table tbody tr")).to_have_count(2, timeout=10_000)
    expect(page.locator('#replica-table tr[data-id="d2"] td').nth(2)).to_have_text("up")
    # A weight set on d1's page is written to the control bucket; d2 applies it too.
    row = page.locator('#analyzers tr[data-id="a2"]')
    row.locator("input.weight").fill("4")
    row.locator("button", has_text="set").click()
    wait_for(
        lambda: {a["id"]: a["weight"] for a in get(f"{d2.url}/registry")}["a2"] == 4,
        10,
        "d2 to apply the weight set on d1's page",
    )
    page.screenshot(path=str(artifacts / "dashboard-cluster.png"), full_page=True)
    d2.kill()
    expect(page.locator('#replica-table tr[data-id="d2"] td').nth(2)).to_have_text(
        "gone", timeout=15_000
    )


def test_the_emitter_table_sorts_by_refused_and_shows_shares(procs: Procs, page: Page) -> None:
    d = procs.start("distributor", "distributor", "serve", "--port", "0")
    procs.fleets(30, 2, d.url, "red")
    wait_for(lambda: get(f"{d.url}/status")["emitter_summary"]["total"] == 30, 30, "30 registered")
    limited = procs.run("ctl", "limit", "red-1*", "0.01", "--burst", "1", "--url", d.url)
    assert limited.returncode == 0, limited.stderr
    assert "red-1*: 0.01 messages/s, burst 1" in limited.stdout

    def most_refused() -> list[dict[str, object]] | None:
        rows = get(f"{d.url}/emitters?sort=throttled&limit=11")["emitters"]
        return rows if all(r["throttled"] for r in rows) else None

    rows = wait_for(most_refused, 30, "red-1 and red-10..19 refused")
    assert {r["id"] for r in rows} == {"red-1", *(f"red-1{i}" for i in range(10))}
    page.goto(d.url + "/")
    expect(page.locator("#emitter-page")).to_have_text("1–25 of 30 registered", timeout=10_000)
    page.select_option("#emitter-sort", "throttled")
    first = page.locator("#emitters tbody tr").first
    expect(first).to_have_attribute("data-id", re.compile(r"red-1\d?$"), timeout=5000)
    refused = int(first.locator("td").nth(6).inner_text())
    assert refused > 0
    expect(page.locator("#emitters tbody tr").nth(11).locator("td").nth(6)).to_have_text("0")
    assert re.fullmatch(r"\d+\.\d%", first.locator("td").nth(5).inner_text())
