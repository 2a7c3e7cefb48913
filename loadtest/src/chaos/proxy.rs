//! A TCP proxy in front of a dependency of the workers (Postgres, SQS), through which the chaos
//! run makes it go away (`cut`) or answer late and out of order (`delay`), then come back
//! (`restore`). The workers are pointed at [`Proxy::addr`] instead of the real service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read at once; also the largest chunk that waits out a delay as one.
const CHUNK: usize = 16 * 1024;
/// Chunks read ahead of the writer while they wait out their delay, per direction: bounds what a
/// slow connection holds in memory (hundreds of connections, two directions each).
const CHUNKS_AHEAD: usize = 32;

/// What the proxy does to traffic; each of `cut`, `delay` and `restore` replaces the last.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Forward,
    Cut,
    Delay {
        min: Duration,
        max: Duration,
        seed: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    /// Bumped by every cut: a connection closes when it differs from the one it started with,
    /// even if a `restore` came before the connection noticed the cut.
    cuts: u64,
}

struct Shared {
    target: String,
    state: watch::Sender<State>,
    accepted: AtomicU64,
    cut: AtomicU64,
}

/// What the proxy has done so far, for the run's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Connections accepted, including those closed at once during a cut.
    pub accepted: u64,
    /// Connections closed by a cut: those open when it came and those accepted during it.
    pub cut: u64,
}

/// A TCP proxy on 127.0.0.1 forwarding every connection to one target. Dropping it stops it and
/// closes every connection through it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` ("127.0.0.1:5432"). The
    /// target is connected to per accepted connection, so it need not be up yet.
    pub async fn start(target: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy to a free port")?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            mode: Mode::Forward,
            cuts: 0,
        });
        let shared = Arc::new(Shared {
            target: target.to_owned(),
            state,
            accepted: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        });
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            accepting,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service goes away: every open connection is reset now, and until [`Proxy::restore`]
    /// new ones are accepted and reset at once, so clients fail fast instead of hanging.
    pub fn cut(&self) {
        self.shared.state.send_modify(|s| {
            s.mode = Mode::Cut;
            s.cuts += 1;
        });
    }

    /// Until [`Proxy::restore`], every chunk forwarded in either direction waits before it is
    /// written on. Each connection draws its own wait, uniform in `min..=max`, from `seed` and
    /// its number, so the replies on different connections overtake each other while the bytes
    /// of one connection stay in order.
    pub fn delay(&self, min: Duration, max: Duration, seed: u64) {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        self.shared
            .state
            .send_modify(|s| s.mode = Mode::Delay { min, max, seed });
    }

    /// Plain forwarding again. Chunks already waiting out a delay still wait; new ones do not.
    pub fn restore(&self) {
        self.shared.state.send_modify(|s| s.mode = Mode::Forward);
    }

    pub fn counts(&self) -> ProxyCounts {
        ProxyCounts {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            cut: self.shared.cut.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        // Connection tasks outlive the listener; a last cut ends them too.
        self.shared.state.send_modify(|s| s.cuts += 1);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait a
                // little rather than spin, and keep serving the connections already open.
                tracing::warn!(error = %e, "the chaos proxy could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.accepted.fetch_add(1, Ordering::Relaxed);
        // Read once: a cut between this look and the connection's start still reaches it.
        let state = *shared.state.borrow();
        if state.mode == Mode::Cut {
            count_cut(inbound, &shared);
            continue;
        }
        tokio::spawn(connection(inbound, id, state.cuts, shared.clone()));
    }
}

/// Closes with a reset rather than a FIN: a server that went away, not one that said goodbye.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Forwards one connection until either side closes it or a cut comes after the `cuts`th.
async fn connection(mut inbound: TcpStream, id: u64, cuts: u64, shared: Arc<Shared>) {
    let mut state = shared.state.subscribe();
    let cut = async move {
        // An error means the proxy is gone, which ends the connection as a cut does.
        let _ = state.wait_for(|s| s.cuts != cuts).await;
    };
    tokio::pin!(cut);
    let mut outbound = tokio::select! {
        connected = TcpStream::connect(&shared.target) => match connected {
            Ok(outbound) => outbound,
            Err(e) => {
                tracing::debug!(error = %e, target = %shared.target, "the chaos proxy cannot reach its target");
                return reset(inbound);
            }
        },
        () = &mut cut => return count_cut(inbound, &shared),
    };
    // Small requests and replies go out at once; Nagle's wait would add to every round trip.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let was_cut = {
        let (from_client, to_client) = inbound.split();
        let (from_server, to_server) = outbound.split();
        let forwarding = async {
            tokio::try_join!(
                pump(from_client, to_server, id, &shared),
                pump(from_server, to_client, id, &shared),
            )
        };
        tokio::select! {
            // Both directions ended, or one failed (a reset), which ends the other too.
            _ = forwarding => false,
            () = &mut cut => true,
        }
    };
    if was_cut {
        count_cut(inbound, &shared);
    }
}

fn count_cut(inbound: TcpStream, shared: &Shared) {
    shared.cut.fetch_add(1, Ordering::Relaxed);
    reset(inbound);
}

