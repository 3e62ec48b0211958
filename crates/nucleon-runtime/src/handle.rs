//! Handles: what an adapter's start gives the code that uses it.
//!
//! An adapter's [`Adapter::start`](crate::Adapter::start) returns a handle (a
//! database pool, a broker connection, a resolver): a cheap `Clone` value. The runtime
//! registers it for the adapter's scope:
//!
//! - a **per-worker** adapter's handle is its worker's own, found only on that worker
//!   (it may be `!Send`: an `Rc`, tokio IO bound to the worker's reactor);
//! - a **per-process** adapter's handle is `Send + Sync` and found everywhere: on every
//!   worker, on the process loop, and in the lifecycle hooks that run after it started.
//!
//! Code finds a handle by its type with [`get`] (handlers take it as an argument with the
//! HTTP crate's `Dep<T>`). Two instances of one type (two databases) are told apart by
//! the name the adapter gives ([`Adapter::instance`](crate::Adapter::instance)), found
//! with [`named`], or in a handler's arguments with a [`HandleName`] marker.
//!
//! ```
//! use nucleon_runtime::handle;
//!
//! #[derive(Clone)]
//! struct Pool(&'static str);
//!
//! // Outside a worker, and before any adapter registered one:
//! assert!(handle::get::<Pool>().is_none());
//! ```

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// Which handle: its type, and the instance's name (`None`: the type's unnamed one).
#[derive(Clone)]
pub struct HandleKey {
    type_id: TypeId,
    type_name: &'static str,
    name: Option<Cow<'static, str>>,
}

impl HandleKey {
    /// The key of `T`'s unnamed instance.
    pub fn of<T: 'static>() -> Self {
        Self {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            name: None,
        }
    }

    /// The key of `T`'s instance called `name`.
    pub fn named<T: 'static>(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::of::<T>()
        }
    }

    /// The same type with another instance name.
    pub(crate) fn with_name(mut self, name: Option<&str>) -> Self {
        self.name = name.map(|n| Cow::Owned(n.to_owned()));
        self
    }

    /// The handle type's name (`my_app::Pool`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The instance's name, when it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether this is the key of the unit type: an adapter whose start gives nothing.
    pub(crate) fn is_unit(&self) -> bool {
        self.type_id == TypeId::of::<()>()
    }
}

// The type's name follows from its id: compared and hashed, it would only cost (a
// handler's `Dep<T>` looks its handle up on every request).
impl PartialEq for HandleKey {
    fn eq(&self, other: &Self) -> bool {
        self.type_id == other.type_id && self.name == other.name
    }
}

impl Eq for HandleKey {}

impl std::hash::Hash for HandleKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.type_id.hash(state);
        self.name.hash(state);
    }
}

impl fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} named `{name}`", self.type_name),
            None => f.write_str(self.type_name),
        }
    }
}

/// Names one instance of a handle type, for handler arguments: the HTTP crate's
/// `Named<Pool, Reporting>` is the `Pool` that the adapter named `reporting` gave. Declare markers with
/// [`handle_name!`](crate::handle_name).
pub trait HandleName: 'static {
    /// The instance's name; `None` for [`Unnamed`].
    const NAME: Option<&'static str>;
}

/// The unnamed instance of a handle type (`Named<T, Unnamed>` is `Dep<T>`).
#[derive(Debug, Clone, Copy)]
pub enum Unnamed {}

impl HandleName for Unnamed {
    const NAME: Option<&'static str> = None;
}

/// Declares a [`HandleName`] marker: `handle_name!(pub Reporting = "reporting");`
///
/// ```
/// use nucleon_runtime::handle::HandleName;
///
/// nucleon_runtime::handle_name!(pub Reporting = "reporting");
/// assert_eq!(Reporting::NAME, Some("reporting"));
/// ```
#[macro_export]
macro_rules! handle_name {
    ($vis:vis $marker:ident = $name:literal) => {
        #[doc = concat!("The handle instance named `", $name, "`.")]
        #[derive(Debug, Clone, Copy)]
        $vis enum $marker {}

        impl $crate::handle::HandleName for $marker {
            const NAME: Option<&'static str> = Some($name);
        }
    };
}

/// An adapter's handle, by type, as a handler's argument: the worker's own for a
/// per-worker adapter (a pool bound to this worker's reactor), the process's for a
/// per-process one (a broker connection). The HTTP crate extracts it for routes, the
/// AMQP crate for consumers; both declare it as a requirement checked at start.
#[derive(Debug, Clone)]
pub struct Dep<T>(pub T);

impl<T> std::ops::Deref for Dep<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone + 'static> Dep<T> {
    /// The current thread's handle (see [`get`]); `None` when no adapter gives one.
    pub fn current() -> Option<Self> {
        get::<T>().map(Dep)
    }

    /// The requirement this argument declares.
    pub fn key() -> HandleKey {
        HandleKey::of::<T>()
    }
}

