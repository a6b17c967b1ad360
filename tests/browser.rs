//! The web app and the console in a real browser: `node --test e2e/tests/` (Debian chromium
//! driven by playwright-core) against a real `dure up`. Without chromium,
//! node or `e2e/node_modules` this test says what is missing and passes,
//! except under `CI=true`, where a missing browser fails the run
//! (`bash .ci/run` installs them). `DURE_SCREENSHOTS=DIR` keeps the
//! suite's screenshots there.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::system::*;

const ADMIN_PASSWORD: &str = "browser admin password";

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")))
        .filter(|p| p.exists())
}

fn missing(e2e: &Path) -> Option<String> {
    if chromium().is_none() {
        return Some("chromium is not installed (Debian package chromium)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !e2e.join("node_modules/playwright-core").is_dir() {
        return Some("e2e/node_modules is missing (run `npm ci` in e2e/)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_works_in_a_real_browser() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    if let Some(what) = missing(&e2e) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the browser suite cannot run under CI: {what}"
        );
        eprintln!("skipping the browser suite: {what}; `bash .ci/run` installs it");
        return;
    }
    let system = System::start_with_env(&[], &[("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let posting = system.pids("posting")[0];
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&e2e)
        .env("DURE_URL", &system.gateway)
        .env("DURE_CONSOLE", &system.console)
        .env("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DURE_POSTING_PID", posting.to_string());
    if let Some(chromium) = chromium() {
        command.env("CHROMIUM", chromium);
    }
    // Where the suite saves its screenshots (the README's is one), if asked.
    if let Some(dir) = std::env::var_os("DURE_SCREENSHOTS") {
        command.env("DURE_SCREENSHOTS", dir);
    }
    let output = command.output().expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "the browser suite failed:\n{report}"
    );
    drop(system);
}
