"""The console through real processes: `flakehouse up` (TLS and tokens on) serves the page, a real
Chromium (Debian's, driven by Playwright) uses it, and every answer it shows is checked against the
CLI's for the same SQL. Planted data: a test that flakes (fails, then passes, on the same commit),
a test with a long history, and failures whose messages differ only in numbers and ids (one
signature). Every page is checked with axe-core and photographed for the README, and a test fails
when the page asks anything of another origin."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from benchmarks.storage_queries import QUERIES as STORAGE_BATTERY
from tests import credentials
from tests.localcluster import RunningCluster
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tools" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "images"
# Chromium's own background traffic is off: this machine's network is closed, and a test must see
# only what the page asks for.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DATASET = "ci"
SECRET = "secret"
FLAKY = ("pkg.api.ClientTest", "test_retries_on_reset")
STEADY = ("pkg.api.ClientTest", "test_parses_headers")
SLOW = ("pkg.db.PoolTest", "test_checkout_timeout")
COMMITS = [f"c{i:02d}abcdef" for i in range(6)]
# The slow test fails on these commits' only run, and passes on the others: pass-to-fail flips,
# and three messages that differ only in numbers, an address and a path.
SLOW_FAILS_ON = (1, 3, 5)
RUNS = len(COMMITS) + 2  # two commits ran twice


def _case(classname: str, name: str, seconds: float, failure: str | None = None) -> str:
    body = f'<failure message="{failure}">trace</failure>' if failure else ""
    return f'<testcase classname="{classname}" name="{name}" time="{seconds}">{body}</testcase>'


def _report(when: datetime, cases: list[str]) -> str:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f'<testsuite name="unit" timestamp="{stamp}">{"".join(cases)}</testsuite>'


def plant(cluster: RunningCluster, directory: Path) -> None:
    """Six commits over the last six days, a run each, and on two commits a second attempt: the
    flaky test fails then passes on the same commit; the slow test fails with messages that
    differ only in numbers, addresses and paths; a second dataset the reader cannot read."""
    now = datetime.now(UTC).replace(microsecond=0)
    for i, commit in enumerate(COMMITS):
        when = now - timedelta(days=6 - i, hours=1)
        attempts = 2 if i in (2, 4) else 1
        for attempt in range(attempts):
            flaky_fails = attempts == 2 and attempt == 0
            cases = [
                _case(*STEADY, 0.01 * (i + 1)),
                _case(*FLAKY, 0.2, "connection reset by peer" if flaky_fails else None),
                _case(
                    *SLOW,
                    1.5 + i,
                    f"Timeout after {3000 + i * 17} ms waiting for 10.0.0.{i}:5432 "
                    f"in /tmp/run-{i}/pool.py"
                    if i in SLOW_FAILS_ON
                    else None,
                ),
            ]
            path = directory / f"{commit}-{attempt}.xml"
            path.write_text(_report(when + timedelta(minutes=10 * attempt), cases))
            cluster.cli(
                "ingest", "--dataset", DATASET, str(path),
                "--label", "branch=main", "--label", f"commit={commit}",
                "--label", f"job=unit-{i}-{attempt}",
            )  # fmt: skip
    other = directory / "secret.xml"
    other.write_text(_report(now, [_case("s.Secret", "test_hidden", 0.1)]))
    cluster.cli("ingest", "--dataset", SECRET, str(other))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    directory = tmp_path_factory.mktemp("console")
    running = RunningCluster(directory / "cluster", storage_nodes=2, partitions=2)
    try:
        running.wait_ready()
        plant(running, directory)
        total = 3 * RUNS
        eventually(
            lambda: running.query(f"SELECT count(*) FROM {DATASET}")["rows"] == [[total]],
            "the planted runs queryable",
        )
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def console_url(cluster: RunningCluster) -> str:
    url = cluster.info()["console_url"]
    assert url.startswith("http://127.0.0.1:")
    return str(url).rstrip("/")


@pytest.fixture(scope="module")
def reader_token(cluster: RunningCluster) -> str:
    argv = ["tokens", "create", "--name", "ci-reader", "--grant", f"read:{DATASET}"]
    argv += ["--cluster", str(cluster.cluster_path), "--format", "json"]
    token = str(json.loads(cluster.cli(*argv).stdout)["token"])
    eventually(
        lambda: (
            httpx.get(_api(cluster, "/api/v1/datasets"), headers=_bearer(token)).status_code == 200
        ),
        "the new token known to the services",
        15,
    )
    return token


def _api(cluster: RunningCluster, path: str) -> str:
    return str(cluster.info()["console_url"]).rstrip("/") + path


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


class Origins:
    """Every request the page makes; a test's teardown fails when one left the console's origin."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.errors: list[str] = []

    def request(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)


