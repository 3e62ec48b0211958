//! Metrics owned by one thread: increments are plain cell writes; [`flush_local`]
//! hands what accumulated to the facade's handles in one batch.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Samples a [`LocalHistogram`] keeps before it hands them over by itself, whatever
/// the flush interval: bounds its memory under any load.
const HISTOGRAM_BATCH: usize = 512;

trait Flush {
    fn flush(&self);
}

thread_local! {
    /// This thread's local metrics, flushed together.
    static LOCAL: RefCell<Vec<Weak<dyn Flush>>> = const { RefCell::new(Vec::new()) };
    /// Set on a runtime's loop threads when metrics are on: how often they flush.
    static INTERVAL: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Marks this thread as one of a runtime's loops, recording metrics flushed every
/// `interval` (`None`: metrics off).
pub(crate) fn enable_on_thread(interval: Option<Duration>) {
    INTERVAL.with(|cell| cell.set(interval));
}

/// The flush interval of this thread, when it records metrics.
pub(crate) fn enabled_interval() -> Option<Duration> {
    INTERVAL.with(Cell::get)
}

fn register(metric: Weak<dyn Flush>) {
    LOCAL.with(|local| local.borrow_mut().push(metric));
}

/// Hands everything this thread's local metrics accumulated to the recorder. The
/// runtime calls it on each worker every `flush_interval`, and when the worker stops;
/// call it yourself on a thread of your own.
pub fn flush_local() {
    // Taken out while flushing: a flush that makes a new local metric registers it
    // without a borrow conflict.
    let metrics = LOCAL.with(|local| std::mem::take(&mut *local.borrow_mut()));
    let mut live = Vec::with_capacity(metrics.len());
    for metric in metrics {
        if let Some(strong) = metric.upgrade() {
            strong.flush();
            live.push(metric);
        }
    }
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        live.append(&mut local);
        *local = live;
    });
}

/// A counter owned by the thread that made it: [`increment`](Self::increment) adds to
/// a cell; the total reaches `handle` at the next [`flush_local`] on this thread, or
/// when the last clone is dropped. Not `Send`: each worker makes its own.
#[derive(Clone)]
pub struct LocalCounter(Rc<CounterCell>);

struct CounterCell {
    handle: metrics::Counter,
    pending: Cell<u64>,
}

impl LocalCounter {
    /// A local counter in front of `handle` (from `metrics::counter!`).
    pub fn new(handle: metrics::Counter) -> Self {
        let cell = Rc::new(CounterCell {
            handle,
            pending: Cell::new(0),
        });
        register(Rc::downgrade(&cell) as Weak<dyn Flush>);
        Self(cell)
    }

    /// Adds `n`.
    #[inline]
    pub fn increment(&self, n: u64) {
        self.0.pending.set(self.0.pending.get().wrapping_add(n));
    }
}

impl Flush for CounterCell {
    fn flush(&self) {
        let pending = self.pending.replace(0);
        if pending != 0 {
            self.handle.increment(pending);
        }
    }
}

impl Drop for CounterCell {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A gauge moved up and down by one thread: the change since the last flush reaches
/// `handle` at the next [`flush_local`] (so several workers' local gauges add up in
/// one series: in-flight requests, say).
#[derive(Clone)]
pub struct LocalGauge(Rc<GaugeCell>);

struct GaugeCell {
    handle: metrics::Gauge,
    delta: Cell<f64>,
}

impl LocalGauge {
    /// A local gauge in front of `handle` (from `metrics::gauge!`).
    pub fn new(handle: metrics::Gauge) -> Self {
        let cell = Rc::new(GaugeCell {
            handle,
            delta: Cell::new(0.0),
        });
        register(Rc::downgrade(&cell) as Weak<dyn Flush>);
        Self(cell)
    }

