//! Per-worker state, borrowed only inside synchronous closures.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// State owned by one worker, shared by every task on that worker without locks.
///
/// Each worker builds its own value (usually in its setup closure, see
/// [`crate::WorkerSetup::local_state`]). Tasks on the same worker see the same value; tasks
/// on other workers see their own. Because `LocalState` is `!Send`, it can never reach
/// another thread.
///
/// The value is only reachable inside a synchronous closure ([`with`](Self::with),
/// [`with_mut`](Self::with_mut)), so a borrow cannot be held across an `.await`: the
/// state can never be observed half-updated by another task on the same worker. This is
/// the rule the original framework could only state in prose ("never leave the memory
/// space inconsistent while blocking IO is performed"); here the compiler enforces it.
///
/// ```
/// use nucleon_runtime::LocalState;
///
/// let hits = LocalState::new(0_u64);
/// hits.with_mut(|n| *n += 1);
/// assert_eq!(hits.with(|n| *n), 1);
/// ```
///
/// Holding the borrow across an await does not compile:
///
/// ```compile_fail
/// use nucleon_runtime::LocalState;
///
/// async fn handler(state: LocalState<Vec<u8>>) {
///     let borrowed: &Vec<u8> = state.with(|v| v); // the reference cannot escape the closure
///     tokio::task::yield_now().await;
///     let _ = borrowed.len();
/// }
/// ```
///
/// Nor can the closure itself await:
///
/// ```compile_fail
/// use nucleon_runtime::LocalState;
///
/// async fn handler(state: LocalState<u64>) {
///     state.with_mut(|n| {
///         tokio::task::yield_now().await;
///         *n += 1;
///     });
/// }
/// ```
///
/// And it cannot be sent to another thread:
///
/// ```compile_fail
/// use nucleon_runtime::LocalState;
///
/// let state = LocalState::new(0_u64);
/// std::thread::spawn(move || state.with(|n| *n));
/// ```
pub struct LocalState<T> {
    cell: Rc<RefCell<T>>,
}

impl<T> LocalState<T> {
    /// Wraps a value as worker-local state.
    pub fn new(value: T) -> Self {
        Self {
            cell: Rc::new(RefCell::new(value)),
        }
    }

    /// Reads the state inside `f`.
    ///
    /// # Panics
    /// If called from inside a [`with_mut`](Self::with_mut) closure on the same state.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.cell.borrow())
    }

    /// Changes the state inside `f`.
    ///
    /// # Panics
    /// If called from inside another `with`/`with_mut` closure on the same state.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.cell.borrow_mut())
    }

    /// Replaces the state, returning the old value.
    pub fn replace(&self, value: T) -> T {
        self.cell.replace(value)
    }
}

impl<T: 'static> LocalState<T> {
    /// The current worker's state of type `T`, registered with
    /// [`crate::WorkerSetup::local_state`] or [`LocalState::register`].
    ///
    /// `None` outside a worker or when no state of that type was registered.
    pub fn current() -> Option<Self> {
        LOCALS.with(|locals| {
            locals
                .borrow()
                .get(&TypeId::of::<T>())
                .and_then(|any| any.downcast_ref::<Self>())
                .cloned()
        })
    }

    /// Registers this state as the current thread's state of type `T`, replacing any
    /// earlier one, so [`LocalState::current`] finds it.
    pub fn register(&self) {
        let any: Rc<dyn Any> = Rc::new(self.clone());
        LOCALS.with(|locals| locals.borrow_mut().insert(TypeId::of::<T>(), any));
    }
}

impl<T> Clone for LocalState<T> {
    fn clone(&self) -> Self {
        Self {
            cell: Rc::clone(&self.cell),
        }
    }
}

impl<T: Default> Default for LocalState<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for LocalState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cell.try_borrow() {
            Ok(value) => f.debug_tuple("LocalState").field(&*value).finish(),
            Err(_) => f.write_str("LocalState(<borrowed>)"),
        }
    }
}

thread_local! {
    static LOCALS: RefCell<Registered> = RefCell::new(HashMap::new());
}

/// A thread's registered states, by type.
pub(crate) type Registered = HashMap<TypeId, Rc<dyn Any>>;

/// Makes `states` the current thread's registered states; returns those it replaces.
pub(crate) fn replace_registered(states: Registered) -> Registered {
    LOCALS.with(|locals| std::mem::replace(&mut *locals.borrow_mut(), states))
}

/// Drops every registered local state of the current thread (a worker being rebuilt).
pub(crate) fn clear_registered() {
    let old = LOCALS.with(|locals| std::mem::take(&mut *locals.borrow_mut()));
    drop(old);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_state_is_found_by_type_and_shared() {
        let counter = LocalState::new(5_u32);
        counter.register();
        let found = LocalState::<u32>::current().expect("registered");
        found.with_mut(|n| *n += 1);
        assert_eq!(counter.with(|n| *n), 6);
        assert!(LocalState::<String>::current().is_none());
        clear_registered();
        assert!(LocalState::<u32>::current().is_none());
    }
}