@pytest.fixture
def context(browser: Browser, console_url: str) -> Iterator[tuple[BrowserContext, Origins]]:
    origins = Origins(console_url)
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 1000}, accept_downloads=True, timezone_id="UTC"
    )
    ctx.on("request", lambda request: origins.request(request.url))
    ctx.on("weberror", lambda error: origins.errors.append(str(error.error)))
    try:
        yield ctx, origins
    finally:
        ctx.close()
    assert origins.foreign == [], f"the page asked another origin: {origins.foreign}"
    assert origins.errors == [], f"errors in the page: {origins.errors}"


def signed_in(
    context: tuple[BrowserContext, Origins], console_url: str, token: str, path: str = "/"
) -> Page:
    ctx, _ = context
    page = ctx.new_page()
    page.goto(console_url + path)
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("token-input")).to_be_hidden()
    return page


def table_rows(page: Page) -> list[list[str]]:
    table = page.get_by_test_id("result-table")
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    return [
        [cell.replace(",", "").replace("\u202f", "").strip() for cell in row]
        for row in (rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count()))
    ]


def cli_cells(cluster: RunningCluster, sql: str, *options: str) -> list[list[str]]:
    """The CLI's answer as its table prints each value (output._cell). Its JSON keeps a float a
    float (`2.0`), so the values say which are."""
    return [[_cell(value) for value in row] for row in cluster.query_json(sql, *options)["rows"]]


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def axe_violations(page: Page) -> list[str]:
    # Evaluated, not added as a <script>: the page's CSP refuses inline scripts (rightly), and
    # the test must not loosen it.
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run()")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def photograph(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


# --- the builder, permalinks, CSV -------------------------------------------------------------


def test_a_query_built_with_the_builder_answers_what_the_cli_answers(
    cluster: RunningCluster, console_url: str, context: Any
) -> None:
    page = signed_in(context, console_url, credentials.admin_token())
    page.get_by_test_id("dataset-select").select_option(DATASET)
    page.get_by_test_id("range-preset").select_option("7d")
    page.get_by_test_id("agg-add").click()
    page.get_by_test_id("agg-fn").last.select_option("p95")
    page.get_by_test_id("agg-field").last.select_option("duration")
    page.get_by_test_id("group-add").click()
    page.get_by_test_id("group-field").last.select_option("status")
    page.get_by_test_id("where-add").click()
    page.get_by_test_id("where-field").last.select_option("branch")
    page.get_by_test_id("where-op").last.select_option("=")
    page.get_by_test_id("where-value").last.fill("main")
    sql = page.get_by_test_id("sql-editor").input_value()
    assert "p95(duration)" in sql and "GROUP BY" in sql and "branch" in sql, sql
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("query-stats")).to_be_visible()
    assert table_rows(page) == cli_cells(cluster, sql)
    expect(page.get_by_test_id("partial-banner")).to_be_hidden()
    assert "flakehouse query" in page.get_by_test_id("cli-command").inner_text()
    assert axe_violations(page) == []
    photograph(page, "builder")


def test_a_permalink_reloads_and_runs_its_query(
    cluster: RunningCluster, console_url: str, context: Any
) -> None:
    sql = (
        f"SELECT classname, name, count(*) AS runs FROM {DATASET} "
        "GROUP BY classname, name ORDER BY runs DESC, name"
    )
    page = signed_in(context, console_url, credentials.admin_token())
    page.goto(f"{console_url}/?sql={quote(sql)}")
    expect(page.get_by_test_id("sql-editor")).to_have_value(sql)
    assert table_rows(page) == cli_cells(cluster, sql)
    # The page's own permalink, opened afresh, runs the same query.
    page.reload()
    assert table_rows(page) == cli_cells(cluster, sql)


