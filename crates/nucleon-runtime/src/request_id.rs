//! The current request's id, forwarded by outbound clients (`nucleon_dns::HttpClient`) as `x-request-id`.
//!
//! The HTTP front end (`nucleon-http`) runs each request's handler inside [`scope`]; any outbound call the
//! handler makes (on the same task) then carries the id, so one request can be followed
//! across services in the logs.
//!
//! ```
//! # async fn demo() {
//! use nucleon_runtime::request_id;
//!
//! assert_eq!(request_id::current(), None);
//! request_id::scope("req-42", async {
//!     let id = request_id::current().expect("in scope");
//!     assert_eq!(id.to_string(), "req-42");
//! })
//! .await;
//! # }
//! ```

use std::fmt;
use std::future::Future;

use bytes::Bytes;

use crate::scope::{CURRENT, enter};
use crate::trace::TaskTrace;

/// A request id: one a client sent (its bytes, shared with the request's header), or
/// one the server made from a per-worker prefix and a counter, `{prefix:016x}-{n:x}`
/// (`3fa2c0de9b41e577-1a`), written out only when it is shown. Cloning never
/// allocates. The prefix is random per worker start and 64 bits wide, so two starts
/// (of any worker, on any host) repeat each other's ids about once in 2^32 pairs of
/// starts, not once in 65,536 as with 32 bits.
///
/// ```
/// use nucleon_runtime::request_id::Id;
///
/// assert_eq!(Id::made(0xdead_beef_0bad_f00d, 26).to_string(), "deadbeef0badf00d-1a");
/// assert_eq!(Id::from("req-42").to_string(), "req-42");
/// Id::made(1, 2).with_str(|id| assert_eq!(id, "0000000000000001-2"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Id(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Made { prefix: u64, n: u64 },
    Given(Bytes),
}

/// The longest id the server makes: 16 hex digits, a dash, 16 hex digits.
const MADE_MAX: usize = 16 + 1 + 16;

impl Id {
    /// The server's own id number `n` under `prefix` (each worker has its own).
    pub const fn made(prefix: u64, n: u64) -> Self {
        Id(Repr::Made { prefix, n })
    }

    /// An id a client gave (`x-request-id`), as UTF-8 bytes shared with where they came
    /// from; text that is not UTF-8 is shown with replacement characters.
    pub fn given(bytes: Bytes) -> Self {
        Id(Repr::Given(bytes))
    }

    /// The client's bytes, for an id a client gave; `None` for one the server made.
    pub fn given_bytes(&self) -> Option<&Bytes> {
        match &self.0 {
            Repr::Given(bytes) => Some(bytes),
            Repr::Made { .. } => None,
        }
    }

    /// Calls `f` with the id's bytes (UTF-8 text for any id made by the server or
    /// given as a `&str`), without allocating.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.0 {
            Repr::Made { prefix, n } => {
                let mut buf = [0_u8; MADE_MAX];
                let len = write_made(*prefix, *n, &mut buf);
                f(&buf[..len])
            }
            Repr::Given(bytes) => f(bytes),
        }
    }

    /// Calls `f` with the id as text, without allocating (a made id is written into a
    /// buffer on the stack).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.0 {
            Repr::Made { prefix, n } => {
                let mut buf = [0_u8; MADE_MAX];
                let len = write_made(*prefix, *n, &mut buf);
                f(std::str::from_utf8(&buf[..len]).unwrap_or("-"))
            }
            Repr::Given(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => f(text),
                Err(_) => f(&String::from_utf8_lossy(bytes)),
            },
        }
    }
}