    /// Adds `value` (negative to subtract).
    #[inline]
    pub fn add(&self, value: f64) {
        self.0.delta.set(self.0.delta.get() + value);
    }
}

impl Flush for GaugeCell {
    fn flush(&self) {
        let delta = self.delta.replace(0.0);
        if delta != 0.0 {
            self.handle.increment(delta);
        }
    }
}

impl Drop for GaugeCell {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A histogram fed by one thread: samples are kept in a small buffer and handed to
/// `handle` at the next [`flush_local`], or by 512 at a time under load. Exact: every
/// sample reaches the recorder, which buckets them as it is configured to.
#[derive(Clone)]
pub struct LocalHistogram(Rc<HistogramCell>);

struct HistogramCell {
    handle: metrics::Histogram,
    samples: RefCell<Vec<f64>>,
}

impl LocalHistogram {
    /// A local histogram in front of `handle` (from `metrics::histogram!`).
    pub fn new(handle: metrics::Histogram) -> Self {
        let cell = Rc::new(HistogramCell {
            handle,
            samples: RefCell::new(Vec::new()),
        });
        register(Rc::downgrade(&cell) as Weak<dyn Flush>);
        Self(cell)
    }

    /// Records one sample.
    #[inline]
    pub fn record(&self, value: f64) {
        let full = {
            let mut samples = self.0.samples.borrow_mut();
            samples.push(value);
            samples.len() >= HISTOGRAM_BATCH
        };
        if full {
            self.0.flush();
        }
    }
}

impl Flush for HistogramCell {
    fn flush(&self) {
        let mut samples = self.samples.borrow_mut();
        for value in samples.drain(..) {
            self.handle.record(value);
        }
    }
}

impl Drop for HistogramCell {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Flushes this loop's local metrics every `interval`, until the loop ends.
pub(crate) async fn flush_every(interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        flush_local();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{CounterFn, GaugeFn, HistogramFn};

    use super::*;

    #[derive(Default)]
    struct Seen {
        counter: AtomicU64,
        calls: AtomicU64,
        gauge_millis: AtomicU64,
        samples: std::sync::Mutex<Vec<f64>>,
    }

    impl CounterFn for Seen {
        fn increment(&self, value: u64) {
            self.counter.fetch_add(value, Ordering::Relaxed);
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.counter.store(value, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Seen {
        fn increment(&self, value: f64) {
            self.gauge_millis
                .fetch_add((value * 1000.0) as u64, Ordering::Relaxed);
        }
        fn decrement(&self, value: f64) {
            self.gauge_millis
                .fetch_sub((value * 1000.0) as u64, Ordering::Relaxed);
        }
        fn set(&self, value: f64) {
            self.gauge_millis
                .store((value * 1000.0) as u64, Ordering::Relaxed);
        }
    }

    impl HistogramFn for Seen {
        fn record(&self, value: f64) {
            self.samples.lock().unwrap().push(value);
        }
    }

    #[test]
    fn increments_reach_the_handle_in_one_call_per_flush() {
        let seen = Arc::new(Seen::default());
        let counter = LocalCounter::new(metrics::Counter::from_arc(Arc::clone(&seen)));
        for _ in 0..1000 {
            counter.increment(1);
        }
        assert_eq!(
            seen.counter.load(Ordering::Relaxed),
            0,
            "held until the flush"
        );
        flush_local();
        assert_eq!(seen.counter.load(Ordering::Relaxed), 1000);
        assert_eq!(seen.calls.load(Ordering::Relaxed), 1);
        flush_local();
        assert_eq!(
            seen.calls.load(Ordering::Relaxed),
            1,
            "nothing new, no call"
        );
        counter.increment(5);
        drop(counter);
        assert_eq!(
            seen.counter.load(Ordering::Relaxed),
            1005,
            "flushed on drop"
        );
    }

    #[test]
    fn gauges_add_deltas_and_histograms_keep_every_sample() {
        let seen = Arc::new(Seen::default());
        let gauge = LocalGauge::new(metrics::Gauge::from_arc(Arc::clone(&seen)));
        let histogram = LocalHistogram::new(metrics::Histogram::from_arc(Arc::clone(&seen)));
        gauge.add(3.0);
        gauge.add(-1.0);
        for i in 0..(HISTOGRAM_BATCH + 10) {
            histogram.record(i as f64);
        }
        assert_eq!(
            seen.samples.lock().unwrap().len(),
            HISTOGRAM_BATCH,
            "a full batch is handed over at once"
        );
        flush_local();
        assert_eq!(seen.gauge_millis.load(Ordering::Relaxed), 2000);
        let samples = seen.samples.lock().unwrap();
        assert_eq!(samples.len(), HISTOGRAM_BATCH + 10);
        assert_eq!(
            samples.iter().sum::<f64>(),
            (0..HISTOGRAM_BATCH + 10).sum::<usize>() as f64
        );
    }
}
