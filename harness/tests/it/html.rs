//! The HTML report in a real browser (headless Chromium): the page renders without script errors, its filters
//! change what is shown, a result opens with its transcript, and a hostile proxy's bytes (`<script>`, quotes,
//! invalid UTF-8, in its response and in its log) are shown as text and never run.
//!
//! Without Chromium the test says so and passes, unless `CONNECT_HARNESS_REQUIRE_CHROMIUM` is set (`.ci/run`
//! installs Debian's `chromium` and sets it). One screenshot is kept as a CI artefact:
//! `target/ci-artifacts/html-report.png`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{self, TempDir, TestProxy, bin};

/// What the hostile proxy puts in its 2xx and in its log: markup that would change the page if it ran.
const HOSTILE: &str = "<script>document.documentElement.setAttribute('data-pwned','script')</script>\
    \"'><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">";

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

/// Runs Chromium headless with `args`, killed after a deadline: (stdout, stderr). Its output goes to files in
/// `profile`'s parent, so a large DOM cannot fill a pipe nobody reads yet.
fn browse(chrome: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    let (out_path, err_path) = (profile.with_extension("stdout"), profile.with_extension("stderr"));
    let mut child = Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 90 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (read(&out_path), read(&err_path))
}

/// Lines of Chromium's log that report a script error or a console error of the page.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error") || l.contains("error")))
        .collect()
}

/// The rendered page at `fragment`, checked for script errors and for anything the hostile bytes could do.
fn dom(chrome: &Path, profile: &Path, page: &Path, fragment: &str) -> String {
    let url = format!("file://{}{fragment}", page.display());
    let (dom, stderr) = browse(chrome, profile, &["--dump-dom", &url]);
    // The page's own script marks the root element: rendered, or the errors it caught.
    let root = &dom[dom.find("<html").unwrap_or(0)..];
    let root = &root[..root.find('>').unwrap_or(root.len())];
    assert!(root.contains("data-rendered="), "the page did not render at {fragment}:\n{stderr}\n{dom:.2000}");
    assert!(!root.contains("data-js-errors"), "script errors at {fragment}:\n{stderr}");
    assert!(console_errors(&stderr).is_empty(), "console errors at {fragment}: {:?}", console_errors(&stderr));
    assert!(!root.contains("data-pwned"), "the proxy's bytes ran as script at {fragment}");
    assert!(!dom.contains("<img") && !dom.contains("<svg"), "the proxy's bytes became an element at {fragment}");
    dom
}

/// Scenario rows in the DOM: (id, shown).
fn rows(dom: &str) -> Vec<(String, bool)> {
    dom.split("<tr class=\"scenario\" data-id=\"")
        .skip(1)
        .map(|rest| {
            let end = rest.find('"').unwrap();
            let tag_end = rest.find('>').unwrap();
            (rest[..end].to_string(), !rest[..tag_end].contains("hidden"))
        })
        .collect()
}

/// A report with a result of every verdict, as a run would write it.
fn every_verdict() -> Value {
    let verdicts = ["pass", "fail", "warn", "observed", "inconclusive", "setup", "skip", "error"];
    let results: Vec<Value> = verdicts
        .iter()
        .map(|v| {
            json!({
                "id": format!("synthetic/{v}"), "title": format!("a {v} result"), "level": "must",
                "requirement": "A server MUST do the right thing.", "section": "RFC 9110 §9.3.6",
                "transport": "plain", "verdict": v, "reason": format!("step 2 (expect): why it is {v}"),
                "acceptable": ["step 2: status 2xx"], "steps": [], "origins": [], "duration_ms": 1, "started_ms": 0,
                "source": "synthetic.toml:1",
                "transcript": {"entries": [{"t_ms": 0, "dir": "sent", "len": 4, "data": format!("{v}\\r\\n")}],
                    "truncated": false, "bytes_sent": 4, "bytes_received": 0},
            })
        })
        .collect();
    json!({"schema_version": 3, "metadata": {"target": "synthetic", "transports": ["plain"],
        "start_time": "2026-11-30T00:00:00Z", "duration_ms": 8, "harness_version": "test"},
        "summary": {}, "findings": [], "results": results})
}