/// Writes `{prefix:016x}-{n:x}` into `buf`; returns its length.
fn write_made(prefix: u64, n: u64, buf: &mut [u8; MADE_MAX]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in buf[..16].iter_mut().enumerate() {
        *slot = HEX[(prefix >> (60 - 4 * i) & 0xf) as usize];
    }
    buf[16] = b'-';
    let digits = (64 - n.leading_zeros() as usize).div_ceil(4).max(1);
    for (i, slot) in buf[17..17 + digits].iter_mut().enumerate() {
        *slot = HEX[(n >> (4 * (digits - 1 - i)) & 0xf) as usize];
    }
    17 + digits
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|text| f.write_str(text))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|text| fmt::Debug::fmt(text, f))
    }
}

impl From<&'static str> for Id {
    fn from(text: &'static str) -> Self {
        Id::given(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for Id {
    fn from(text: String) -> Self {
        Id::given(Bytes::from(text))
    }
}

/// Runs `future` with `id` as the current request id.
pub fn scope<F: Future>(id: impl Into<Id>, future: F) -> impl Future<Output = F::Output> {
    Scoped {
        id: id.into(),
        future,
    }
}

pin_project_lite::pin_project! {
    /// A future run with a request id current ([`scope`]).
    struct Scoped<F> {
        id: Id,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(Some(this.id), None, || future.poll(cx))
    }
}

/// Runs `f` with `id` as the current request id: [`scope`] for synchronous code, such
/// as one `poll` of a future that keeps its id beside it.
pub fn sync_scope<R>(id: &Id, f: impl FnOnce() -> R) -> R {
    enter(Some(id), None, f)
}

/// Runs `f` with `id` as the current request id and `trace` as the current trace
/// context ([`crate::trace::sync_scope`]): both in one step, as the HTTP pipeline does
/// around each poll of a handler.
pub fn sync_scope_with_trace<R>(id: &Id, trace: &mut TaskTrace, f: impl FnOnce() -> R) -> R {
    enter(Some(id), Some(trace), f)
}

/// The current request id, inside [`scope`].
pub fn current() -> Option<Id> {
    CURRENT
        .try_with(|cell| cell.borrow().request_id.clone())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made ids read as `{prefix:016x}-{n:x}`, every digit, at every length of `n`.
    #[test]
    fn made_ids_are_prefix_dash_hex() {
        for bits in 0..=64 {
            let top = if bits == 64 {
                u64::MAX
            } else {
                (1_u64 << bits) - 1
            };
            for n in [
                top,
                top & 0x0123_4567_89ab_cdef,
                top & 0xfedc_ba98_7654_3210,
            ] {
                for prefix in [
                    0,
                    9,
                    0xa,
                    0xdead_beef,
                    0x0123_4567_89ab_cdef,
                    0xfedc_ba98_7654_3210,
                    u64::MAX,
                ] {
                    let expected = format!("{prefix:016x}-{n:x}");
                    Id::made(prefix, n).with_str(|text| assert_eq!(text, expected));
                }
            }
        }
    }

    #[test]
    fn made_ids_are_prefix_dash_counter_in_hex() {
        assert_eq!(
            Id::made(0xdead_beef_0bad_f00d, 1).to_string(),
            "deadbeef0badf00d-1"
        );
        assert_eq!(
            Id::made(0x0000_00ff, 0x1f).to_string(),
            "00000000000000ff-1f"
        );
        assert_eq!(
            Id::made(u64::MAX, u64::MAX).to_string(),
            "ffffffffffffffff-ffffffffffffffff"
        );
        assert_eq!(Id::made(1, 0).to_string(), "0000000000000001-0");
        assert_eq!(format!("{:?}", Id::made(7, 42)), "\"0000000000000007-2a\"");
        assert_eq!(Id::made(7, 42).given_bytes(), None);
    }

    #[test]
    fn given_ids_are_shown_as_given() {
        let id = Id::from(String::from("abc-123"));
        assert_eq!(id.to_string(), "abc-123");
        assert_eq!(id.given_bytes().map(|b| &b[..]), Some(&b"abc-123"[..]));
        assert_eq!(
            Id::given(Bytes::from_static(b"a\xffb")).to_string(),
            "a\u{fffd}b"
        );
    }
}