/// Forwards one direction until its end of file, which it passes on as a half-close. A reader
/// queues each chunk with the moment it may go; the writer sends them in the order read, so a
/// chunk read after a `restore` still goes after the delayed ones before it.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    id: u64,
    shared: &Shared,
) -> std::io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_AHEAD);
    let read = async move {
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            let wait = delay_for(&shared.state.borrow().mode, id);
            let due = Instant::now() + wait.unwrap_or_default();
            if queue.send((due, buffer[..n].to_vec())).await.is_err() {
                return Ok(()); // the writer failed and says why
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// The wait of connection `id` under `mode`: the same for every chunk of the connection, in
/// both directions, and reproducible from the seed.
fn delay_for(mode: &Mode, id: u64) -> Option<Duration> {
    match *mode {
        Mode::Delay { min, max, seed } => {
            Some(StdRng::seed_from_u64(seed.wrapping_add(id)).random_range(min..=max))
        }
        Mode::Forward | Mode::Cut => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that writes back whatever it reads, on every connection.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = stream.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
        let started = Instant::now();
        stream.write_all(message).await.unwrap();
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
        started.elapsed()
    }

    /// True if the peer closed the connection (end of file or a reset) within a second.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn bytes_pass_through_the_proxy_unchanged() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        // More than a chunk and not a multiple of one, with every byte value.
        let message: Vec<u8> = (0..CHUNK * 5 + 7).map(|i| (i % 251) as u8).collect();
        let (mut reader, mut writer) = stream.split();
        let mut back = vec![0; message.len()];
        let (sent, read) = tokio::join!(writer.write_all(&message), reader.read_exact(&mut back));
        sent.unwrap();
        read.unwrap();
        assert_eq!(back, message);
        assert_eq!(
            proxy.counts(),
            ProxyCounts {
                accepted: 1,
                cut: 0
            }
        );
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_new_ones_until_it_is_restored() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut open, b"before").await;

        proxy.cut();
        assert!(
            closed(&mut open).await,
            "an open connection survived the cut"
        );
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = during.write_all(b"anyone there?").await;
        assert!(
            closed(&mut during).await,
            "a new connection was served during the cut"
        );

        proxy.restore();
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut after, b"after").await;
        assert_eq!(
            proxy.counts(),
            ProxyCounts {
                accepted: 3,
                cut: 2
            }
        );
    }

    #[tokio::test]
    async fn a_delay_holds_each_round_trip_for_at_least_its_minimum_until_restored() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let min = Duration::from_millis(250);
        proxy.delay(min, Duration::from_millis(350), 7);
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        // The request waits on the way there and the echo on the way back.
        let delayed = round_trip(&mut stream, b"slow").await;
        assert!(delayed >= 2 * min, "a delayed round trip took {delayed:?}");

        proxy.restore();
        // The connection opened during the delay is no longer held back, nor is a new one.
        let plain = round_trip(&mut stream, b"fast").await;
        assert!(plain < min, "a restored round trip took {plain:?}");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let plain = round_trip(&mut fresh, b"fast").await;
        assert!(plain < min, "a new connection's round trip took {plain:?}");
    }

    #[tokio::test]
    async fn a_request_sent_later_on_another_connection_overtakes_one_sent_earlier() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let (min, max) = (Duration::ZERO, Duration::from_millis(800));
        // A seed under which the first connection waits well over the second.
        let seed = (0..)
            .find(|&seed| {
                let mode = Mode::Delay { min, max, seed };
                let (first, second) = (delay_for(&mode, 0), delay_for(&mode, 1));
                first > second.map(|d| d + Duration::from_millis(300))
            })
            .unwrap();
        proxy.delay(min, max, seed);
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        first.write_all(b"sent first").await.unwrap();
        second.write_all(b"sent later").await.unwrap();
        let (mut a, mut b) = ([0; 10], [0; 10]);
        let overtaken = tokio::select! {
            _ = first.read_exact(&mut a) => false,
            _ = second.read_exact(&mut b) => true,
        };
        assert!(overtaken, "the earlier request was answered first");
    }

    #[tokio::test]
    async fn hundreds_of_delayed_connections_each_get_their_own_bytes_back_in_order() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        proxy.delay(Duration::from_millis(5), Duration::from_millis(50), 3);
        let clients = (0..300u32).map(|client| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                for part in 0..5u32 {
                    let message = format!("client {client} part {part};");
                    round_trip(&mut stream, message.as_bytes()).await;
                }
            })
        });
        for client in futures::future::join_all(clients).await {
            client.unwrap();
        }
        assert_eq!(proxy.counts().accepted, 300);
    }

    #[test]
    fn connections_draw_different_delays_within_the_range_and_the_same_ones_again() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(500));
        let mode = Mode::Delay { min, max, seed: 42 };
        let delays: Vec<Duration> = (0..20).map(|id| delay_for(&mode, id).unwrap()).collect();
        assert!(delays.iter().all(|d| (min..=max).contains(d)));
        assert!(delays.windows(2).any(|pair| pair[0] != pair[1]));
        let again: Vec<Duration> = (0..20).map(|id| delay_for(&mode, id).unwrap()).collect();
        assert_eq!(delays, again);
        assert_eq!(delay_for(&Mode::Forward, 0), None);
    }
}