def test_csv_export_holds_the_answer(
    cluster: RunningCluster, console_url: str, context: Any, tmp_path: Path
) -> None:
    # NULLs (the message of a run that passed), booleans and floats: the file holds what the
    # CLI's CSV holds, not the table's rounded text.
    sql = f"SELECT name, status, duration, flaky, message FROM {DATASET} ORDER BY timestamp, name"
    page = signed_in(context, console_url, credentials.admin_token())
    page.goto(f"{console_url}/?sql={quote(sql)}")
    expect(page.get_by_test_id("result-table")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_test_id("csv-export").click()
    saved = tmp_path / "answer.csv"
    download.value.save_as(saved)
    cli = cluster.cli("query", "--format", "csv", "--cluster", str(cluster.cluster_path), sql)
    assert list(csv.reader(io.StringIO(saved.read_text()))) == list(
        csv.reader(io.StringIO(cli.stdout))
    )


def test_a_located_sql_error_is_shown(console_url: str, context: Any) -> None:
    page = signed_in(context, console_url, credentials.admin_token())
    page.goto(
        f"{console_url}/?sql={quote(f'SELECT status, count(*) FROM {DATASET} GROUP BY name')}"
    )
    error = page.get_by_test_id("error-message")
    expect(error).to_contain_text("line 1, column 8")


# --- sign-in and grants ----------------------------------------------------------------------


def test_sign_in_keeps_the_token_out_of_the_page_and_grants_hold(
    console_url: str, context: Any, reader_token: str
) -> None:
    ctx, _ = context
    page = ctx.new_page()
    page.goto(console_url + "/")
    page.get_by_test_id("token-input").fill("fh_not-a-token")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_text("not valid")).to_be_visible()
    assert axe_violations(page) == []
    photograph(page, "sign-in")
    page.get_by_test_id("token-input").fill(reader_token)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("dataset-select")).to_be_visible()
    # The cookie is http-only: no script of the page reads it, nor finds the token anywhere.
    cookies = {c["name"]: c for c in ctx.cookies()}
    assert cookies["flakehouse_session"]["httpOnly"] is True
    assert cookies["flakehouse_session"]["sameSite"] == "Strict"
    stored = page.evaluate(
        "() => document.cookie + JSON.stringify({...localStorage, ...sessionStorage})"
    )
    assert reader_token not in stored and reader_token not in page.url
    options = page.get_by_test_id("dataset-select").locator("option").all_inner_texts()
    assert DATASET in options and SECRET not in options
    page.goto(f"{console_url}/?sql={quote(f'SELECT count(*) FROM {SECRET}')}")
    expect(page.get_by_test_id("error-message")).to_contain_text(
        f"does not grant read on dataset '{SECRET}'"
    )


# --- the answer when replicas are down -----------------------------------------------------------


def test_the_partial_banner_names_the_missing_partitions(
    cluster: RunningCluster, console_url: str, context: Any
) -> None:
    """Both storage processes frozen (SIGSTOP: calls hang, as with a hung node) for less than the
    controller's node timeout: the query service answers at its deadline without them."""
    page = signed_in(context, console_url, credentials.admin_token())
    pids = [node["pid"] for node in cluster.info()["storage"]]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        page.goto(f"{console_url}/?sql={quote(f'SELECT count(*) FROM {DATASET}')}")
        banner = page.get_by_test_id("partial-banner")
        expect(banner).to_be_visible(timeout=30_000)
        for partition in range(2):
            expect(banner).to_contain_text(f"{DATASET}/{partition}")
        photograph(page, "partial")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    eventually(
        lambda: not cluster.query(f"SELECT count(*) FROM {DATASET}")["partial"], "complete again"
    )


# --- the pages for the questions people come with ----------------------------------------------


