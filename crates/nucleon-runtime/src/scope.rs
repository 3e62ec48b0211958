//! The context of the task being polled, request id and trace context, in one
//! thread-local.
//!
//! One slot rather than two tokio task-locals: the HTTP pipeline scopes both around
//! every poll of a handler, and one swap in and one out (one guard, so the handler's
//! response is not copied once more on its way out) is what it costs.

use std::cell::RefCell;

use crate::request_id::Id;
use crate::trace::{TaskTrace, TraceContext};

/// The thread's slot for the trace context: outside any scope, or the scope's context
/// (none yet: one is started when asked for).
pub(crate) enum Trace {
    Outside,
    Scope(Option<Box<TraceContext>>),
}

/// What the task being polled has in scope.
pub(crate) struct Current {
    pub(crate) request_id: Option<Id>,
    pub(crate) trace: Trace,
}

thread_local! {
    pub(crate) static CURRENT: RefCell<Current> = const {
        RefCell::new(Current { request_id: None, trace: Trace::Outside })
    };
}

/// Runs `f` with `request_id` (when given) as the current request id and `trace` (when
/// given) as the current trace context; puts back what was there when `f` returns or
/// unwinds, and hands the trace context (a lazily started one included) back to
/// `trace`.
#[inline]
pub(crate) fn enter<R>(
    request_id: Option<&Id>,
    trace: Option<&mut TaskTrace>,
    f: impl FnOnce() -> R,
) -> R {
    /// What was in the slot before, restored on the way out.
    struct Restore<'a> {
        request_id: Option<Option<Id>>,
        trace: Option<(&'a mut TaskTrace, Trace)>,
    }

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|cell| {
                let mut current = cell.borrow_mut();
                if let Some(outer) = self.request_id.take() {
                    current.request_id = outer;
                }
                if let Some((holder, outer)) = self.trace.take()
                    && let Trace::Scope(context) = std::mem::replace(&mut current.trace, outer)
                {
                    holder.0 = context;
                }
            });
        }
    }

    let mut restore = Restore {
        request_id: None,
        trace: None,
    };
    let _ = CURRENT.try_with(|cell| {
        let mut current = cell.borrow_mut();
        if let Some(id) = request_id {
            restore.request_id = Some(current.request_id.replace(id.clone()));
        }
        if let Some(holder) = trace {
            let inner = Trace::Scope(holder.0.take());
            restore.trace = Some((holder, std::mem::replace(&mut current.trace, inner)));
        }
    });
    f()
}

#[cfg(test)]
mod tests {
    use crate::request_id::{self, Id};
    use crate::trace::{self, TaskTrace, TraceContext};

    #[test]
    fn both_in_one_step_and_each_alone_restore_what_was_there() {
        let mut trace = TaskTrace::new();
        let started = request_id::sync_scope_with_trace(&Id::from("outer"), &mut trace, || {
            assert_eq!(request_id::current(), Some(Id::from("outer")));
            let started = trace::current().expect("in scope");
            // The request id alone, inside: the trace context stays.
            request_id::sync_scope(&Id::from("inner"), || {
                assert_eq!(request_id::current(), Some(Id::from("inner")));
                assert_eq!(trace::current().as_ref(), Some(&started));
            });
            // The trace context alone, inside: the request id stays.
            let mut other = TaskTrace::from(TraceContext::start());
            trace::sync_scope(&mut other, || {
                assert_eq!(request_id::current(), Some(Id::from("outer")));
                assert_ne!(trace::current().as_ref(), Some(&started));
            });
            assert_eq!(request_id::current(), Some(Id::from("outer")));
            assert_eq!(trace::current().as_ref(), Some(&started));
            started
        });
        assert_eq!(
            trace.get(),
            Some(&started),
            "the started context handed back"
        );
        assert_eq!(request_id::current(), None);
        assert!(trace::current().is_none());
    }
}
