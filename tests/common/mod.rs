//! Test helpers that make protocol tests read like the protocol: start the
//! real `mq-actix` binary on an ephemeral port, then `send` lines and
//! `expect` replies over real TCP.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub mod redis;

/// How long a test waits for a line it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test watches for a line it expects *not* to come.
pub const QUIET: Duration = Duration::from_millis(200);

/// The real broker binary, listening on `127.0.0.1:0`; killed when dropped.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    /// The `--metrics` address, when the server was given one.
    metrics: Option<SocketAddr>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// `args` follow the port: e.g. `&["2"]` for a cache of 2, or flags.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_logging(args, Stdio::inherit())
    }

    /// Like [`Server::start_with`], with the server's stderr going to `stderr`.
    pub fn start_logging(args: &[&str], stderr: Stdio) -> Server {
        let (child, first) = spawn_listening(&["0"], args, stderr);
        let addr = first
            .split_whitespace()
            .find_map(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let metrics = first
            .split_once("metrics on http://")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|addr| addr.parse().ok());
        Server {
            child,
            addr,
            metrics,
        }
    }

    /// Started with `--tls-port 0` (and the other `args`): the server and
    /// its TLS address, read from the listening line (`... and with TLS on
    /// ADDR ...`, or `listening with TLS on ADDR` with `--no-plain`, where
    /// [`Server::addr`] is the TLS address too).
    pub fn start_tls(args: &[&str], stderr: Stdio) -> (Server, SocketAddr) {
        let (child, first) = spawn_listening(&["0", "--tls-port", "0"], args, stderr);
        let mut addrs = first.split_whitespace().filter_map(|w| w.parse().ok());
        let addr = addrs
            .next()
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let tls = first
            .split("TLS on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("no TLS address in {first:?}"));
        let server = Server {
            child,
            addr,
            metrics: None,
        };
        (server, tls)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `--metrics` serves, as the server's listening line says.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .unwrap_or_else(|| panic!("the server was started without --metrics"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `"TERM"`) to the server process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the server to exit; its status.
    pub async fn exit_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mq-actix did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the server wrote to stderr, once it has exited (started
    /// with [`Server::start_logging`] and `Stdio::piped()`).
    pub fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut text).expect("read stderr");
        }
        text
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// The broker started with `first` then `args`, and the line it prints
/// once it listens.
fn spawn_listening(first: &[&str], args: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq-actix"))
        .args(first)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start mq-actix");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    (child, line)
}

/// One `kB` figure of `/proc/PID/status`.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc status"))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One protocol client.
pub struct Client {
    reader: AsyncBufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to `addr` from the local address `from` (any port): on
    /// Linux every 127.x.y.z address is this machine, so a test can be
    /// several clients' addresses at once.
    pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(from, 0)).expect("bind");
        let stream = socket.connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        Client {
            reader: AsyncBufReader::new(read),
            writer: write,
        }
    }

    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        Client {
            reader: AsyncBufReader::new(read),
            writer: write,
        }
    }

    /// Sends `line` followed by `\n`.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next line from the server, which must end in `\r\n`.
    pub async fn recv_line(&mut self) -> String {
        let mut line = Vec::new();
        let n = timeout(WAIT, self.reader.read_until(b'\n', &mut line))
            .await
            .expect("timed out waiting for a line")
            .expect("read");
        assert!(n > 0, "connection closed while a line was expected");
        let line = String::from_utf8(line).expect("server sent UTF-8");
        line.strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("line without \\r\\n: {line:?}"))
            .to_owned()
    }

    /// The next line as JSON, or `None` if none comes within `limit` (or
    /// the connection ends).
    pub async fn try_recv_within(&mut self, limit: Duration) -> Option<Value> {
        let mut line = Vec::new();
        match timeout(limit, self.reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
        Some(serde_json::from_slice(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
    }

    pub async fn recv(&mut self) -> Value {
        let line = self.recv_line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    pub async fn expect(&mut self, want: Value) {
        assert_eq!(self.recv().await, want);
    }

    pub async fn expect_ok(&mut self) {
        self.expect(json!({"success": true})).await;
    }

    pub async fn expect_error(&mut self, reason: &str) {
        self.expect(json!({"success": false, "reason": reason}))
            .await;
    }

    /// Nothing arrives for a while.
    pub async fn expect_nothing(&mut self) {
        let mut byte = [0u8; 1];
        if let Ok(read) = timeout(QUIET, self.reader.read(&mut byte)).await {
            panic!("expected nothing, got {read:?} ({:?})", byte[0] as char);
        }
    }

    /// The server closes the connection (after anything still buffered).
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        timeout(WAIT, self.reader.read_to_end(&mut rest))
            .await
            .expect("timed out waiting for the close")
            .ok();
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    pub async fn subscribe(&mut self, topic: &str) {
        self.send(&json!({"command": "subscribe", "topic": topic}).to_string())
            .await;
        self.expect_ok().await;
    }

    /// Sends a message and waits for its acknowledgement (the sender must
    /// not also subscribe to `topic`, or its own copy may come first).
    pub async fn publish(&mut self, topic: &str, msg: &str, delivery: &str) {
        self.send(&send_line(topic, msg, delivery)).await;
        self.expect_ok().await;
    }

    /// The write half, for tests that half-close or vanish mid-line.
    pub fn into_halves(self) -> (AsyncBufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.reader, self.writer)
    }

    /// The next `want.len()` lines are exactly `want`, in any order: a
    /// sender that also subscribes may get its copy before its reply, and
    /// different topics' messages are not ordered with each other.
    pub async fn expect_unordered(&mut self, want: Vec<Value>) {
        let mut got = Vec::with_capacity(want.len());
        for _ in 0..want.len() {
            got.push(self.recv().await);
        }
        let mut missing = want.clone();
        for line in &got {
            match missing.iter().position(|w| w == line) {
                Some(i) => {
                    missing.remove(i);
                }
                None => panic!("unexpected {line} (wanted {want:?}, got {got:?})"),
            }
        }
    }

    /// Half-closes the connection: the server sees end of input, while this
    /// client can still read what the server sends before it closes.
    pub async fn close_write(&mut self) {
        self.writer.shutdown().await.expect("shutdown");
    }

    /// Every line until the server closes the connection.
    pub async fn recv_until_closed(&mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = timeout(WAIT, self.reader.read_until(b'\n', &mut line))
                .await
                .expect("timed out waiting for the close")
                .expect("read");
            if n == 0 {
                return lines;
            }
            let line = String::from_utf8(line).expect("server sent UTF-8");
            let line = line
                .strip_suffix("\r\n")
                .unwrap_or_else(|| panic!("line without \\r\\n: {line:?}"));
            lines.push(serde_json::from_str(line).expect("JSON line"));
        }
    }
}

/// The lines of several clients as one stream, each tagged with the
/// client's position in the list given to [`Merged::new`]: for counting
/// where `delivery: "one"` messages went without knowing in advance how many
/// each client gets. The clients close when this is dropped.
pub struct Merged {
    rx: mpsc::UnboundedReceiver<(usize, Value)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Merged {
    pub fn new(clients: Vec<Client>) -> Merged {
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(who, client)| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    // Moves the whole client in: capturing only its reader
                    // would drop (and so half-close) its writer.
                    let mut client = client;
                    loop {
                        let mut line = Vec::new();
                        match client.reader.read_until(b'\n', &mut line).await {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                        let value = std::str::from_utf8(&line)
                            .ok()
                            .and_then(|l| l.strip_suffix("\r\n"))
                            .and_then(|l| serde_json::from_str(l).ok())
                            .unwrap_or_else(
                                || json!({"not a JSON line": String::from_utf8_lossy(&line)}),
                            );
                        if tx.send((who, value)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Merged { rx, tasks }
    }

    /// The next line from any of the clients.
    pub async fn next(&mut self) -> (usize, Value) {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a line")
            .expect("every client closed")
    }

    /// Everything that arrives until nothing has for a while.
    pub async fn until_quiet(&mut self) -> Vec<(usize, Value)> {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = timeout(QUIET, self.rx.recv()).await {
            lines.push(line);
        }
        lines
    }

    /// No client receives anything for a while.
    pub async fn expect_nothing(&mut self) {
        if let Ok(Some(line)) = timeout(QUIET, self.rx.recv()).await {
            panic!("expected nothing, got {line:?}");
        }
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The broker binary, for tests of its command line.
pub const BIN: &str = env!("CARGO_BIN_EXE_mq-actix");

/// The `index` of a delivered line.
pub fn index_of(delivered: &Value) -> u64 {
    delivered["index"]
        .as_u64()
        .unwrap_or_else(|| panic!("no index in {delivered}"))
}

/// A small seeded generator (SplitMix64), so that a failing random test
/// fails the same way again; no dependency needed for that.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub fn send_line(topic: &str, msg: &str, delivery: &str) -> String {
    json!({"command": "send", "topic": topic, "msg": msg, "delivery": delivery}).to_string()
}

/// The line a subscriber receives for a `send` without `cache`.
pub fn delivered(topic: &str, msg: &str, delivery: &str, index: u64) -> Value {
    json!({"command": "send", "topic": topic, "msg": msg, "delivery": delivery, "index": index})
}

/// A directory of one test's own under the system's temp dir, removed when
/// dropped; for `--data-dir`.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "mq-actix-test-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp dir paths are UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// The server keeping its topics in `dir`; `args` follow the port, then
    /// `--data-dir DIR`. Starting it again on the same `dir` is a restart.
    pub fn start_with_dir(dir: &TempDir, args: &[&str]) -> Server {
        let mut all = args.to_vec();
        all.extend(["--data-dir", dir.arg()]);
        Server::start_with(&all)
    }

    /// Stops the server with SIGTERM and waits for it to exit cleanly.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let status = self.exit_status(WAIT).await;
        assert!(status.success(), "graceful stop failed: {status}");
    }

    /// Kills the server with SIGKILL (a crash) and waits until it is gone.
    pub async fn crash(mut self) {
        self.signal("KILL");
        self.exit_status(WAIT).await;
    }
}

/// A connection whose kernel receive buffer is `rcvbuf` bytes, so that
/// what it does not read stays owed at the server rather than in its own
/// kernel.
pub async fn connect_small(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let stream = TcpStream::from_std(socket.into()).expect("tokio stream");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One GET: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().expect("GET");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        (status, body)
    })
    .await
    .expect("the request's thread")
}