/// One named instance of an adapter's handle type, for two of a kind (two databases):
/// `Named<Pool, Reporting>` is the `Pool` given by the adapter whose
/// [`instance`](crate::Adapter::instance) is `reporting`. Declare the marker with
/// [`handle_name!`](crate::handle_name).
#[derive(Debug, Clone)]
pub struct Named<T, N> {
    handle: T,
    name: std::marker::PhantomData<fn() -> N>,
}

impl<T, N> Named<T, N> {
    /// The handle.
    pub fn into_inner(self) -> T {
        self.handle
    }
}

impl<T, N> std::ops::Deref for Named<T, N> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.handle
    }
}

impl<T: Clone + 'static, N: HandleName> Named<T, N> {
    /// The current thread's handle of this name; `None` when no adapter gives one.
    pub fn current() -> Option<Self> {
        let found = match N::NAME {
            Some(name) => named::<T>(name),
            None => get::<T>(),
        };
        found.map(|handle| Named {
            handle,
            name: std::marker::PhantomData,
        })
    }

    /// The requirement this argument declares.
    pub fn key() -> HandleKey {
        match N::NAME {
            Some(name) => HandleKey::named::<T>(name),
            None => HandleKey::of::<T>(),
        }
    }
}

/// Handles of the per-process adapters, frozen once they all started.
pub(crate) type ProcessHandles = HashMap<HandleKey, Arc<dyn Any + Send + Sync>>;

#[derive(Default)]
struct Registry {
    /// This worker's own handles.
    local: HashMap<HandleKey, Rc<dyn Any>>,
    /// The process's, shared by every thread of the runtime.
    process: Option<Arc<ProcessHandles>>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// The current thread's handle of type `T` (its unnamed instance): the worker's own,
/// else the process's. `None` when no adapter registered one where the caller runs.
pub fn get<T: Clone + 'static>() -> Option<T> {
    find(&HandleKey::of::<T>())
}

/// The current thread's handle of type `T` named `name`.
pub fn named<T: Clone + 'static>(name: &str) -> Option<T> {
    find(&HandleKey::of::<T>().with_name(Some(name)))
}

/// The handle of type `T` under `key` (whose type must be `T`).
pub(crate) fn find<T: Clone + 'static>(key: &HandleKey) -> Option<T> {
    REGISTRY.with(|registry| {
        let registry = registry.borrow();
        if let Some(found) = registry.local.get(key) {
            return found.downcast_ref::<T>().cloned();
        }
        registry
            .process
            .as_ref()?
            .get(key)
            .and_then(|found| found.downcast_ref::<T>().cloned())
    })
}

/// Registers `handle` as this thread's (a worker's per-worker handle).
pub(crate) fn register_local<T: Clone + 'static>(key: HandleKey, handle: T) {
    if key.is_unit() {
        return;
    }
    REGISTRY.with(|registry| {
        registry.borrow_mut().local.insert(key, Rc::new(handle));
    });
}

/// Makes the process's handles reachable from this thread.
pub(crate) fn set_process(handles: Arc<ProcessHandles>) {
    REGISTRY.with(|registry| registry.borrow_mut().process = Some(handles));
}

/// Forgets every handle of this thread (a worker's end, before a restart).
pub(crate) fn clear() {
    let old = REGISTRY.with(|registry| std::mem::take(&mut *registry.borrow_mut()));
    drop(old);
}

/// What needs a handle, and which: checked at start, so that a route asking for a handle
/// no adapter provides stops the start (and `app check`), not its first request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The handle needed.
    pub key: HandleKey,
    /// Who needs it (`GET /reports`), for the error message.
    pub needed_by: String,
}

/// Checks `requirements` against the handles `provided`; returns those missing.
pub fn missing<'a>(
    requirements: &'a [Requirement],
    provided: &[HandleKey],
) -> Vec<&'a Requirement> {
    requirements
        .iter()
        .filter(|r| !provided.contains(&r.key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Pool(&'static str);

    crate::handle_name!(Reporting = "reporting");

    #[test]
    fn handles_are_found_by_type_and_name_worker_first() {
        clear();
        register_local(HandleKey::of::<Pool>(), Pool("main"));
        let mut process = ProcessHandles::new();
        process.insert(
            HandleKey::named::<Pool>(Reporting::NAME.unwrap_or_default()),
            Arc::new(Pool("reporting")),
        );
        process.insert(HandleKey::of::<Pool>(), Arc::new(Pool("shadowed")));
        set_process(Arc::new(process));
        assert_eq!(get::<Pool>(), Some(Pool("main")));
        assert_eq!(named::<Pool>("reporting"), Some(Pool("reporting")));
        assert_eq!(named::<Pool>("other"), None);
        assert_eq!(get::<String>(), None);
        clear();
        assert_eq!(get::<Pool>(), None);
    }

    #[test]
    fn missing_requirements_are_named() {
        let needs = [Requirement {
            key: HandleKey::named::<Pool>("reporting"),
            needed_by: "GET /reports".into(),
        }];
        let gone = missing(&needs, &[HandleKey::of::<Pool>()]);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].key.to_string().ends_with("Pool named `reporting`"));
        assert!(missing(&needs, &[HandleKey::named::<Pool>("reporting")]).is_empty());
    }
}
