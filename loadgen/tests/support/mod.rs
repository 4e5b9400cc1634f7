//! Helpers for loadgen's integration tests: a small in-process server that
//! speaks enough of the protocol to be loaded, and can be told to break one
//! promise, and a way to run the loadgen binary and read its JSON.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Which promise the fake server breaks, once, at one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// None: a correct (if simple) broker.
    None,
    /// Never delivers that delivery.
    Drop,
    /// Delivers it twice.
    Duplicate,
    /// Delivers it after the next one to the same connection.
    Reorder,
    /// Sends it to another connection instead.
    Misroute,
    /// Goes silent from that delivery on, keeping every connection open.
    Stall,
    /// Acknowledges every line without reading it and delivers nothing: the
    /// fastest server possible, to show what loadgen can send.
    AckOnly,
}

/// The protocol a fake server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mq,
    /// NATS core: INFO, CONNECT, PING/PONG, SUB (with queue groups), PUB/MSG.
    Nats,
    /// Redis RESP3: HELLO, SUBSCRIBE, PUBLISH, PING.
    Redis,
}

/// Which delivery the fault hits unless told: late enough that the run is
/// under way.
const FAULT_AT: u64 = 10;

/// Messages kept per topic for replay, as the real broker's default.
pub const CACHE_SIZE: usize = 100;

/// A fake broker on `127.0.0.1` with an ephemeral port, on a runtime thread
/// of its own that lives as long as the test process.
pub struct FakeServer {
    addr: SocketAddr,
}

impl FakeServer {
    pub fn start(fault: Fault) -> FakeServer {
        FakeServer::start_at(fault, FAULT_AT)
    }

    /// A server whose fault hits its `at`-th delivery (counting from 1).
    pub fn start_at(fault: Fault, at: u64) -> FakeServer {
        FakeServer::speaking(Dialect::Mq, fault, at)
    }

