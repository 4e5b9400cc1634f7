//! A real broker in the test's own process, for tests and benchmarks that
//! need a server and its internals (enabled by the `testing` feature, which
//! the crate's own tests and benchmarks turn on).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix::{Addr, System};

use crate::config::Config;
use crate::memory::Memory;
use crate::registry::{ListTopics, Registry};
use crate::server::{bind, Broker};
use crate::stats::Stats;
use crate::topic::SubscriberCount;

/// A broker on `127.0.0.1` with an ephemeral port, in a thread of its own:
/// for tests and benchmarks that need a real server in-process. Stops when
/// dropped.
pub struct BackgroundServer {
    addr: SocketAddr,
    system: System,
    registry: Addr<Registry>,
    stats: Arc<Stats>,
    memory: Arc<Memory>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    pub fn start(config: Config) -> io::Result<BackgroundServer> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mq-actix".into())
            .spawn(move || {
                let system = System::new();
                let broker = system.block_on(async {
                    let broker = Broker::start(&config);
                    let served = broker.serve(listener);
                    let _ = started_tx.send(served.map(|()| {
                        (
                            System::current(),
                            broker.registry(),
                            broker.stats(),
                            broker.memory(),
                        )
                    }));
                    broker
                });
                let _ = system.run();
                broker.join();
            })?;
        let (system, registry, stats, memory) = started_rx
            .recv()
            .map_err(|_| io::Error::other("the server thread died while starting"))??;
        Ok(BackgroundServer {
            addr,
            system,
            registry,
            stats,
            memory,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The memory budget, with what it counts now.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Every topic with an actor (not dormant) and its number of
    /// subscribers, asked of the topics themselves (callable from any async
    /// runtime).
    pub async fn topic_subscribers(&self) -> Vec<(Arc<str>, usize)> {
        let Ok(topics) = self.registry.send(ListTopics).await else {
            return Vec::new();
        };
        let mut counts = Vec::with_capacity(topics.len());
        for (name, topic) in topics {
            if let Ok(count) = topic.send(SubscriberCount).await {
                counts.push((name, count));
            }
        }
        counts
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
