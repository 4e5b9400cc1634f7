//! Real Redis servers for the `--cluster` tests: one standalone Redis, or a
//! Redis Cluster of three masters, on free loopback ports, each in a
//! directory of its own, killed when dropped. A missing `redis-server` or
//! `redis-cli` fails the test: no test skips silently.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::TempDir;

/// Which Redis the brokers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Standalone,
    /// Three masters, no replicas; the brokers get all three as seeds.
    Cluster,
}

/// Running Redis processes, killed (and their directory removed) on drop.
pub struct Redis {
    servers: Vec<(Child, u16)>,
    kind: Kind,
    dir: TempDir,
}

/// How long Redis (or a cluster) may take to come up.
const START_LIMIT: Duration = Duration::from_secs(20);

impl Redis {
    pub fn start(kind: Kind) -> Redis {
        let dir = TempDir::new("redis");
        let count = match kind {
            Kind::Standalone => 1,
            Kind::Cluster => 3,
        };
        let servers = (0..count).map(|_| spawn(&dir, kind)).collect();
        let redis = Redis { servers, kind, dir };
        if kind == Kind::Cluster {
            redis.create_cluster();
        }
        redis
    }

    /// The `--cluster` argument: every server's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|(_, port)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sends `signal` (`STOP`, `CONT`) to every Redis process.
    pub fn signal(&self, signal: &str) {
        for (child, _) in &self.servers {
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(sent.success(), "kill -{signal} redis-server failed");
        }
    }

    /// Closes every connection that subscribes to a channel, on every Redis
    /// server: the brokers that listen lose their channel for a moment,
    /// while those that only publish keep theirs.
    pub fn kill_subscribers(&self) {
        for (_, port) in &self.servers {
            for client in cli(*port, &["client", "list"]).lines() {
                let field = |name: &str| {
                    client
                        .split(' ')
                        .find_map(|f| f.strip_prefix(name))
                        .unwrap_or("0")
                        .to_owned()
                };
                if field("sub=") != "0" || field("ssub=") != "0" {
                    cli(*port, &["client", "kill", "id", &field("id=")]);
                }
            }
        }
    }

    /// Shuts every server down as an operator would (`SHUTDOWN`: the
    /// append-only file is complete) and waits until each has exited.
    pub fn shut_down(&mut self) {
        for (child, port) in &mut self.servers {
            cli(*port, &["shutdown"]);
            let _ = child.wait();
        }
    }

    /// Starts every server again on its port, from its append-only file.
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        for (child, port) in &mut self.servers {
            *child = spawn_on(&self.dir, self.kind, *port, deadline)
                .unwrap_or_else(|| panic!("port {port} was taken meanwhile"));
        }
        if self.kind == Kind::Cluster {
            self.wait_for_cluster(deadline);
        }
    }

    fn create_cluster(&self) {
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for (_, port) in &self.servers {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run redis-cli (apt-get install redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        self.wait_for_cluster(Instant::now() + START_LIMIT);
    }

    fn wait_for_cluster(&self, deadline: Instant) {
        for (_, port) in &self.servers {
            while !cli(*port, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "the Redis cluster never got ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for (child, _) in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis-cli -p PORT ARGS...`'s output, or an empty string if it failed.
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A Redis server on a port nobody else had, answering PING.
fn spawn(dir: &TempDir, kind: Kind) -> (Child, u16) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let port = free_port();
        if let Some(child) = spawn_on(dir, kind, port, deadline) {
            return (child, port);
        }
    }
}

/// A Redis server on `port`, answering PING; `None` if the port was taken.
/// Its append-only file (in `dir`, one per port) keeps its data over a
/// restart on the same port.
fn spawn_on(dir: &TempDir, kind: Kind, port: u16, deadline: Instant) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appenddirname",
        &format!("aof-{port}"),
        "--dir",
        dir.arg(),
        "--loglevel",
        "warning",
    ]);
    if kind == Kind::Cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    let mut child = command
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (apt-get install redis-server)");
    loop {
        if cli(port, &["ping"]).trim() == "PONG" {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "redis-server never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port whose number and cluster bus port (+10000) are both free now,
/// from a range the kernel does not hand out for outgoing connections.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 5_000) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (port - 20_000) % 10_000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}
