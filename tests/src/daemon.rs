//! A running `enetstat daemon` on a socket in its own temporary directory, and a blocking
//! NDJSON client for it. RAII: dropping the daemon kills it and removes its directory.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use serde_json::Value;

use crate::{Signal, Tracer, tracer::Finished};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory under /tmp, world-traversable (so a test can connect as another user), removed
/// on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("enetstat-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create a temporary directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `enetstat daemon --socket <dir>/enetstat.sock <args>`, once it serves.
pub struct Daemon {
    // Dropped first: the process, then its directory.
    tracer: Option<Tracer>,
    pub socket: PathBuf,
    pub dir: TempDir,
}

impl Daemon {
    pub fn start(tag: &str, args: &[&str]) -> Daemon {
        let dir = TempDir::new(tag);
        let socket = dir.path.join("enetstat.sock");
        Daemon::start_at(dir, socket, args)
    }

    /// Starts one on a given socket (to start again after a kill).
    pub fn start_at(dir: TempDir, socket: PathBuf, args: &[&str]) -> Daemon {
        Daemon::start_at_with_env(dir, socket, args, &[])
    }

    /// [`Daemon::start`] with extra environment variables (`ENETSTAT_PROBE_MODE`).
    pub fn start_with_env(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new(tag);
        let socket = dir.path.join("enetstat.sock");
        Daemon::start_at_with_env(dir, socket, args, env)
    }

    fn start_at_with_env(
        dir: TempDir,
        socket: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let socket_arg = socket.to_str().expect("UTF-8 path").to_owned();
        let mut all = vec!["daemon", "--socket", socket_arg.as_str()];
        all.extend_from_slice(args);
        let tracer = Tracer::start_with_env(&all, env);
        Daemon {
            tracer: Some(tracer),
            socket,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.tracer.as_ref().map_or(0, Tracer::pid)
    }

    /// `kill -9`: no clean-up runs. Gives the directory and socket path back.
    pub fn kill9(mut self) -> (TempDir, PathBuf) {
        let tracer = self.tracer.take().expect("running");
        let pid = libc::pid_t::try_from(tracer.pid()).expect("pid fits pid_t");
        // SAFETY: kill() on our own child, not reaped yet (the Tracer reaps it on drop).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        drop(tracer);
        (self.dir, self.socket)
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(&self.socket)
    }

    /// Sends `signal`, waits for the exit, and gives the directory back.
    pub fn stop(mut self, signal: Signal) -> (Finished, TempDir, PathBuf) {
        let finished = self.tracer.take().expect("running").stop(signal);
        (finished, self.dir, self.socket)
    }
}

/// A blocking connection to the daemon.
pub struct Conn {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

impl Conn {
    pub fn connect(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        Conn {
            reader: BufReader::new(stream),
            writer,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .expect("cannot write a request");
    }

    pub fn send(&mut self, request: &Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
    }

    /// The next line, without its newline; `None` at the end.
    pub fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => Some(s.trim_end_matches('\n').to_owned()),
            Err(e) => panic!("cannot read from the daemon: {e}"),
        }
    }

    pub fn json(&mut self) -> Value {
        let line = self.line().expect("the daemon closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// One request, one reply.
    pub fn request(&mut self, request: &Value) -> Value {
        self.send(request);
        self.json()
    }

    /// Everything until the daemon closes the connection.
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}
