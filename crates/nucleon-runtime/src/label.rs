//! Task labels: what the watchdog calls a task, and how a task's label is kept so that
//! renaming it often (a connection naming the route of each request) costs no lock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::watchdog::lock;

/// A task's name in watchdog reports and logs (e.g. `GET /countries/{code}`).
///
/// Made from a `&'static str` without allocating, from a `String`/`Arc<str>`, or from a
/// [`StaticLabel`] (set on a task without a lock). Labels are equal when their texts
/// are, however they were made.
#[derive(Clone)]
pub struct TaskLabel(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
    Interned(StaticLabel),
}

impl TaskLabel {
    /// The label's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
            Repr::Interned(label) => label.as_str(),
        }
    }
}

impl PartialEq for TaskLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TaskLabel {}

impl std::hash::Hash for TaskLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<&'static str> for TaskLabel {
    fn from(s: &'static str) -> Self {
        Self(Repr::Static(s))
    }
}

impl From<String> for TaskLabel {
    fn from(s: String) -> Self {
        Self(Repr::Shared(s.into()))
    }
}

impl From<Arc<str>> for TaskLabel {
    fn from(s: Arc<str>) -> Self {
        Self(Repr::Shared(s))
    }
}

impl From<Cow<'static, str>> for TaskLabel {
    fn from(s: Cow<'static, str>) -> Self {
        match s {
            Cow::Borrowed(s) => s.into(),
            Cow::Owned(s) => s.into(),
        }
    }
}

impl From<StaticLabel> for TaskLabel {
    fn from(label: StaticLabel) -> Self {
        Self(Repr::Interned(label))
    }
}

impl fmt::Display for TaskLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TaskLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A label kept for the life of the process, under a number: setting it on a task
/// ([`LabelHandle::set`](crate::task::LabelHandle::set)) is one store, with no lock and
/// no reference count, where any other label takes the task's lock.
///
/// For labels from a bounded set, set often: the routes of an HTTP server, which a
/// connection's task takes on for each request. Each distinct text is kept once (the
/// same text interned twice gives the same label), and never freed: never intern text
/// that comes from a request.
///
/// ```
/// use nucleon_runtime::task::StaticLabel;
///
/// let route = StaticLabel::intern("GET /countries/{code}");
/// assert_eq!(route.as_str(), "GET /countries/{code}");
/// assert_eq!(route, StaticLabel::intern("GET /countries/{code}"));
/// ```
#[derive(Clone, Copy)]
pub struct StaticLabel {
    /// Its number in the interner, from 1 (0 stands for "no interned label").
    number: u32,
    text: &'static str,
}

impl StaticLabel {
    /// The label for `text`: the one already interned, or a new one.
    ///
    /// # Panics
    /// Past 4 billion distinct labels.
    pub fn intern(text: &str) -> Self {
        let mut interner = lock(interner());
        if let Some(&number) = interner.numbers.get(text) {
            return Self {
                number,
                text: interner.texts[number as usize - 1],
            };
        }
        let text: &'static str = Box::leak(text.into());
        interner.texts.push(text);
        let number = u32::try_from(interner.texts.len()).expect("fewer than 2^32 labels");
        interner.numbers.insert(text, number);
        Self { number, text }
    }

    /// The label's text.
    pub fn as_str(&self) -> &'static str {
        self.text
    }

    fn from_number(number: u32) -> Option<Self> {
        let index = (number as usize).checked_sub(1)?;
        let text = *lock(interner()).texts.get(index)?;
        Some(Self { number, text })
    }
}

impl PartialEq for StaticLabel {
    fn eq(&self, other: &Self) -> bool {
        self.number == other.number
    }
}

impl Eq for StaticLabel {}

impl std::hash::Hash for StaticLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.number.hash(state);
    }
}

impl fmt::Debug for StaticLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.text, f)
    }
}

impl fmt::Display for StaticLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

#[derive(Default)]
struct Interner {
    texts: Vec<&'static str>,
    numbers: HashMap<&'static str, u32>,
}

fn interner() -> &'static Mutex<Interner> {
    static INTERNER: OnceLock<Mutex<Interner>> = OnceLock::new();
    INTERNER.get_or_init(Mutex::default)
}

/// A task's label, written by its worker, read by the watchdog's monitor thread: an
/// interned label by its number (one atomic store), any other behind a lock.
#[derive(Debug)]
pub(crate) struct LabelCell {
    /// The interned label's number; 0 when the label is `other`'s.
    interned: AtomicU32,
    /// The interned label before the last interned one (0: none).
    previous: AtomicU32,
    other: Mutex<TaskLabel>,
    /// The label the task was spawned with.
    initial: TaskLabel,
}

impl LabelCell {
    pub(crate) fn new(label: TaskLabel) -> Self {
        let cell = Self {
            interned: AtomicU32::new(0),
            previous: AtomicU32::new(0),
            other: Mutex::new(TaskLabel::from("")),
            initial: label.clone(),
        };
        cell.set(label);
        cell
    }

    /// Renames the task.
    #[inline]
    pub(crate) fn set(&self, label: TaskLabel) {
        match label.0 {
            // The monitor may read the old label once more: harmless in a report. Only
            // the task's own thread sets its label, so a load and two stores will do.
            Repr::Interned(label) => {
                let before = self.interned.load(Ordering::Relaxed);
                self.interned.store(label.number, Ordering::Release);
                self.previous.store(before, Ordering::Relaxed);
            }
            _ => {
                *lock(&self.other) = label;
                self.interned.store(0, Ordering::Release);
            }
        }
    }

    /// The label to report a poll that has just ended under: the label now, unless
    /// the task took its spawn label back during the poll (a connection naming the
    /// route of a request, then itself again once the answer is ready: the blocking
    /// was the route's), in which case the label it had before.
    pub(crate) fn of_last_poll(&self) -> TaskLabel {
        let now = self.get();
        if now == self.initial
            && let Some(before) = StaticLabel::from_number(self.previous.load(Ordering::Relaxed))
            && before.as_str() != self.initial.as_str()
        {
            return before.into();
        }
        now
    }

    /// The task's label now.
    pub(crate) fn get(&self) -> TaskLabel {
        match StaticLabel::from_number(self.interned.load(Ordering::Acquire)) {
            Some(label) => label.into(),
            None => lock(&self.other).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_the_same_text_gives_the_same_label() {
        let a = StaticLabel::intern("GET /label-test/{a}");
        let b = StaticLabel::intern(&String::from("GET /label-test/{a}"));
        let c = StaticLabel::intern("POST /label-test/{a}");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(b.as_str(), "GET /label-test/{a}");
        assert_eq!(TaskLabel::from(c).as_str(), "POST /label-test/{a}");
    }

    #[test]
    fn a_cell_gives_the_label_last_set_of_either_kind() {
        let cell = LabelCell::new("http connection".into());
        assert_eq!(cell.get().as_str(), "http connection");
        let route = StaticLabel::intern("GET /cell-test");
        cell.set(route.into());
        assert_eq!(cell.get().as_str(), "GET /cell-test");
        cell.set(String::from("renamed").into());
        assert_eq!(cell.get().as_str(), "renamed");
        cell.set(route.into());
        assert_eq!(cell.get().as_str(), "GET /cell-test");
        cell.set("back".into());
        assert_eq!(cell.get().as_str(), "back");
    }
}
