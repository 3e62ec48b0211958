//! A Redis client made a per-worker adapter: the README's "Writing an adapter".
use std::{net::SocketAddr, rc::Rc, time::Instant};

use nucleon::runtime::{Adapter, AdapterContext, BoxError, Health};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::{net::TcpStream, sync::Mutex};

type Conn = Rc<Mutex<BufReader<TcpStream>>>;

/// The handle: this worker's connection (`!Send`, on the worker's reactor).
#[derive(Clone)]
pub struct Redis(Conn);

impl Redis {
    /// Sends one command; its reply (`None` for nil). It runs on a task of its own: a
    /// caller that stops waiting (a timeout) does not leave its reply unread for the next.
    pub async fn call(&self, args: &[&str]) -> Result<Option<String>, BoxError> {
        let request = args.iter().map(|a| format!("${}\r\n{a}\r\n", a.len()));
        let request = request.fold(format!("*{}\r\n", args.len()), |r, a| r + &a);
        nucleon::spawn("redis", exchange(Rc::clone(&self.0), request)).await?
    }
}

async fn exchange(io: Conn, request: String) -> Result<Option<String>, BoxError> {
    let mut io = io.lock().await;
    io.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    io.read_line(&mut line).await?;
    match line.trim_end().split_at_checked(1) {
        Some(("+" | ":", text)) => Ok(Some(text.to_owned())),
        Some(("$", "-1")) => Ok(None),
        Some(("$", len)) => {
            let mut bulk = vec![0; len.parse::<usize>()? + 2]; // the value, CRLF
            io.read_exact(&mut bulk).await?;
            let value = String::from_utf8_lossy(&bulk[..bulk.len() - 2]);
            Ok(Some(value.into_owned()))
        }
        None => Err("redis closed the connection".into()),
        _ => Err(format!("redis: {}", line.trim_end()).into()),
    }
}

/// The adapter: `[<env>.redis] addr = "127.0.0.1:6379"`.
#[derive(Default)]
pub struct RedisAdapter(Option<Redis>);

impl Adapter for RedisAdapter {
    type Handle = Redis;

    fn name(&self) -> &str {
        "redis"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<Redis, BoxError> {
        let addr: Option<SocketAddr> = ctx.config().extract_at("redis.addr")?;
        let addr = addr.ok_or("redis.addr is not set: give the server's ip:port")?;
        let io = BufReader::new(TcpStream::connect(addr).await?);
        Ok(self.0.insert(Redis(Rc::new(Mutex::new(io)))).clone())
    }

    async fn health(&self) -> Health {
        match self.0.as_ref().map(|redis| redis.call(&["PING"])) {
            Some(ping) => ping
                .await
                .map_or_else(|e| Health::Unhealthy(e.to_string()), |_| Health::Healthy),
            None => Health::Unhealthy("not started".into()),
        }
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        self.0 = None; // the connection closes with its last handle
        Ok(())
    }
}
