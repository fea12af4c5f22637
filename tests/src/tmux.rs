//! A program on a real terminal: a tmux session on a server of its own (its own socket), so
//! a test types keys and reads the screen as a person would. RAII: dropping it kills the
//! server and everything running in it.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A detached tmux session running one shell command.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` (run by `sh -c`) in a `width` x `height` terminal. After the command
    /// ends, the shell prints `exited <status>` and whether the terminal is back in cooked
    /// mode (`stty: icanon echo`), then waits, so the test can read both.
    ///
    /// # Panics
    ///
    /// When tmux cannot start.
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let socket = std::env::temp_dir().join(format!("enetstat-tmux-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let script = format!(
            "{command}; echo \"exited $?\"; \
             echo \"stty: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | tr '\\n' ' ')\"; \
             sleep 600"
        );
        let tmux = Tmux { socket };
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "top", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .args(["sh", "-c", &script])
            .env("TERM", "xterm-256color")
            .status()
            .expect("cannot run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn output(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("cannot run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen, one string per line.
    pub fn screen(&self) -> Vec<String> {
        self.output(&["capture-pane", "-p", "-t", "top"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The screen with its attributes as escape sequences (colours, bold, reverse).
    pub fn screen_with_escapes(&self) -> String {
        self.output(&["capture-pane", "-p", "-e", "-t", "top"])
    }

    /// Resizes the terminal, as a person resizing the window does.
    pub fn resize(&self, width: u16, height: u16) {
        self.output(&[
            "resize-window",
            "-t",
            "top",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    /// Types keys, as tmux names them (`Tab`, `Enter`, `Escape`, `q`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.output(&args);
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        self.output(&["send-keys", "-t", "top", "-l", text]);
    }

    /// A tmux format of the pane, e.g. `#{alternate_on}`, `#{cursor_flag}`, `#{pane_pid}`.
    pub fn format(&self, format: &str) -> String {
        self.output(&["display-message", "-p", "-t", "top", format])
            .trim()
            .to_owned()
    }

    /// Waits until `done` holds for the screen; returns that screen, or panics with the last
    /// one after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not show {what} within {timeout:?}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`Tmux::wait_for`] on the screen with its attributes as escape sequences, one string
    /// per line.
    pub fn wait_for_escaped(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen: Vec<String> = self
                .screen_with_escapes()
                .lines()
                .map(str::to_owned)
                .collect();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not show {what} within {timeout:?}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the process the pane's shell runs (the program under test), once it runs.
    pub fn child_pid(&self) -> u32 {
        let shell = self.format("#{pane_pid}");
        let path = format!("/proc/{shell}/task/{shell}/children");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().expect("a pid");
            }
            assert!(Instant::now() < deadline, "no child of the pane's shell");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
        let _ = std::fs::remove_file(&self.socket);
    }
}