def test_the_flaky_page_finds_the_planted_flaky_test(
    cluster: RunningCluster, console_url: str, context: Any
) -> None:
    page = signed_in(context, console_url, credentials.admin_token(), f"/flaky?dataset={DATASET}")
    page.get_by_test_id("flaky-window").select_option("7d")
    page.get_by_test_id("flaky-min-runs").fill("2")
    page.get_by_test_id("flaky-run").click()
    rows = table_rows(page)
    argv = ["flaky", "--dataset", DATASET, "--since", "7d", "--format", "json"]
    cli = json.loads(cluster.cli(*argv, "--cluster", str(cluster.cluster_path)).stdout)
    assert [row[:2] for row in rows] == [row[:2] for row in cli["rows"]]
    # The flaky test first (it failed and passed on the same commit); the slow one is listed for
    # its pass-to-fail flips.
    assert rows[0][:2] == list(FLAKY) and rows[1][:2] == list(SLOW), rows
    assert axe_violations(page) == []
    photograph(page, "flaky")


def test_the_history_page_shows_every_run_of_a_test(
    cluster: RunningCluster, console_url: str, context: Any
) -> None:
    path = f"/history?dataset={DATASET}&classname={quote(SLOW[0])}&name={quote(SLOW[1])}"
    page = signed_in(context, console_url, credentials.admin_token(), path)
    rows = table_rows(page)
    assert len(rows) == RUNS
    statuses = sorted(cell for row in rows for cell in row if cell in ("passed", "failed"))
    failed = len(SLOW_FAILS_ON)
    assert statuses == ["failed"] * failed + ["passed"] * (RUNS - failed)
    expect(page.get_by_text("Timeout after").first).to_be_visible()
    assert axe_violations(page) == []
    photograph(page, "history")


def test_the_signatures_page_groups_failures_that_differ_only_in_numbers(
    console_url: str, context: Any
) -> None:
    page = signed_in(
        context, console_url, credentials.admin_token(), f"/signatures?dataset={DATASET}"
    )
    table = page.get_by_test_id("result-table")
    expect(table).to_contain_text("Timeout after")
    rows = table_rows(page)
    timeouts = [row for row in rows if any("Timeout after" in cell for cell in row)]
    assert len(timeouts) == 1, rows  # three messages, one signature
    assert str(len(SLOW_FAILS_ON)) in timeouts[0]
    assert axe_violations(page) == []
    photograph(page, "signatures")


# --- the JSON API --------------------------------------------------------------------------------

# The benchmarks' query battery over the planted dataset, and the shapes the pages send.
BATTERY = [q.sql.replace("FROM bench", f"FROM {DATASET}") for q in STORAGE_BATTERY] + [
    f"SELECT count(*) FROM {DATASET}",
    f"SELECT status, count(*) AS n FROM {DATASET} GROUP BY status ORDER BY status",
    f"SELECT name, p50(duration), p95(duration), max(duration) FROM {DATASET} GROUP BY name ORDER BY name",  # noqa: E501
    f"SELECT count(DISTINCT commit) AS commits, avg(duration) FROM {DATASET} WHERE branch = 'main'",
    f"SELECT time_bucket(timestamp, INTERVAL '1 day') AS day, count(*) FROM {DATASET} GROUP BY day ORDER BY day",  # noqa: E501
    f"SELECT timestamp, name, status, message FROM {DATASET} WHERE status = 'failed' ORDER BY timestamp, name",  # noqa: E501
]


def test_the_json_api_answers_what_the_cli_answers(cluster: RunningCluster) -> None:
    token = credentials.admin_token()
    for sql, zone in itertools.product(BATTERY, ("", "Europe/Paris")):
        params = {"sql": sql, **({"time_zone": zone} if zone else {})}
        answer = httpx.get(_api(cluster, "/api/v1/query"), params=params, headers=_bearer(token))
        options = ["--tz", zone] if zone else []
        cli = cluster.cli(
            "query", "--format", "json", "--allow-partial", *options, sql, check=False
        )
        if cli.returncode != 0:  # refused: the same message, with its HTTP status
            assert answer.status_code == 400, f"{sql}: {answer.text}"
            assert answer.json()["error"]["message"] in cli.stderr, sql
            continue
        assert answer.status_code == 200, f"{sql}: {answer.text}"
        got, expected = answer.json(), json.loads(cli.stdout)
        assert set(got) == set(expected)
        for key in ("columns", "rows", "partial", "missing_partitions", "truncated"):
            assert got[key] == expected[key], f"{sql} ({zone or 'UTC'}): {key}"


