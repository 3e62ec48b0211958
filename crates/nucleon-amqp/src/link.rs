//! The link: one connection to the broker, its publishing and RPC channels, and the
//! supervisor that (re)connects it with backoff and replays the topology.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::{Mutex as AsyncMutex, watch};

use crate::broker::Inner;
use crate::error::{AmqpError, reason};
use crate::rpc::RpcLink;

/// One connection, up: what publishers and consumers use until it drops.
pub(crate) struct Link {
    /// 1 for the first connection, then one more at each reconnect.
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    /// Channels in confirm mode, one per worker by default; a channel the broker closed
    /// (a publish to a missing exchange) is replaced at its next use. Behind an `Arc`:
    /// a publish clones one pointer, not the channel's dozen.
    publish: Vec<std::sync::Mutex<Arc<Channel>>>,
    /// Taken while a closed publishing channel is replaced.
    replacing: AsyncMutex<()>,
    pub(crate) rpc: RpcLink,
}

impl Link {
    /// Whether the connection is still up.
    pub(crate) fn is_up(&self) -> bool {
        self.connection.status().connected()
    }

    /// The publishing channel for the calling worker (opened anew if the broker closed
    /// the last one).
    pub(crate) async fn publish_channel(&self) -> Result<Arc<Channel>, lapin::Error> {
        let index = nucleon_runtime::current_worker().unwrap_or(0) % self.publish.len();
        let slot = &self.publish[index];
        let current = Arc::clone(&lock(slot));
        if current.status().connected() {
            return Ok(current);
        }
        let _one = self.replacing.lock().await;
        let current = Arc::clone(&lock(slot));
        if current.status().connected() {
            return Ok(current); // replaced meanwhile
        }
        let fresh = Arc::new(confirm_channel(&self.connection).await?);
        *lock(slot) = Arc::clone(&fresh);
        Ok(fresh)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Where the link stands, as publishers, consumers and health see it.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Not connected (yet, or again): since when, and the last error.
    Down {
        since: Instant,
        last_error: Option<AmqpError>,
    },
    /// Connected.
    Up(Arc<Link>),
    /// Stopped: the service is ending.
    Closed,
}

/// Connects, replays the topology, and keeps the link up until the service stops:
/// every loss is followed by reconnection attempts with jittered exponential backoff.
pub(crate) async fn supervise(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let settings = &inner.config;
    let mut delay = settings.reconnect_min;
    let mut generation = 0_u64;
    let mut failures = 0_u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match connect(&inner, generation + 1).await {
            Ok((link, events)) => {
                generation += 1;
                failures = 0;
                delay = settings.reconnect_min;
                if generation == 1 {
                    tracing::info!(target: "nucleon::amqp", broker = %settings.describe(), "connected to the broker");
                } else {
                    inner.stats.reconnects.add(1);
                    tracing::info!(target: "nucleon::amqp", broker = %settings.describe(), generation, "reconnected to the broker; topology replayed");
                }
                let link = Arc::new(link);
                inner.state.send_replace(LinkState::Up(Arc::clone(&link)));
                let lost = watch_link(&inner, &link, events, &mut stop).await;
                inner.blocked.send_replace(None);
                link.rpc.fail_all();
                match lost {
                    None => return, // stopping
                    Some(error) => {
                        tracing::warn!(target: "nucleon::amqp", broker = %settings.describe(), "lost the connection to the broker: {error}; reconnecting");
                        inner.state.send_replace(LinkState::Down {
                            since: Instant::now(),
                            last_error: Some(AmqpError::Unreachable {
                                broker: settings.describe(),
                                reason: error,
                            }),
                        });
                    }
                }
            }
            Err(error) => {
                failures += 1;
                let text = error.to_string();
                // Every attempt at first, then one in ten: a broker down for an hour
                // should not fill the log.
                if failures <= 3 || failures.is_multiple_of(10) {
                    tracing::warn!(target: "nucleon::amqp", attempt = failures, "{text}; retrying in {delay:?}");
                }
                inner.state.send_modify(|state| {
                    if let LinkState::Down { last_error, .. } = state {
                        *last_error = Some(error);
                    }
                });
            }
        }
        let pause = jitter(delay);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(settings.reconnect_max);
    }
}

/// A link, connected, its topology declared, its channels open.
async fn connect(inner: &Arc<Inner>, generation: u64) -> Result<(Link, Events), AmqpError> {
    let settings = &inner.config;
    let unreachable = |reason: String| AmqpError::Unreachable {
        broker: settings.describe(),
        reason,
    };
    let properties =
        ConnectionProperties::default().with_connection_name(inner.connection_name.as_str().into());
    // lapin bounds the TCP connect by the URI's connection_timeout; this bounds the
    // handshake too.
    let limit = settings.connect_timeout + Duration::from_secs(1);
    let connection = tokio::time::timeout(limit, Connection::connect(&settings.uri(), properties))
        .await
        .map_err(|_| unreachable(format!("no answer within {limit:?}")))?
        .map_err(|e| unreachable(reason(&e)))?;
    let events: Events = Box::pin(connection.events_listener());
    let setup = async {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| unreachable(reason(&e)))?;
        inner.topology.replay(&channel).await?;
        let _ = channel.close(200, "topology declared".into()).await;
        let mut publish = Vec::new();
        for _ in 0..settings.publish_channels(inner.workers) {
            let channel = confirm_channel(&connection)
                .await
                .map_err(|e| unreachable(reason(&e)))?;
            publish.push(std::sync::Mutex::new(Arc::new(channel)));
        }
        let rpc = RpcLink::open(&connection)
            .await
            .map_err(|e| unreachable(reason(&e)))?;
        Ok::<_, AmqpError>((publish, rpc))
    };
    match setup.await {
        Ok((publish, rpc)) => Ok((
            Link {
                generation,
                connection,
                publish,
                replacing: AsyncMutex::new(()),
                rpc,
            },
            events,
        )),
        Err(error) => {
            let _ = connection.close(200, "set-up failed".into()).await;
            Err(error)
        }
    }
}

/// A connection's events (blocked, unblocked, errors).
type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = Event> + Send>>;

/// Follows the link's events until it is lost (`Some(why)`) or the service stops
/// (`None`); records `connection.blocked` and its end.
async fn watch_link(
    inner: &Inner,
    link: &Link,
    mut events: Events,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::ConnectionBlocked(why)) => {
                    tracing::warn!(target: "nucleon::amqp", "the broker blocks publishing: {why}; publishers wait");
                    inner.blocked.send_replace(Some(why));
                }
                Some(Event::ConnectionUnblocked) => {
                    tracing::info!(target: "nucleon::amqp", "the broker accepts publishing again");
                    inner.blocked.send_replace(None);
                }
                Some(Event::Error(error)) => return Some(reason(&error)),
                Some(_) => {}
                None => return Some("the connection ended".into()),
            },
            _ = check.tick() => {
                if !link.is_up() {
                    return Some("the connection is no longer open".into());
                }
            }
            _ = stop.changed() => return None,
        }
    }
}

/// `delay` ± 25 %, so that many services do not reconnect in step.
fn jitter(delay: Duration) -> Duration {
    let spread = crate::message::random_u64() % 501; // 0..=500 per mille
    delay.mul_f64(0.75 + spread as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(750) && d <= Duration::from_millis(1250),
                "{d:?}"
            );
        }
    }
}