    /// A server speaking `dialect`, whose fault hits its `at`-th delivery.
    pub fn speaking(dialect: Dialect, fault: Fault, at: u64) -> FakeServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("fake server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("local addr"))
                    .expect("report the address");
                let state = Arc::new(Mutex::new(Broker::new(fault, at)));
                let ids = AtomicU64::new(0);
                while let Ok((stream, _)) = listener.accept().await {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    if fault == Fault::AckOnly {
                        tokio::spawn(ack_only(stream));
                    } else {
                        tokio::spawn(serve(dialect, stream, id, state.clone()));
                    }
                }
            });
        });
        FakeServer {
            addr: rx.recv().expect("fake server started"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

struct Topic {
    next_index: u64,
    subscribers: Vec<u64>,
    cursor: usize,
    /// Index, delivered line, and whether it is a `delivery: one` message.
    cache: VecDeque<(u64, String, bool)>,
}

/// A NATS subscription: its connection, its id there, whether it is in the
/// queue group.
struct NatsSub {
    conn: u64,
    sid: String,
    grouped: bool,
}

struct Broker {
    nats_subs: HashMap<String, Vec<NatsSub>>,
    fault: Fault,
    fault_at: u64,
    deliveries: u64,
    topics: HashMap<String, Topic>,
    outboxes: HashMap<u64, mpsc::UnboundedSender<String>>,
    /// A delivery held back to be sent after the next one (reorder).
    held: HashMap<u64, String>,
    /// Set once a stalling server has gone silent.
    silent: bool,
}

impl Broker {
    fn new(fault: Fault, fault_at: u64) -> Broker {
        Broker {
            nats_subs: HashMap::new(),
            fault,
            fault_at,
            deliveries: 0,
            topics: HashMap::new(),
            outboxes: HashMap::new(),
            held: HashMap::new(),
            silent: false,
        }
    }

    fn topic(&mut self, name: &str) -> &mut Topic {
        self.topics
            .entry(name.to_string())
            .or_insert_with(|| Topic {
                next_index: 0,
                subscribers: Vec::new(),
                cursor: 0,
                cache: VecDeque::new(),
            })
    }

    /// Queues a complete frame for `conn`.
    fn reply(&self, conn: u64, frame: String) {
        if self.silent {
            return;
        }
        if let Some(out) = self.outboxes.get(&conn) {
            let _ = out.send(frame);
        }
    }

    /// Queues an mq line for `conn`.
    fn line(&self, conn: u64, line: String) {
        self.reply(conn, format!("{line}\r\n"));
    }

    fn deliver(&mut self, conn: u64, line: String) {
        self.deliveries += 1;
        if self.deliveries == self.fault_at {
            match self.fault {
                Fault::Drop => return,
                Fault::Duplicate => self.reply(conn, line.clone()),
                Fault::Reorder => {
                    self.held.insert(conn, line);
                    return;
                }
                Fault::Misroute => {
                    let other = self.outboxes.keys().copied().filter(|&c| c != conn).min();
                    return self.reply(other.unwrap_or(conn), line);
                }
                Fault::Stall => self.silent = true,
                Fault::None | Fault::AckOnly => {}
            }
        }
        self.reply(conn, line);
        if let Some(held) = self.held.remove(&conn) {
            self.reply(conn, held);
        }
    }

    /// Carries out one command line from `conn`.
    fn handle(&mut self, conn: u64, line: &str) {
        let ok = json!({"success": true}).to_string();
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(Value::Object(mut cmd)) = serde_json::from_str::<Value>(line) else {
            return self.line(
                conn,
                json!({"success": false, "reason": "Could not parse json"}).to_string(),
            );
        };
        let topic = cmd
            .get("topic")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match cmd.get("command").and_then(Value::as_str) {
            Some("subscribe") => {
                let t = self.topic(&topic);
                if !t.subscribers.contains(&conn) {
                    t.subscribers.push(conn);
                }
                self.line(conn, ok);
                if cmd.get("cache") == Some(&Value::Bool(false)) {
                    return;
                }
                let last_seen = cmd.get("last_seen").and_then(Value::as_i64).unwrap_or(-1);
                let t = self.topic(&topic);
                let replay: Vec<String> = t
                    .cache
                    .iter()
                    .filter(|(i, _, _)| *i as i64 > last_seen)
                    .map(|(_, l, _)| l.clone())
                    .collect();
                t.cache
                    .retain(|(i, _, one)| !(*one && *i as i64 > last_seen));
                for line in replay {
                    self.deliver(conn, line);
                }
            }
            Some("unsubscribe") => {
                self.topic(&topic).subscribers.retain(|&c| c != conn);
                self.line(conn, ok);
            }
            Some("send") => {
                let one = cmd.get("delivery").and_then(Value::as_str) == Some("one");
                let t = self.topic(&topic);
                let index = t.next_index;
                t.next_index += 1;
                cmd.insert("index".into(), json!(index));
                let delivered = format!("{}\r\n", Value::Object(cmd));
                let targets: Vec<u64> = if one {
                    if t.subscribers.is_empty() {
                        vec![]
                    } else {
                        t.cursor %= t.subscribers.len();
                        let chosen = t.subscribers[t.cursor];
                        t.cursor += 1;
                        vec![chosen]
                    }
                } else {
                    t.subscribers.clone()
                };
                if !one || targets.is_empty() {
                    t.cache.push_back((index, delivered.clone(), one));
                    if t.cache.len() > CACHE_SIZE {
                        t.cache.pop_front();
                    }
                }
                for target in targets {
                    self.deliver(target, delivered.clone());
                }
                self.line(conn, ok);
            }
            _ => self.line(
                conn,
                json!({"success": false, "reason": "Malformed json message"}).to_string(),
            ),
        }
    }

    /// Carries out one NATS control line, with the payload that follows a
    /// PUB.
    fn handle_nats(&mut self, conn: u64, line: &str, payload: Option<&str>) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["PING"] => self.reply(conn, "PONG\r\n".into()),
            ["SUB", subject, rest @ ..] => {
                let (grouped, sid) = match rest {
                    [_, sid] => (true, sid),
                    [sid] => (false, sid),
                    _ => return self.reply(conn, "-ERR 'Invalid Subject'\r\n".into()),
                };
                let sub = NatsSub {
                    conn,
                    sid: sid.to_string(),
                    grouped,
                };
                self.nats_subs
                    .entry(subject.to_string())
                    .or_default()
                    .push(sub);
            }
            ["PUB", subject, _] => {
                let payload = payload.unwrap_or_default();
                let cursor = {
                    let t = self.topic(subject);
                    t.cursor += 1;
                    t.cursor
                };
                let subs = self.nats_subs.get(*subject).map_or(&[][..], Vec::as_slice);
                let grouped: Vec<&NatsSub> = subs.iter().filter(|s| s.grouped).collect();
                let mut targets: Vec<&NatsSub> = subs.iter().filter(|s| !s.grouped).collect();
                if !grouped.is_empty() {
                    targets.push(grouped[cursor % grouped.len()]);
                }
                let frames: Vec<(u64, String)> = targets
                    .iter()
                    .map(|s| {
                        let frame =
                            format!("MSG {subject} {} {}\r\n{payload}\r\n", s.sid, payload.len());
                        (s.conn, frame)
                    })
                    .collect();
                for (target, frame) in frames {
                    self.deliver(target, frame);
                }
            }
            ["CONNECT", ..] | ["PONG"] => {}
            _ => self.reply(conn, "-ERR 'Unknown Protocol Operation'\r\n".into()),
        }
    }

    /// Carries out one Redis command.
    fn handle_redis(&mut self, conn: u64, args: &[String]) {
        let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["HELLO", "3"] => {
                self.reply(conn, format!("%1\r\n{}{}", bulk("server"), bulk("redis")))
            }
            ["PING"] => self.reply(conn, "+PONG\r\n".into()),
            ["SUBSCRIBE", channel] => {
                let t = self.topic(channel);
                if !t.subscribers.contains(&conn) {
                    t.subscribers.push(conn);
                }
                self.reply(
                    conn,
                    format!(">3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(channel)),
                );
            }
            ["PUBLISH", channel, message] => {
                let targets = self.topic(channel).subscribers.clone();
                let frame = format!(
                    ">3\r\n{}{}{}",
                    bulk("message"),
                    bulk(channel),
                    bulk(message)
                );
                for &target in &targets {
                    self.deliver(target, frame.clone());
                }
                self.reply(conn, format!(":{}\r\n", targets.len()));
            }
            _ => self.reply(conn, "-ERR unknown command\r\n".into()),
        }
    }

    fn disconnect(&mut self, conn: u64) {
        self.outboxes.remove(&conn);
        for topic in self.topics.values_mut() {
            topic.subscribers.retain(|&c| c != conn);
        }
        for subs in self.nats_subs.values_mut() {
            subs.retain(|s| s.conn != conn);
        }
    }
}