def test_the_json_api_lists_and_describes_only_what_the_token_reads(
    cluster: RunningCluster, reader_token: str
) -> None:
    listing = httpx.get(_api(cluster, "/api/v1/datasets"), headers=_bearer(reader_token)).json()
    assert [d["name"] for d in listing["datasets"]] == [DATASET]
    described = httpx.get(
        _api(cluster, f"/api/v1/datasets/{DATASET}"), headers=_bearer(reader_token)
    )
    fields = {f["name"]: f["type"] for f in described.json()["fields"]}
    assert fields["duration"] == "float" and fields["commit"] == "string"
    refused = httpx.get(_api(cluster, f"/api/v1/datasets/{SECRET}"), headers=_bearer(reader_token))
    assert refused.status_code == 403
    assert httpx.get(_api(cluster, "/api/v1/datasets")).status_code == 401


def test_the_console_reports_metrics_and_readiness(cluster: RunningCluster) -> None:
    port = urlsplit(cluster.info()["console_url"]).port
    assert port is not None
    metrics = f"http://127.0.0.1:{port + 100}"
    assert httpx.get(metrics + "/readyz").status_code == 200
    assert "flakehouse_console_requests_total" in httpx.get(metrics + "/metrics").text


def test_a_report_uploaded_through_the_console_reads_back_at_once(cluster: RunningCluster) -> None:
    """Through ingest with the caller's token; the answer's offsets make the next query wait for
    the report (read-your-writes), as the CLI's do."""
    headers = {**_bearer(credentials.admin_token()), "Content-Type": "application/xml"}
    report = _report(datetime.now(UTC), [_case("up.Load", "test_one", 0.1)])
    answer = httpx.post(
        _api(cluster, "/api/v1/datasets/uploaded/uploads"),
        params=[("filename", "one.xml"), ("label", "branch=dev")],
        content=report.encode(),
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    written = answer.json()
    assert (written["events"], written["uploads"][0]["dataset_created"]) == (1, True)
    query = {
        "sql": "SELECT name, branch FROM uploaded",
        "after": {"uploaded": written["uploads"][0]["offsets"]},
    }
    read = httpx.post(
        _api(cluster, "/api/v1/query"), json=query, headers=_bearer(credentials.admin_token())
    )
    assert read.json()["rows"] == [["test_one", "dev"]]


def test_reports_uploaded_from_the_page_are_written_and_a_bad_one_is_refused(
    cluster: RunningCluster, console_url: str, context: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.xml"
    good.write_text(_report(datetime.now(UTC), [_case("web.Upload", "test_page", 0.3)]))
    bad = tmp_path / "bad.xml"
    bad.write_text("<testsuite><testcase")
    page = signed_in(context, console_url, credentials.admin_token())
    page.get_by_test_id("upload-files").set_input_files([str(good), str(bad)])
    page.get_by_test_id("upload-dataset").fill("browser")
    page.get_by_test_id("upload-labels").fill("branch=web\ncommit=c0ffee")
    page.get_by_test_id("upload-run").click()
    expect(page.get_by_test_id("upload-status")).to_contain_text("1 of 2 uploaded", timeout=20_000)
    outcomes = page.get_by_test_id("upload-results").locator("li").all_inner_texts()
    assert outcomes[0] == "good.xml: 1 events (passed 1)"
    assert outcomes[1].startswith("bad.xml: ") and "bad.xml" in outcomes[1][9:], outcomes
    expect(
        page.get_by_test_id("dataset-select").locator("option", has_text="browser")
    ).to_have_count(1)
    written = eventually(
        lambda: cluster.query("SELECT name, branch, commit FROM browser")["rows"], "the upload"
    )
    assert written == [["test_page", "web", "c0ffee"]]