/// A proxy that answers every CONNECT with a 200 whose reason phrase and fields are markup and invalid UTF-8,
/// and logs the same to `log`.
async fn hostile_proxy(log: PathBuf) -> TestProxy {
    TestProxy::start(move |mut s: TcpStream| {
        let log = log.clone();
        async move {
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let mut line = format!("CONNECT seen {HOSTILE} ").into_bytes();
            line.extend_from_slice(b"\xff\xfe\n");
            let _ = std::fs::OpenOptions::new().append(true).open(&log).and_then(|mut f| f.write_all(&line));
            let mut answer = format!("HTTP/1.1 200 {HOSTILE}\r\nX-Evil: {HOSTILE}").into_bytes();
            answer.extend_from_slice(b"\xff\xfe\r\nContent-Length: 5\r\n\r\n<svg>");
            let _ = s.write_all(&answer).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium() {
    let Some(chrome) = chromium() else {
        if std::env::var_os("CONNECT_HARNESS_REQUIRE_CHROMIUM").is_some() {
            panic!("CONNECT_HARNESS_REQUIRE_CHROMIUM is set but no chromium is on PATH");
        }
        eprintln!("the_page_in_chromium: no chromium on PATH; not checked (install Debian's chromium)");
        return;
    };
    let dir = TempDir::new("html");
    let log = dir.file("proxy.log", "");
    let proxy = hostile_proxy(log.clone()).await;
    let hostile_report = dir.path("hostile.json");
    let html = dir.path("run.html");
    let (code, out) = support::run(&[
        "--proxy",
        &proxy.url(),
        "--only",
        "rfc9110/9.3.6/*",
        "--timeout",
        "0.5",
        "--jobs",
        "1",
        "--proxy-log",
        log.to_str().unwrap(),
        "--report",
        &hostile_report,
        "--html",
        &html,
    ])
    .await;
    assert_eq!(code, harness::exit::FAILURES, "{out}");
    let synthetic = dir.file("every-verdict.json", &every_verdict().to_string());
    let page = dir.path("page.html");
    let (code, _, err) = bin(&["report", "html", synthetic.to_str().unwrap(), &hostile_report, "-o", &page]);
    assert_eq!(code, 0, "{err}");
    let page = PathBuf::from(page);
    let profile = dir.path("profile");
    let profile = Path::new(&profile);

    // Everything shown, no script error, every verdict in the summary.
    let all = dom(&chrome, profile, &page, "");
    let every = rows(&all);
    assert!(every.iter().all(|(_, shown)| *shown), "{every:?}");
    for v in ["pass", "fail", "warn", "observed", "inconclusive", "setup", "skip", "error"] {
        assert!(every.iter().any(|(id, _)| id == &format!("synthetic/{v}")), "{v} missing");
    }
    // The filters: by verdict, by level, by text.
    let failed = rows(&dom(&chrome, profile, &page, "#v=fail"));
    let shown: Vec<&String> = failed.iter().filter(|(_, s)| *s).map(|(id, _)| id).collect();
    assert!(shown.contains(&&"synthetic/fail".to_string()), "{shown:?}");
    assert!(!shown.contains(&&"synthetic/pass".to_string()), "{shown:?}");
    assert!(shown.len() < every.len(), "the verdict filter hid nothing");
    let text = rows(&dom(&chrome, profile, &page, "#q=a%20warn%20result"));
    let shown: Vec<&String> = text.iter().filter(|(_, s)| *s).map(|(id, _)| id).collect();
    assert_eq!(shown, [&"synthetic/warn".to_string()]);

    // A result opens with its transcript; the hostile bytes are text in it.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&hostile_report).unwrap()).unwrap();
    let opened = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transcript"].is_object() && r["verdict"] == "fail" && !r["proxy_log"].is_null())
        .expect("a failed result with a transcript and a proxy log");
    let id = opened["id"].as_str().unwrap();
    let fragment = format!("#open=1~{id}");
    let detail = dom(&chrome, profile, &page, &fragment);
    let panel = &detail[detail.find("<section id=\"detail\"").expect("the detail panel")..];
    assert!(!panel[..panel.find('>').unwrap()].contains("hidden"), "the result did not open");
    assert!(panel.contains("Transcript") && panel.contains("Proxy log"), "{panel:.3000}");
    assert!(panel.contains("&lt;script&gt;document.documentElement"), "the hostile markup is not shown as text");
    assert!(panel.contains("onerror=\"document"), "the quotes are not shown as text");

    // `run --html` wrote a page of its own run that renders too.
    let own = dom(&chrome, profile, Path::new(&html), "#v=fail");
    assert!(rows(&own).iter().any(|(_, shown)| *shown));

    // The screenshot CI keeps.
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../ci-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("html-report.png");
    let url = format!("file://{}{fragment}", page.display());
    browse(&chrome, profile, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,1000", &url]);
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "no screenshot at {shot:?}");
}

/// The committed reports/interop.html is the page of the committed reports (as reports/README.md is their
/// matrix), and it renders in Chromium without a script error. `UPDATE_REPORTS_HTML=1` rewrites it.
#[test]
fn committed_interop_page_is_fresh_and_renders() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../reports"));
    let reports = harness::matrix::reports_in(dir).unwrap();
    if reports.is_empty() {
        return;
    }
    let inputs = harness::report::html::labelled(
        reports
            .iter()
            .map(|p| (p.as_path(), serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()))
            .collect(),
    );
    let page = harness::report::html::render(&inputs).unwrap();
    let committed_path = dir.join("interop.html");
    if std::env::var_os("UPDATE_REPORTS_HTML").is_some() {
        std::fs::write(&committed_path, &page).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == page,
        "reports/interop.html is stale relative to reports/*.json and this harness: run \
         `connect-harness report html reports/*-*-*.json -o reports/interop.html` (interop/run-matrix does), or \
         UPDATE_REPORTS_HTML=1 cargo test -p harness --test it html"
    );
    let Some(chrome) = chromium() else {
        assert!(std::env::var_os("CONNECT_HARNESS_REQUIRE_CHROMIUM").is_none(), "no chromium on PATH");
        return;
    };
    let tmp = TempDir::new("interop-html");
    let profile = tmp.path("profile");
    let all = rows(&dom(&chrome, Path::new(&profile), &committed_path, ""));
    assert!(all.len() > 400, "{} scenario rows", all.len());
    let failed = rows(&dom(&chrome, Path::new(&profile), &committed_path, "#v=fail&t=tls"));
    let shown = failed.iter().filter(|(_, s)| *s).count();
    assert!(shown > 0 && shown < all.len(), "{shown} of {} rows shown with #v=fail&t=tls", all.len());
    // A result whose step was tolerated (its result is an object, not a string) opens too. Every committed
    // report ran one transport, so its index is its column.
    let Some((column, id)) = inputs.iter().enumerate().find_map(|(i, input)| {
        input.report["results"].as_array()?.iter().find_map(|r| {
            let tolerated = r["steps"].as_array()?.iter().any(|st| st["result"].is_object());
            tolerated.then(|| (i, r["id"].as_str().unwrap().to_string()))
        })
    }) else {
        panic!("no committed result with a tolerated step");
    };
    let opened = dom(&chrome, Path::new(&profile), &committed_path, &format!("#open={column}~{id}"));
    let panel = &opened[opened.find("<section id=\"detail\"").expect("the detail panel")..];
    assert!(!panel[..panel.find('>').unwrap()].contains("hidden"), "{id} did not open");
    assert!(panel.contains("tolerated"), "{panel:.2000}");
}
