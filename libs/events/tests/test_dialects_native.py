"""Reports from Go, C and C++ test tools (go-junit-report, gotestsum, CTest, Bazel, googletest)
and the exact events schema v1 makes of them."""

from __future__ import annotations

from libs.events.tests.dialect_reports import UPLOAD, by_name, load, props, statuses, us


def test_go_junit_report() -> None:
    events = load("go_junit_report.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "skipped": 1, "error": 2}
    assert {e["hostname"] for e in events} == {"ci-runner-12"}
    cart = [e for e in events if e["suite"] == "github.com/acme/shop/cart"]
    assert [e["name"] for e in cart] == [
        "TestAdd",
        "TestAdd/negative_quantity",
        "TestTotal",
        "TestCheckoutIntegration",
        "TestDiscount",
    ]
    assert all(e["timestamp"] == us(2024, 2, 2, 10, 20, 30) for e in cart)
    assert all(
        props(e)
        == {"prop.go.version": "go1.22.0 linux/amd64", "prop.coverage.statements.pct": "81.30"}
        for e in cart
    )
    total = cart[2]
    assert (total["status"], total["message"], total["duration"]) == ("failed", "Failed", 0.31)
    assert total["stack"] == (
        "cart_test.go:57: Total() = 41.99, want 42.00\n"
        "    cart_test.go:58: rounding mode: half-even"
    )
    assert (cart[3]["status"], cart[3]["message"]) == ("skipped", "Skipped")
    assert cart[4]["stdout"] == "cart_test.go:95: applying 10% discount"
    cases = by_name(events)
    panic = cases["Failure"]
    assert (panic["status"], panic["message"]) == ("error", "Runtime error")
    assert panic["classname"] == "github.com/acme/shop/payment"
    assert str(panic["stack"]).startswith("panic: runtime error: invalid memory address")
    assert panic["timestamp"] == us(2024, 2, 2, 10, 20, 31)
    build = cases["[build failed]"]
    assert (build["status"], build["message"]) == ("error", "Build error")
    assert build["stack"] == "search/index.go:14:2: undefined: bleve.NewIndexMapping"
    assert props(build) == {}


def test_gotestsum() -> None:
    events = load("gotestsum.xml")
    assert statuses(events) == {"passed": 4, "failed": 2, "skipped": 1}
    # RFC 3339 with the runner's offset.
    assert {e["timestamp"] for e in events} == {us(2024, 10, 21, 9, 16, 20)}
    assert all(e["prop.go.version"] == "go1.23.2 darwin/arm64" for e in events)
    watch = [e for e in events if e["name"] == "TestWatch"]
    # --rerun-fails writes the failed run and the passing rerun as two cases of the same name;
    # schema v1 keeps both as they are (retries/flaky come only from Surefire-style elements).
    assert [(e["status"], e["retries"], e["flaky"]) for e in watch] == [
        ("failed", 0, False),
        ("passed", 0, False),
    ]
    assert watch[0]["message"] == "Failed" and "type" not in watch[0]  # type=""
    assert watch[0]["stack"] == (
        "=== RUN   TestWatch\n    store_test.go:88: timed out after 1.5s waiting for event\n"
        "--- FAIL: TestWatch (1.50s)"
    )
    assert (watch[0]["duration"], watch[1]["duration"]) == (1.5, 1.21)
    skipped = next(e for e in events if e["status"] == "skipped")
    # The skip message is the test's whole output, kept verbatim.
    assert skipped["message"] == (
        "=== RUN   TestSnapshot/empty\n    store_test.go:120: not supported on darwin\n"
        "--- SKIP: TestSnapshot/empty (0.00s)\n"
    )
    main = next(e for e in events if e["name"] == "TestMain")
    assert main["suite"] == "gotest.tools/example/cmd/storectl"
    assert "classname" not in main  # classname=""
    assert str(main["stack"]).startswith("flag provided but not defined: -test.paniconexit0")


def test_ctest() -> None:
    events = load("ctest.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 2}
    assert {e["suite"] for e in events} == {"Linux-c++"}
    assert {e["hostname"] for e in events} == {"buildbot-04"}
    # CTest writes local time without a zone: taken as UTC.
    assert {e["timestamp"] for e in events} == {us(2024, 4, 2, 17, 45, 9)}
    cases = by_name(events)
    unit = cases["unit_geometry"]
    assert unit["classname"] == "unit_geometry" and unit["duration"] == 0.0213457
    assert unit["prop.cmake_labels"] == "unit;fast"
    assert str(unit["stdout"]).startswith("[==========] Running 12 tests")
    assert "stdout" not in cases["unit_mesh"]  # <system-out/>
    timeout = cases["integration_solver"]
    assert (timeout["status"], timeout["message"], timeout["duration"]) == (
        "failed",
        "Timeout",
        10.0003,
    )
    assert timeout["prop.cmake_labels"] == "integration"
    assert cases["integration_io"]["message"] == "Exception: SegFault"
    notrun = cases["gpu_kernels"]
    assert (notrun["status"], notrun["message"]) == ("skipped", "Required Files Missing")
    # status="disabled" and nothing else: skipped, without a message.
    disabled = cases["legacy_fortran"]
    assert disabled["status"] == "skipped" and "message" not in disabled


def test_bazel() -> None:
    (event,) = load("bazel.xml")
    target = "services/api/integration_test_shard_2/3"
    assert event == {
        "timestamp": UPLOAD,
        "suite": target,
        "name": target,
        "status": "error",
        "duration": 37.0,
        "message": "exited with error code 1",
        "signature": "exited with error code <n>",
        "retries": 0,
        "flaky": False,
    }


def test_bazel_gtest() -> None:
    events = load("bazel_gtest.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 2}
    cases = {(e["classname"], e["name"]): e for e in events}
    push = cases[("RingBufferTest", "PushPop")]
    # googletest stamps every case (local time, no zone).
    assert push["timestamp"] == us(2024, 6, 3, 11, 22, 33, 105000)
    assert (push["file"], push["line"], push["suite"]) == (
        "core/ring_buffer_test.cc",
        14,
        "RingBufferTest",
    )
    wrap = cases[("RingBufferTest", "Wraparound")]
    assert wrap["status"] == "failed" and "type" not in wrap  # type=""
    assert wrap["message"] == (
        "core/ring_buffer_test.cc:35\nExpected equality of these values:\n  rb.size()\n"
        "    Which is: 7\n  8\n"
    )
    assert str(wrap["stack"]).endswith("Which is: 7\n  8")
    assert cases[("RingBufferTest", "DISABLED_Concurrent")]["status"] == "skipped"  # notrun
    assert cases[("RingBufferTest", "Capacity")]["prop.capacity"] == "1024"
    skipped = cases[("Codec/VarintTest", "RoundTrip/0")]
    assert skipped["status"] == "skipped"
    assert skipped["message"] == "core/varint_test.cc:22\nneeds 64-bit platform\n"
    # A failure followed by GTEST_SKIP: the failure decides.
    both = cases[("Codec/VarintTest", "RoundTrip/1")]
    assert both["status"] == "failed"
    assert str(both["message"]).startswith("core/varint_test.cc:25\nValue of: Decode")