async fn ack_only(mut stream: TcpStream) {
    const ACK: &[u8] = b"{\"success\": true}\r\n";
    let mut buf = vec![0; 64 * 1024];
    let mut acks = Vec::new();
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        acks.clear();
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            acks.extend_from_slice(ACK);
        }
        if stream.write_all(&acks).await.is_err() {
            break;
        }
    }
}

async fn serve(dialect: Dialect, stream: TcpStream, id: u64, state: Arc<Mutex<Broker>>) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    state.lock().unwrap().outboxes.insert(id, tx);
    if dialect == Dialect::Nats {
        state
            .lock()
            .unwrap()
            .reply(id, "INFO {\"server_id\":\"fake\"}\r\n".into());
    }
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(frame) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(frame.as_bytes());
            while let Ok(frame) = rx.try_recv() {
                buf.extend_from_slice(frame.as_bytes());
            }
            if write.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match dialect {
            Dialect::Mq if line.trim() == "quit" => break,
            Dialect::Mq => state.lock().unwrap().handle(id, &line),
            Dialect::Nats => {
                // Payloads here never hold a line break, so a PUB's payload
                // is the next line.
                let payload = if line.starts_with("PUB ") {
                    lines.next_line().await.ok().flatten()
                } else {
                    None
                };
                state
                    .lock()
                    .unwrap()
                    .handle_nats(id, &line, payload.as_deref());
            }
            Dialect::Redis => {
                let count: usize = line.trim_start_matches('*').parse().unwrap_or(0);
                let mut args = Vec::new();
                for _ in 0..count * 2 {
                    match lines.next_line().await {
                        Ok(Some(part)) => args.push(part),
                        _ => break,
                    }
                }
                let args: Vec<String> = args.into_iter().skip(1).step_by(2).collect();
                state.lock().unwrap().handle_redis(id, &args);
            }
        }
    }
    state.lock().unwrap().disconnect(id);
    let _ = writer.await;
}

/// What a loadgen run printed and reported.
pub struct Run {
    pub output: Output,
    pub report: Value,
    pub took: Duration,
}

impl Run {
    pub fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    /// A field of the report by JSON pointer, as a number.
    pub fn num(&self, pointer: &str) -> f64 {
        self.report
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no number at {pointer} in {}", self.report))
    }

    /// Everything worth seeing when an assertion fails.
    pub fn explain(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}\nreport: {}",
            self.output.status.code(),
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr),
            self.report
        )
    }
}

/// Runs loadgen against `addr` with `args` (plus `--quiet --json`) and reads
/// its report; `report` is `Null` when it wrote none.
pub fn loadgen(addr: SocketAddr, args: &[&str]) -> Run {
    loadgen_at(&addr.to_string(), args)
}

/// [`loadgen`] with `--addr` as written: a list, or a name.
pub fn loadgen_at(addr: &str, args: &[&str]) -> Run {
    let json = temp_path("report.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--addr")
        .arg(addr)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("run loadgen");
    let took = started.elapsed();
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json);
    Run {
        output,
        report,
        took,
    }
}

/// A path in the temp directory no other test uses.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("loadgen-test-{}-{n}-{name}", std::process::id()))
}
