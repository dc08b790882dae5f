//! The processes behind a [`crate::harness::Browser`]: finds `chromium` and `chromedriver`,
//! starts chromedriver on a free port with Chromium's flags and viewport, and kills both on
//! drop. Missing programs skip the test loudly, or fail it with `CI=true`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;

use fantoccini::wd::Capabilities;
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{Browser, PHONE_WIDTH, STEP_TIMEOUT, Viewport};

/// What chromedriver is asked for: headless Chromium with a fresh `profile`, the window of
/// `viewport`, and the time limits of [`STEP_TIMEOUT`].
pub fn capabilities(chromium: &Path, profile: &Path, viewport: Viewport) -> Capabilities {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    // Device metrics make the page's viewport exactly this size (a headless window's size
    // includes a browser frame that is not drawn); `mobile` brings the phone's layout rules.
    let metrics = match viewport {
        Viewport::Phone => {
            json!({ "width": PHONE_WIDTH, "height": 844, "pixelRatio": 2.0, "mobile": true, "touch": true })
        }
        Viewport::Desktop => {
            json!({ "width": 1280, "height": 800, "pixelRatio": 1.0, "mobile": false, "touch": false })
        }
    };
    let options = json!({
        "binary": chromium,
        "args": args,
        "mobileEmulation": { "deviceMetrics": metrics },
    });
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": options,
        "timeouts": { "pageLoad": STEP_TIMEOUT.as_millis(), "script": STEP_TIMEOUT.as_millis() },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    capabilities
}

/// chromedriver in its own process group; Chromium, started by it, is in the same group.
pub struct Driver {
    child: Child,
    /// Where chromedriver answers WebDriver commands.
    pub url: String,
    dir: PathBuf,
}

impl Driver {
    /// Starts chromedriver with its log and its (and Chromium's) scratch files in `dir`.
    pub async fn start(program: &Path, dir: &Path) -> Driver {
        let mut child = Command::new(program)
            .arg("--port=0")
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            // Chromium's scratch directories then go with `dir`, also after a kill.
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // `--port=0` lets the system pick a free port; chromedriver says which one.
        let port = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) =
                    line.strip_prefix("ChromeDriver was started successfully on port ")
                {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{} did not say its port", program.display()));
        // Keep reading, so chromedriver never blocks writing to a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            dir: dir.to_owned(),
        }
    }

    /// chromedriver's log, which also tells why Chromium did not start.
    pub fn log(&self) -> PathBuf {
        self.dir.join("chromedriver.log")
    }
}

impl Drop for Driver {
    /// Kills chromedriver and every Chromium process it started, also when a test panicked
    /// before closing its session.
    fn drop(&mut self) {
        let pid = self
            .child
            .id()
            .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
        if let Some(pid) = pid {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

/// The file `$env` names if set, else the first of `names` on `PATH` or in `/usr/bin`.
pub fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|path| path.is_file())
}

/// Skips the test (`None`) with a loud line, or fails it when `CI=true`.
pub fn missing(what: &str) -> Option<Browser> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "browser tests are required when CI=true, but {what}; `make browser-deps` installs Chromium"
        );
    }
    // Once per run, and past the test harness's capture of `eprintln!`, which would hide it.
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: browser tests — {what}. The operator pages were NOT tested in a \
             browser. Run `make browser-deps` (Debian: apt-get install chromium \
             chromium-driver); CI=true makes this a failure. ***\n"
        );
    });
    None
}
