//! The run's own Redis server, which a fault kills and brings back (empty, as a cache may).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// A `redis-server` of the run's own on a free port, so that it can be killed without touching
/// anyone else's cache. It keeps nothing on disk: a restart comes back empty, as a cache may.
/// Killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Mutex<Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .context("finding a free port")?
            .local_addr()?
            .port();
        let child = spawn_redis(port).await?;
        Ok(Self {
            port,
            child: Mutex::new(child),
        })
    }

    #[cfg(test)]
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until it has exited.
    pub async fn kill(&self) -> anyhow::Result<()> {
        self.child
            .lock()
            .await
            .kill()
            .await
            .context("killing redis-server")
    }

    /// Starts it again on the same port (killing it first if it is still up) and waits until it
    /// answers.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().await;
        child.kill().await.context("killing redis-server")?;
        *child = spawn_redis(self.port).await?;
        Ok(())
    }
}

async fn spawn_redis(port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (is it installed?)")?;
    for _ in 0..100 {
        if answers_ping(port).await {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!("redis-server on port {port} exited at once ({status})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("redis-server did not answer on port {port} within 5 s")
}

/// Whether a Redis on `port` of 127.0.0.1 answers PING.
pub async fn answers_ping(port: u16) -> bool {
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_killed_redis_answers_ping_again_on_the_same_port_after_a_restart() {
        let redis = RedisServer::start().await.unwrap();
        assert!(answers_ping(redis.port()).await);
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));

        redis.kill().await.unwrap();
        assert!(!answers_ping(redis.port()).await);

        redis.restart().await.unwrap();
        assert!(answers_ping(redis.port()).await);
    }
}
