//! `Blocking<T>`: a blocking client owned by its own threads, behind an async API.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::OffloadError;
use crate::task::panic_message;
use crate::watchdog::lock;

type Call<T> = Box<dyn FnOnce(&mut T) + Send>;

/// A blocking client (a synchronous database driver, an SDK without async) owned by
/// dedicated threads, called from async code without blocking the loop.
///
/// Each thread builds its own client with the factory, on that thread, so the client
/// need not be `Send`. Calls queue (bounded) and run one at a time per thread.
/// `Blocking` is cheap to clone; when the last clone drops, the threads end.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use nucleon_runtime::offload::Blocking;
///
/// // A stand-in for a synchronous client.
/// struct Ledger { entries: Vec<u64> }
///
/// let ledger = Blocking::new("ledger", 1, 64, || Ledger { entries: Vec::new() }).unwrap();
/// ledger.call(|l| l.entries.push(7)).await.unwrap();
/// let total = ledger.call(|l| l.entries.iter().sum::<u64>()).await.unwrap();
/// assert_eq!(total, 7);
/// # });
/// ```
pub struct Blocking<T> {
    name: Arc<str>,
    tx: SyncSender<Call<T>>,
    threads: usize,
    queue: usize,
}

impl<T> Clone for Blocking<T> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            tx: self.tx.clone(),
            threads: self.threads,
            queue: self.queue,
        }
    }
}

impl<T: 'static> Blocking<T> {
    /// Starts `threads` threads, each owning a client built by `make`, with room for
    /// `queue` waiting calls.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn new<F>(name: &str, threads: usize, queue: usize, make: F) -> std::io::Result<Self>
    where
        F: Fn() -> T + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Call<T>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let make = Arc::new(make);
        for index in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let make = Arc::clone(&make);
            std::thread::Builder::new()
                .name(format!("nucleon-blocking-{name}-{index}"))
                .spawn(move || serve(&rx, &*make))?;
        }
        Ok(Self {
            name: name.into(),
            tx,
            threads: threads.max(1),
            queue,
        })
    }

    /// Runs `f` with a client, on the client's thread, and awaits its result. Dropping
    /// the returned future while the call still waits in the queue withdraws it.
    ///
    /// # Errors
    /// [`OffloadError::Saturated`] when the queue is full; [`OffloadError::Panicked`] when
    /// `f` panicked (the client thread goes on); [`OffloadError::Closed`] when every
    /// client thread has died.
    pub async fn call<R, F>(&self, f: F) -> Result<R, OffloadError>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call<T> = Box::new(move |client| {
            // The caller stopped waiting while the call was queued: not made.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(catch_unwind(AssertUnwindSafe(|| f(client))));
        });
        match self.tx.try_send(call) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(OffloadError::Saturated {
                    pool: self.name.to_string(),
                    threads: self.threads,
                    queued: self.queue,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(self.closed()),
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(OffloadError::Panicked {
                pool: self.name.to_string(),
                message: panic_message(&*panic),
            }),
            Err(_) => Err(self.closed()),
        }
    }

    fn closed(&self) -> OffloadError {
        OffloadError::Closed {
            pool: self.name.to_string(),
            reason: "its client threads have ended (did the client factory panic?)".into(),
        }
    }
}

fn serve<T>(rx: &Mutex<Receiver<Call<T>>>, make: &(dyn Fn() -> T + Send + Sync)) {
    let mut client = make();
    loop {
        let call = match lock(rx).recv() {
            Ok(call) => call,
            Err(_) => return,
        };
        call(&mut client);
    }
}

impl<T> std::fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}
