//! A consumer channel's acks, coalesced: a delivery settled by an ack is marked done,
//! and the done deliveries at the front of those outstanding are acked together, with
//! one `multiple` ack, at the end of the loop's turn.
//!
//! An ack travels from the worker to lapin's connection task on the process loop, then
//! to its IO thread: two thread hops. Under load many handlers end in one turn of the
//! loop, and one ack then settles them all. The drain still waits for each: a handler's
//! in-flight guard is held until its ack has gone.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use nucleon_runtime::InFlightGuard;

use crate::broker::Broker;

/// How long an ack or nack may wait for lapin (which never answers one on a channel of
/// a link that died: the broker requeues those deliveries itself).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The deliveries of one channel not settled yet, by delivery tag.
pub(crate) struct Acks {
    broker: Broker,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    outstanding: BTreeMap<u64, Slot>,
    /// A flush is scheduled or under way.
    flushing: bool,
}

enum Slot {
    /// Its handler runs (or its settling).
    Open,
    /// Done, to be acked; the guard keeps the drain waiting until it is.
    Done(Acker, Option<InFlightGuard>),
}

/// One delivery to settle: ack it (coalesced) or nack it alone.
pub(crate) struct Ticket {
    acks: Rc<Acks>,
    tag: u64,
    acker: Acker,
    guard: Option<InFlightGuard>,
}

impl Acks {
    pub(crate) fn new(broker: Broker) -> Rc<Self> {
        Rc::new(Self {
            broker,
            state: RefCell::default(),
        })
    }

    /// Registers a delivery received on the channel (every one, so that a `multiple`
    /// ack never reaches past one not settled).
    pub(crate) fn ticket(
        self: &Rc<Self>,
        tag: u64,
        acker: Acker,
        guard: Option<InFlightGuard>,
    ) -> Ticket {
        self.state.borrow_mut().outstanding.insert(tag, Slot::Open);
        Ticket {
            acks: Rc::clone(self),
            tag,
            acker,
            guard,
        }
    }

    fn schedule_flush(self: &Rc<Self>) {
        let mut state = self.state.borrow_mut();
        if state.flushing {
            return;
        }
        state.flushing = true;
        drop(state);
        let acks = Rc::clone(self);
        nucleon_runtime::spawn("amqp acks", async move {
            // The handlers ending in this turn of the loop mark theirs done first.
            tokio::task::yield_now().await;
            acks.flush().await;
        });
    }

    /// Acks the done deliveries at the front, one `multiple` ack for each run of them.
    async fn flush(&self) {
        loop {
            let (last, guards, count) = {
                let mut state = self.state.borrow_mut();
                let mut last = None;
                let mut guards = Vec::new();
                let mut count = 0_u64;
                while let Some(entry) = state.outstanding.first_entry() {
                    if matches!(entry.get(), Slot::Open) {
                        break;
                    }
                    if let Slot::Done(acker, guard) = entry.remove() {
                        last = Some(acker);
                        guards.extend(guard);
                        count += 1;
                    }
                }
                if last.is_none() {
                    state.flushing = false;
                    return;
                }
                (last, guards, count)
            };
            if let Some(acker) = last.filter(Acker::usable) {
                let ack = acker.ack(BasicAckOptions { multiple: true });
                if matches!(
                    tokio::time::timeout(SETTLE_TIMEOUT, ack).await,
                    Ok(Ok(true))
                ) {
                    self.broker.inner.stats.acked.add(count);
                }
            }
            drop(guards);
        }
    }

    fn forget(self: &Rc<Self>, tag: u64) {
        let front = {
            let mut state = self.state.borrow_mut();
            let front = state.outstanding.first_key_value().map(|(t, _)| *t) == Some(tag);
            state.outstanding.remove(&tag);
            front
        };
        if front {
            // Done deliveries may have waited behind this one.
            self.schedule_flush();
        }
    }
}

impl Ticket {
    /// Settled by an ack: acked with the others done in this turn.
    pub(crate) fn ack(mut self) {
        let acks = Rc::clone(&self.acks);
        if let Some(slot) = acks.state.borrow_mut().outstanding.get_mut(&self.tag) {
            *slot = Slot::Done(self.acker.clone(), self.guard.take());
        }
        acks.schedule_flush();
    }

    /// Put back in the queue, alone (a nack with requeue).
    pub(crate) async fn requeue(self) {
        if self.acker.usable() {
            let nack = self.acker.nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            });
            if matches!(
                tokio::time::timeout(SETTLE_TIMEOUT, nack).await,
                Ok(Ok(true))
            ) {
                self.acks.broker.inner.stats.requeued.add(1);
            }
        }
        self.acks.forget(self.tag);
    }
}
