//! `certinext bench` on a small run, as the built binary: every certificate Ready, every
//! Secret verified, and the last line a JSON summary with the figures. Correctness only; the
//! figures themselves are not judged here.

use serde_json::Value;

#[test]
fn a_small_bench_issues_and_verifies_every_certificate_and_ends_with_json() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_certinext"))
        .args(["--log-level", "warn", "bench"])
        .args(["--certificates", "20", "--sequential", "3", "--cas", "2"])
        .args(["--raw-seconds", "0.5", "--unrelated-secrets", "5"])
        .arg("--renewal-storm")
        .output()
        .expect("certinext runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "certinext bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("the last line is JSON");

    assert_eq!(summary["all_ready"], true, "{summary}");
    assert_eq!(summary["all_verified"], true, "{summary}");
    // Sequential and burst Secrets, then the burst's again after the storm.
    assert_eq!(summary["secrets_verified"], 3 + 20 + 20, "{summary}");
    assert_eq!(summary["burst"]["ready"], 20);
    assert_eq!(summary["sequential"]["count"], 3);
    assert_eq!(summary["renewal_storm"]["renewed"], 20);
    assert_eq!(summary["unrelated_secrets"], 5);
    assert_eq!(summary["key"], "ECDSA-P256");
    for figure in [
        &summary["raw"]["per_second"],
        &summary["burst"]["certificates_per_second"],
        &summary["burst"]["ratio_to_raw"],
        &summary["burst"]["latency_ms"]["p99"],
        &summary["sequential"]["p50"],
        &summary["renewal_storm"]["seconds"],
        &summary["memory"]["peak_mib"],
        &summary["memory"]["operator_peak_mib"],
        &summary["memory"]["operator_after_burst_mib"],
        &summary["cpu_seconds"]["operator"],
        &summary["cpu_seconds"]["devcluster"],
        &summary["operator_cpu_share"],
        &summary["cpu_ms_per_certificate"]["all"],
        &summary["cpu_ms_per_certificate"]["operator"],
    ] {
        assert!(
            figure.as_f64().is_some_and(|f| f > 0.0),
            "a positive figure expected, got {figure} in {summary}"
        );
    }
    let requests = summary["api_requests_per_certificate"]
        .as_object()
        .expect("requests by verb");
    for verb in ["create", "get", "patch"] {
        assert!(
            requests
                .get(verb)
                .and_then(Value::as_f64)
                .is_some_and(|n| n > 0.0),
            "the operator's {verb} requests per certificate: {requests:?}"
        );
    }
    // Each Certificate of the burst reconciled at least once, and its Order too.
    let reconciles = summary["reconciles_per_certificate"]
        .as_object()
        .expect("reconciles by kind");
    for kind in ["Certificate", "Order"] {
        assert!(
            reconciles
                .get(kind)
                .and_then(Value::as_f64)
                .is_some_and(|n| n >= 1.0),
            "the operator's {kind} reconciles per certificate: {reconciles:?}"
        );
    }
    // An Order is reconciled when it is created; its own status write comes back as an echo.
    let orders = reconciles.get("Order").and_then(Value::as_f64);
    assert!(
        orders.is_some_and(|n| n < 1.5),
        "Order reconciles per certificate: {reconciles:?}"
    );
    // A certificate's private key is written once, into its Secret: the Order carries it
    // sealed meanwhile, so no other Secret is written for it, nor deleted after.
    let by_resource = summary["api_requests_per_certificate_by_resource"]
        .as_object()
        .expect("requests by resource");
    let per_certificate = |what: &str| by_resource.get(what).and_then(Value::as_f64);
    assert!(
        per_certificate("patch secrets").is_some_and(|n| n < 1.5),
        "Secret writes per certificate: {by_resource:?}"
    );
    assert!(
        per_certificate("delete secrets").is_none_or(|n| n < 0.5),
        "Secret deletes per certificate: {by_resource:?}"
    );
}
