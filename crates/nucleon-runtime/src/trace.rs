//! The current trace context: W3C Trace Context (level 1) `traceparent` and
//! `tracestate`, carried beside the request id so that one request can be followed
//! across services and the back-end workers it reaches over AMQP.
//!
//! A [`TraceContext`] is one service hop's place in a distributed trace: the trace's
//! id, this hop's own span id, the caller's span id (its parent), the flags and the
//! caller's `tracestate`. The HTTP front end (`nucleon-http`) and the AMQP consumers
//! (`nucleon-amqp`) run each request and each delivery inside a scope ([`scope`],
//! [`sync_scope`]) holding the context received with it, as a child of the sender's
//! span ([`TraceContext::received`]); outbound clients (`nucleon_dns::HttpClient`) and
//! publishers (`nucleon_amqp::Broker`) forward [`current`] as `traceparent` and
//! `tracestate`.
//!
//! When a request came without a (valid) `traceparent`, its scope holds no context, and
//! none is made until something asks for one to forward it: [`current`] then starts a
//! trace (random ids, sampled flag off), keeps it in the scope, and every later call in
//! that request gets the same one. Started for every request, a context would cost
//! about 380 instructions more per request (random ids, a box: 5 % of a small JSON
//! request's pipeline, counted in-process under cachegrind); started lazily, a request
//! that sends no `traceparent` and forwards nothing pays one look at its header names
//! (the request id and the trace context share one slot, swapped in once per poll):
//! about 25 instructions of 7,600, and no allocation (`benches/http-bench/pipeline.sh`).
//!
//! Scopes are per task: a task spawned from a handler (`nucleon_runtime::spawn`) or a
//! closure offloaded to a thread does not inherit the context; give it one with
//! [`scope`] (`trace::scope(trace::current(), task)`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use nucleon_runtime::trace::{self, TraceContext};
//!
//! // What a caller sent (as `traceparent`, `tracestate`):
//! let received = TraceContext::received(
//!     b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//!     Some(b"congo=t61rcWkgMzE".as_slice()),
//! )
//! .expect("a valid traceparent");
//!
//! trace::scope(received, async {
//!     let here = trace::current().expect("in scope");
//!     assert_eq!(here.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//!     assert_eq!(here.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
//!     assert!(here.is_sampled());
//!     // What an outbound call sends: this hop's span as the next one's parent.
//!     let header = here.traceparent();
//!     assert_eq!(&header.as_str()[..36], "00-4bf92f3577b34da6a3ce929d0e0e4736-");
//!     assert_eq!(&header.as_str()[36..52], here.span_id().to_hex().as_str());
//!     assert_eq!(here.tracestate(), Some("congo=t61rcWkgMzE"));
//! })
//! .await;
//!
//! // No context received: one is started when first asked for, then kept.
//! trace::scope(None, async {
//!     assert!(trace::peek().is_none());
//!     let started = trace::current().expect("in scope");
//!     assert_eq!(started.parent_id(), None);
//!     assert_eq!(trace::current().unwrap().trace_id(), started.trace_id());
//! })
//! .await;
//!
//! // Outside any scope there is none, and none is started.
//! assert!(trace::current().is_none());
//! # });
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::scope::{CURRENT, Trace as Slot};

/// The `traceparent` header's name (HTTP header, AMQP message header).
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header's name (HTTP header, AMQP message header).
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` kept, in characters: the 512 the specification asks every
/// vendor to propagate. A longer one loses whole members (see [`TraceState::parse`]).
pub const TRACESTATE_MAX_LEN: usize = 512;
/// The most members a `tracestate` has, per the specification.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// The length of a version 00 `traceparent`, and the least of any version.
const TRACEPARENT_LEN: usize = 55;
/// Members longer than this go first when a `tracestate` must be cut (the spec's rule).
const TRACESTATE_LONG_MEMBER: usize = 128;

/// Why a `traceparent` or `tracestate` was not taken. The specification's answer to
/// any of them is to ignore the header (and, for `traceparent`, to start a new trace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceContextError {
    /// The `traceparent` does not start with two lowercase hex digits and a dash.
    #[error("traceparent: the version is not two lowercase hex digits followed by `-`")]
    Version,
    /// Version `ff`, which the specification forbids.
    #[error("traceparent: version ff is forbidden")]
    ForbiddenVersion,
    /// A version 00 `traceparent` that is not 55 characters long, or one of a later
    /// version shorter than that.
    #[error("traceparent: {len} characters, where version {version:02x} needs {needs}")]
    Length {
        /// Its length.
        len: usize,
        /// Its version.
        version: u8,
        /// What that version needs (`55`, `55 or more`).
        needs: &'static str,
    },
    /// A field that is not lowercase hex of its length, followed by a dash (or, for the
    /// flags, the end).
    #[error("traceparent: the {0} is not lowercase hex of its length followed by `-` or the end")]
    Field(&'static str),
    /// An all-zero trace id or parent id.
    #[error("traceparent: the {0} is all zeroes")]
    Zero(&'static str),
    /// A `tracestate` member that is not `key=value` as the specification spells them.
    #[error("tracestate: member {index} is not a valid `key=value`: {reason}")]
    Member {
        /// Its position (from 0, empty members counted).
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `tracestate` key given twice.
    #[error("tracestate: the key `{0}` appears twice")]
    DuplicateKey(String),
}

/// A trace id: 16 bytes, not all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// A span id (a `traceparent`'s parent id): 8 bytes, not all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id of these bytes; `None` for all zeroes (invalid).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (u128::from_ne_bytes(bytes) != 0).then_some(Self(bytes))
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A random trace id, from the thread's generator.
    pub fn random() -> Self {
        loop {
            let bytes = random_u128().to_be_bytes();
            if let Some(id) = Self::from_bytes(bytes) {
                return id;
            }
        }
    }

    /// Its 32 lowercase hex digits, on the stack.
    pub fn to_hex(self) -> Hex<32> {
        Hex::of(&self.0)
    }
}

impl SpanId {
    /// The id of these bytes; `None` for all zeroes (invalid).
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (u64::from_ne_bytes(bytes) != 0).then_some(Self(bytes))
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// A random span id, from the thread's generator.
    pub fn random() -> Self {
        loop {
            if let Some(id) = Self::from_bytes(random_u64().to_be_bytes()) {
                return id;
            }
        }
    }

    /// Its 16 lowercase hex digits, on the stack.
    pub fn to_hex(self) -> Hex<16> {
        Hex::of(&self.0)
    }
}

macro_rules! hex_display {
    ($($id:ty),*) => {$(
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.to_hex().as_str())
            }
        }

        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.to_hex().as_str())
            }
        }
    )*};
}

hex_display!(TraceId, SpanId);

/// An id written as `N` lowercase hex digits in a buffer on the stack: text for a log
/// field or a header without an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    fn of(bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0_u8; N];
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        Self(out)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A `traceparent` header value (version 00), written on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Traceparent([u8; TRACEPARENT_LEN]);

impl Traceparent {
    /// The header's text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A `tracestate` value, checked against the specification's grammar and limits, kept
/// as given when within them. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceState(Arc<str>);

impl TraceState {
    /// Parses a `tracestate` value (several header fields joined with `,`, as RFC 9110
    /// combines them). `Ok(None)` for an empty one (only empty members), which the
    /// specification accepts and asks not to send on.
    ///
    /// Within the limits ([`TRACESTATE_MAX_MEMBERS`] members, [`TRACESTATE_MAX_LEN`]
    /// characters), the value is kept exactly as given. Past them, whole members are
    /// dropped as the specification says (members longer than 128 characters first,
    /// then from the end) and the rest joined by `,`.
    ///
    /// # Errors
    /// [`TraceContextError::Member`] for a member that is not `key=value` as the
    /// specification spells them (a key of lowercase letters, digits, `_-*/@`,
    /// starting with a letter or digit, up to 256 characters; a value of up to 256
    /// printable ASCII characters but `,` and `=`, not ending in a space);
    /// [`TraceContextError::DuplicateKey`].
    ///
    /// ```
    /// use nucleon_runtime::trace::TraceState;
    ///
    /// let state = TraceState::parse(b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE").unwrap();
    /// assert_eq!(state.unwrap().as_str(), "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE");
    /// assert!(TraceState::parse(b" , ").unwrap().is_none());
    /// assert!(TraceState::parse(b"Rojo=1").is_err());
    /// ```
    pub fn parse(value: &[u8]) -> Result<Option<Self>, TraceContextError> {
        let mut members: Vec<&str> = Vec::new();
        for (index, raw) in value.split(|&b| b == b',').enumerate() {
            let member = trim_ows(raw);
            if member.is_empty() {
                continue;
            }
            let key = check_member(member)
                .map_err(|reason| TraceContextError::Member { index, reason })?;
            if members
                .iter()
                .any(|m| m.split_once('=').is_some_and(|(k, _)| k == key))
            {
                return Err(TraceContextError::DuplicateKey(key.to_owned()));
            }
            // Checked above: printable ASCII only.
            members.push(std::str::from_utf8(member).unwrap_or_default());
        }
        if members.is_empty() {
            return Ok(None);
        }
        if members.len() <= TRACESTATE_MAX_MEMBERS && value.len() <= TRACESTATE_MAX_LEN {
            let text = std::str::from_utf8(value).unwrap_or_default();
            return Ok(Some(Self(Arc::from(text))));
        }
        let joined_len = |kept: &[&str]| {
            kept.iter().map(|m| m.len()).sum::<usize>() + kept.len().saturating_sub(1)
        };
        while members.len() > TRACESTATE_MAX_MEMBERS || joined_len(&members) > TRACESTATE_MAX_LEN {
            match members
                .iter()
                .rposition(|m| m.len() > TRACESTATE_LONG_MEMBER)
            {
                Some(long) => members.remove(long),
                None => members.pop().unwrap_or_default(),
            };
        }
        if members.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self(Arc::from(members.join(",")))))
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The key of `member` (trimmed, not empty), or why it is not a valid member.
fn check_member(member: &[u8]) -> Result<&str, &'static str> {
    let eq = member.iter().position(|&b| b == b'=').ok_or("no `=`")?;
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    match key.first() {
        None => return Err("an empty key"),
        Some(first) if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => {
            return Err("a key must start with a lowercase letter or a digit");
        }
        Some(_) => {}
    }
    if key.len() > 256 {
        return Err("a key longer than 256 characters");
    }
    let key_char = |b: &u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
    };
    if !key.iter().all(key_char) {
        return Err("a key has characters other than a-z, 0-9, `_-*/@`");
    }
    if value.is_empty() {
        return Err("an empty value");
    }
    if value.len() > 256 {
        return Err("a value longer than 256 characters");
    }
    if !value
        .iter()
        .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
    {
        return Err("a value has characters other than printable ASCII but `,` and `=`");
    }
    if value.last() == Some(&b' ') {
        return Err("a value ends with a space");
    }
    // Only ASCII was accepted above.
    Ok(std::str::from_utf8(key).unwrap_or_default())
}

/// `bytes` without the optional white space (spaces, tabs) around it.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The trace flags; version 00 defines one, `sampled`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The `sampled` flag: the caller may have recorded trace data.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);

    /// The flags of this byte, but those version 00 does not define (the specification
    /// has them set to zero).
    pub const fn new(bits: u8) -> Self {
        Self(bits & Self::SAMPLED.0)
    }

    /// Whether `sampled` is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }

    /// The byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

/// One service hop's place in a distributed trace: the trace id, this hop's span id,
/// its parent (the caller's span, when the context was received), the flags and the
/// caller's `tracestate`. Cloning copies a few words (and shares the `tracestate`).
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    flags: TraceFlags,
    state: Option<TraceState>,
}

impl TraceContext {
    /// A new trace, this hop its root: random trace and span ids, the `sampled` flag
    /// off (nothing here records the trace, so none is claimed), no `tracestate`.
    pub fn start() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            flags: TraceFlags::default(),
            state: None,
        }
    }

    /// A context from its parts: for an exporter that gives a hop its ids
    /// ([`set_span_binder`]), or a test that needs given ones.
    ///
    /// ```
    /// use nucleon_runtime::trace::{SpanId, TraceContext, TraceFlags, TraceId};
    ///
    /// let trace_id = TraceId::from_bytes([7; 16]).unwrap();
    /// let (span, parent) = (SpanId::from_bytes([1; 8]).unwrap(), SpanId::from_bytes([2; 8]).unwrap());
    /// let here = TraceContext::from_parts(trace_id, span, Some(parent), TraceFlags::SAMPLED, None);
    /// assert_eq!(here.traceparent().as_str(), "00-07070707070707070707070707070707-0101010101010101-01");
    /// assert_eq!(here.parent_id(), Some(parent));
    /// ```
    pub fn from_parts(
        trace_id: TraceId,
        span_id: SpanId,
        parent_id: Option<SpanId>,
        flags: TraceFlags,
        state: Option<TraceState>,
    ) -> Self {
        Self {
            trace_id,
            span_id,
            parent_id,
            flags,
            state,
        }
    }

    /// The context a caller sent, as it sent it: its trace id, its span id (the
    /// header's parent id) and its flags, with `tracestate` if it is valid (an invalid
    /// one is dropped: the specification does not let it spoil the `traceparent`).
    ///
    /// A version 00 `traceparent` must be exactly 55 characters. A later version is
    /// read as the specification's forward-compatibility rule says: at least 55
    /// characters, the first three fields where version 00 has them, then a dash or
    /// the end; what follows is not looked at.
    ///
    /// # Errors
    /// [`TraceContextError`] for a `traceparent` that is not valid.
    ///
    /// ```
    /// use nucleon_runtime::trace::TraceContext;
    ///
    /// let sent = TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", None)?;
    /// assert_eq!(sent.span_id().to_string(), "00f067aa0ba902b7");
    /// assert!(!sent.is_sampled());
    /// // A later version, with a field this one does not know.
    /// let later = TraceContext::parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next", None)?;
    /// assert_eq!(later.traceparent().as_str(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert!(TraceContext::parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_err());
    /// # Ok::<(), nucleon_runtime::trace::TraceContextError>(())
    /// ```
    pub fn parse(traceparent: &[u8], tracestate: Option<&[u8]>) -> Result<Self, TraceContextError> {
        let value = trim_ows(traceparent);
        if value.len() < 3 || value[2] != b'-' {
            return Err(TraceContextError::Version);
        }
        let version = hex_byte(&value[..2]).ok_or(TraceContextError::Version)?;
        if version == 0xff {
            return Err(TraceContextError::ForbiddenVersion);
        }
        let fits = if version == 0 {
            value.len() == TRACEPARENT_LEN
        } else {
            value.len() >= TRACEPARENT_LEN
        };
        if !fits {
            return Err(TraceContextError::Length {
                len: value.len(),
                version,
                needs: if version == 0 { "55" } else { "55 or more" },
            });
        }
        let mut trace_id = [0_u8; 16];
        if !hex_into(&value[3..35], &mut trace_id) || value[35] != b'-' {
            return Err(TraceContextError::Field("trace-id"));
        }
        let mut parent_id = [0_u8; 8];
        if !hex_into(&value[36..52], &mut parent_id) || value[52] != b'-' {
            return Err(TraceContextError::Field("parent-id"));
        }
        let flags = hex_byte(&value[53..55])
            .filter(|_| value.len() == TRACEPARENT_LEN || value[TRACEPARENT_LEN] == b'-')
            .ok_or(TraceContextError::Field("trace-flags"))?;
        Ok(Self {
            trace_id: TraceId::from_bytes(trace_id).ok_or(TraceContextError::Zero("trace-id"))?,
            span_id: SpanId::from_bytes(parent_id).ok_or(TraceContextError::Zero("parent-id"))?,
            parent_id: None,
            flags: TraceFlags::new(flags),
            state: tracestate.and_then(|state| TraceState::parse(state).ok().flatten()),
        })
    }

    /// The context of this hop for what a caller sent: [`TraceContext::parse`], then
    /// [`TraceContext::child`]. `None` when the `traceparent` is not valid (the
    /// specification's answer: ignore it).
    pub fn received(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<Self> {
        Self::parse(traceparent, tracestate)
            .ok()
            .map(|sent| sent.child())
    }

    /// A new span in this trace, under this one: a new span id, this span as its
    /// parent, the same flags and `tracestate`.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(self.span_id),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// The trace's id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This hop's span id: the parent id of what it sends on.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The caller's span id, for a context received (`None` for a trace started here,
    /// or a context as parsed).
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The flags.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// The `tracestate` received, to send on unchanged.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_ref().map(TraceState::as_str)
    }

    /// The `tracestate` received, as its type (shared, not copied).
    pub fn trace_state(&self) -> Option<&TraceState> {
        self.state.as_ref()
    }

    /// The `traceparent` this hop sends on (version 00, this span as the parent).
    pub fn traceparent(&self) -> Traceparent {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id.to_hex().0);
        out[36..52].copy_from_slice(&self.span_id.to_hex().0);
        out[53..55].copy_from_slice(&Hex::<2>::of(&[self.flags.0]).0);
        Traceparent(out)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id)
            .field("span_id", &self.span_id)
            .field("parent_id", &self.parent_id)
            .field("flags", &self.flags)
            .field("tracestate", &self.state)
            .finish()
    }
}

/// Two lowercase hex digits as a byte.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let mut byte = [0_u8];
    hex_into(digits, &mut byte).then_some(byte[0])
}

/// Reads lowercase hex `digits` (twice `out`'s length) into `out`; `false` if one is
/// not a lowercase hex digit (the specification refuses uppercase). By table, without
/// a branch per digit: a traced request reads 50 of them.
fn hex_into(digits: &[u8], out: &mut [u8]) -> bool {
    if digits.len() != out.len() * 2 {
        return false;
    }
    let mut invalid = 0_u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    invalid & 0xf0 == 0
}

/// Each byte's value as a lowercase hex digit, or `0xff`.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

thread_local! {
    /// The thread's generator of ids: wyrand (fastrand's), seeded once per thread
    /// from the standard library's per-thread random keys (drawn from the operating
    /// system), not from the clock as fastrand's own would be: ids of two hosts must
    /// not depend on when their threads started.
    static RNG: Cell<Option<fastrand::Rng>> = const { Cell::new(None) };
}

fn random_u64() -> u64 {
    RNG.with(|cell| {
        let mut rng = cell.take().unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut seed = std::hash::RandomState::new().build_hasher();
            seed.write_u64(0x7261_6365_6964_7321);
            fastrand::Rng::with_seed(seed.finish())
        });
        let n = rng.u64(..);
        cell.set(Some(rng));
        n
    })
}

fn random_u128() -> u128 {
    u128::from(random_u64()) << 64 | u128::from(random_u64())
}

/// A request's or delivery's trace context as it is carried between polls: the one
/// received, the one started when something first asked for one, or none yet.
/// Pointer-sized, so that it costs nothing to move with its request; a context is
/// boxed only when there is one.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct TaskTrace(pub(crate) Option<Box<TraceContext>>);

impl TaskTrace {
    /// None yet: one is started if something asks for it ([`current`]).
    pub const fn new() -> Self {
        Self(None)
    }

    /// The context held, if any (none received and none started yet: `None`).
    pub fn get(&self) -> Option<&TraceContext> {
        self.0.as_deref()
    }

    /// The context held, taken out (none left).
    pub fn take(&mut self) -> Option<TraceContext> {
        self.0.take().map(|context| *context)
    }
}

impl From<TraceContext> for TaskTrace {
    fn from(context: TraceContext) -> Self {
        Self(Some(Box::new(context)))
    }
}

impl From<Option<TraceContext>> for TaskTrace {
    fn from(context: Option<TraceContext>) -> Self {
        Self(context.map(Box::new))
    }
}

impl fmt::Debug for TaskTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Runs `f` with `trace` as the current trace context: [`scope`] for synchronous code,
/// such as one `poll` of a future that keeps its context beside it. A context started
/// inside `f` ([`current`]) is kept in `trace` for the next call.
pub fn sync_scope<R>(trace: &mut TaskTrace, f: impl FnOnce() -> R) -> R {
    crate::scope::enter(None, Some(trace), f)
}

pin_project_lite::pin_project! {
    /// A future run with a trace context current ([`scope`]).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        trace: TaskTrace,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        sync_scope(this.trace, || future.poll(cx))
    }
}

/// Runs `future` with `trace` as its trace context: a context (received, or
/// started), or `None` for one started only if something asks for it.
pub fn scope<F: Future>(trace: impl Into<TaskTrace>, future: F) -> Scoped<F> {
    Scoped {
        trace: trace.into(),
        future,
    }
}

/// The current trace context, inside a scope; in a scope that has none yet, a new
/// trace is started ([`TraceContext::start`]) and kept for the rest of the scope.
/// `None` outside any scope (a background task: nothing is started for it).
pub fn current() -> Option<TraceContext> {
    CURRENT
        .try_with(|cell| match &mut cell.borrow_mut().trace {
            Slot::Outside => None,
            Slot::Scope(Some(context)) => Some((**context).clone()),
            Slot::Scope(none) => Some((**none.insert(Box::new(TraceContext::start()))).clone()),
        })
        .ok()
        .flatten()
}

/// The current trace context if there is one, without starting one (for logs: a
/// trace id only where a trace was received or already forwarded).
pub fn peek() -> Option<TraceContext> {
    CURRENT
        .try_with(|cell| match &cell.borrow().trace {
            Slot::Scope(Some(context)) => Some((**context).clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Ties a hop's tracing span to an exporter's span (see [`set_span_binder`]): the
/// umbrella's `otel` feature installs one, so that the span it exports for a request or
/// a delivery and the `traceparent` the hop forwards name the same span.
#[derive(Clone, Copy, Debug)]
pub struct SpanBinder {
    /// Given the span of a request or a delivery (`request`, `delivery`, made only
    /// when something records them) and the context the hop received, gives the
    /// context the hop runs in, with the ids the exporter gave the span.
    pub bind: fn(&tracing::Span, Option<TraceContext>) -> Option<TraceContext>,
    /// Names the exported span once its name is known (a request's route, after
    /// routing), when the exporter has already started it.
    pub rename: fn(&tracing::Span, &'static str),
}

static SPAN_BINDER: std::sync::OnceLock<SpanBinder> = std::sync::OnceLock::new();

/// Installs the process's [`SpanBinder`], once. Without one, a hop's context keeps the
/// span id it made itself. `Err` with the binder given when one is already installed.
pub fn set_span_binder(binder: SpanBinder) -> Result<(), SpanBinder> {
    SPAN_BINDER.set(binder)
}

/// The context a hop runs in, given its span and what it received: the installed
/// [`SpanBinder`]'s answer, or `received` itself when none is installed or the span is
/// disabled. The HTTP front end and the AMQP consumers call it for each request and
/// delivery whose span is made. A trace the binder started is recorded as the span's
/// `trace_id` field (a span that declares one has it already for a trace received).
#[inline]
pub fn bind_span(span: &tracing::Span, received: Option<TraceContext>) -> Option<TraceContext> {
    match SPAN_BINDER.get() {
        Some(binder) if !span.is_disabled() => {
            let received_id = received.as_ref().map(TraceContext::trace_id);
            let bound = (binder.bind)(span, received);
            if let Some(bound) = &bound
                && received_id != Some(bound.trace_id())
            {
                span.record("trace_id", tracing::field::display(bound.trace_id()));
            }
            bound
        }
        _ => received,
    }
}

/// Names a hop's exported span ([`SpanBinder::rename`]); nothing when no binder is
/// installed.
#[inline]
pub fn rename_span(span: &tracing::Span, name: &'static str) {
    if let Some(binder) = SPAN_BINDER.get()
        && !span.is_disabled()
    {
        (binder.rename)(span, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn err(traceparent: &[u8]) -> TraceContextError {
        TraceContext::parse(traceparent, None).expect_err(&String::from_utf8_lossy(traceparent))
    }

    #[test]
    fn a_valid_traceparent_is_read_and_written_back() {
        let sent = TraceContext::parse(VALID, None).unwrap();
        assert_eq!(
            sent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sent.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(sent.parent_id(), None);
        assert!(sent.is_sampled());
        assert_eq!(sent.traceparent().as_bytes(), VALID);
        assert_eq!(sent.tracestate(), None);
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::parse(unsampled, None).unwrap().is_sampled());
        // Optional white space around the value, as a header may carry it.
        assert!(
            TraceContext::parse(
                b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t",
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn flags_it_does_not_know_are_not_sent_on() {
        let sent = TraceContext::parse(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
            None,
        )
        .unwrap();
        assert!(sent.is_sampled());
        assert_eq!(sent.flags().bits(), 1);
        assert!(sent.traceparent().as_str().ends_with("-01"));
        let other = TraceContext::parse(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe",
            None,
        )
        .unwrap();
        assert!(other.traceparent().as_str().ends_with("-00"));
    }

    #[test]
    fn invalid_traceparents_are_refused_with_their_reason() {
        use TraceContextError as E;
        let zero_trace = b"00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert_eq!(err(zero_trace), E::Zero("trace-id"));
        assert_eq!(err(zero_parent), E::Zero("parent-id"));
        // Uppercase hex is not hex to the specification.
        assert_eq!(
            err(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            E::Field("trace-id")
        );
        assert_eq!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
            E::Field("parent-id")
        );
        assert_eq!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"),
            E::Field("trace-flags")
        );
        assert_eq!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"),
            E::Field("trace-id")
        );
        assert_eq!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01"),
            E::Field("parent-id")
        );
        // Version 00 is exactly 55 characters: nothing more, nothing less.
        assert!(matches!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"),
            E::Length {
                len: 56,
                version: 0,
                ..
            }
        ));
        assert!(matches!(
            err(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            E::Length { len: 54, .. }
        ));
        assert_eq!(
            err(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            E::ForbiddenVersion
        );
        for bad_version in [&b""[..], b"0", b"00", b"0-", b"000-", b"0A-", b"xy-4bf9"] {
            assert_eq!(err(bad_version), E::Version, "{bad_version:?}");
        }
    }

    #[test]
    fn later_versions_are_read_forward_compatibly() {
        // Exactly the three fields: read.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceContext::parse(later, None)
                .unwrap()
                .traceparent()
                .as_str(),
            std::str::from_utf8(VALID).unwrap()
        );
        // More fields after a dash: ignored, and the context goes on as version 00.
        let more = b"fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-0123456789abcdef-xyz";
        let sent = TraceContext::parse(more, None).unwrap();
        assert_eq!(sent.traceparent().as_bytes(), VALID);
        // Something other than a dash right after the flags: refused.
        let glued = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(err(glued), TraceContextError::Field("trace-flags"));
        // Shorter than 55: refused, whatever the version.
        assert!(matches!(
            err(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            TraceContextError::Length {
                len: 54,
                version: 1,
                ..
            }
        ));
    }

    #[test]
    fn a_received_context_is_a_child_of_the_senders_span() {
        let here = TraceContext::received(VALID, Some(b"congo=t61rcWkgMzE".as_slice())).unwrap();
        let sent = TraceContext::parse(VALID, None).unwrap();
        assert_eq!(here.trace_id(), sent.trace_id());
        assert_eq!(here.parent_id(), Some(sent.span_id()));
        assert_ne!(here.span_id(), sent.span_id());
        assert_eq!(here.tracestate(), Some("congo=t61rcWkgMzE"));
        assert!(here.is_sampled());
        let next = here.traceparent();
        assert_eq!(&next.as_str()[..36], "00-4bf92f3577b34da6a3ce929d0e0e4736-");
        assert_eq!(&next.as_str()[36..52], here.span_id().to_hex().as_str());
        // An invalid tracestate is dropped; the traceparent stands.
        let bad_state = TraceContext::received(VALID, Some(b"Congo=x".as_slice())).unwrap();
        assert_eq!(bad_state.tracestate(), None);
        // An invalid traceparent: nothing (its tracestate is not even looked at).
        assert!(TraceContext::received(b"00-xyz", Some(b"congo=1".as_slice())).is_none());
    }

    #[test]
    fn started_traces_have_random_nonzero_ids_and_no_flags() {
        let a = TraceContext::start();
        let b = TraceContext::start();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        assert_eq!(a.parent_id(), None);
        assert!(!a.is_sampled());
        // What it sends parses back to itself.
        let back = TraceContext::parse(a.traceparent().as_bytes(), None).unwrap();
        assert_eq!(back.trace_id(), a.trace_id());
        assert_eq!(back.span_id(), a.span_id());
        // Both halves of the trace id vary (two draws, not one).
        let ids: Vec<[u8; 16]> = (0..64).map(|_| TraceId::random().to_bytes()).collect();
        assert!(ids.iter().any(|id| id[..8] != ids[0][..8]));
        assert!(ids.iter().any(|id| id[8..] != ids[0][8..]));
    }

    #[test]
    fn tracestate_is_kept_as_given_within_the_limits() {
        let given = b"rojo=00f067aa0ba902b7,  congo=t61rcWkgMzE,,tenant@vendor= a b";
        let state = TraceState::parse(given).unwrap().unwrap();
        assert_eq!(state.as_str().as_bytes(), given);
        assert!(TraceState::parse(b"").unwrap().is_none());
        assert!(TraceState::parse(b" ,\t, ").unwrap().is_none());
        // Keys: lowercase letters, digits, `_-*/@`; starting with a letter or a digit.
        assert!(
            TraceState::parse(b"0vendor=x,a_b-c*d/e@f=y")
                .unwrap()
                .is_some()
        );
        for (bad, index) in [
            (&b"Rojo=1"[..], 0),
            (b"a=1,-b=2", 1),
            (b"a=1,b", 1),
            (b"a=", 0),
            (b"=1", 0),
            (b"a=1=2", 0),
            (b"a=1,b=caf\xc3\xa9", 1),
            (b"a=x\ty", 0),
        ] {
            match TraceState::parse(bad) {
                Err(TraceContextError::Member { index: at, .. }) => {
                    assert_eq!(at, index, "{bad:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(
            TraceState::parse(b"a=1,b=2,a=3"),
            Err(TraceContextError::DuplicateKey("a".into()))
        );
        let long_key = format!("{}=1", "k".repeat(257));
        assert!(TraceState::parse(long_key.as_bytes()).is_err());
        let long_value = format!("k={}", "v".repeat(257));
        assert!(TraceState::parse(long_value.as_bytes()).is_err());
        let longest = format!("{}={}", "k".repeat(256), "v".repeat(256));
        // Valid, but past 512 characters alone: nothing is left of it.
        assert_eq!(TraceState::parse(longest.as_bytes()), Ok(None));
    }

    #[test]
    fn tracestate_past_32_members_loses_the_last_ones() {
        let members: Vec<String> = (0..40).map(|i| format!("k{i}=v{i}")).collect();
        let state = TraceState::parse(members.join(",").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(state.as_str(), members[..32].join(","));
        let exactly: String = members[..32].join(" , ");
        assert_eq!(
            TraceState::parse(exactly.as_bytes())
                .unwrap()
                .unwrap()
                .as_str(),
            exactly,
            "32 members, kept as given"
        );
    }

    #[test]
    fn tracestate_past_512_characters_loses_long_members_first_then_the_last() {
        // 8 members of 60 characters (+ commas: 487), one of 130 in the middle.
        let short: Vec<String> = (0..8).map(|i| format!("s{i}={}", "x".repeat(57))).collect();
        let long = format!("long={}", "y".repeat(125));
        let mut all = short.clone();
        all.insert(4, long);
        let given = all.join(",");
        assert!(given.len() > TRACESTATE_MAX_LEN);
        let state = TraceState::parse(given.as_bytes()).unwrap().unwrap();
        assert_eq!(
            state.as_str(),
            short.join(","),
            "the long member went first"
        );
        // Without a long member to drop: members go from the end.
        let many: Vec<String> = (0..12)
            .map(|i| format!("m{i:02}={}", "z".repeat(46)))
            .collect();
        let state = TraceState::parse(many.join(",").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(state.as_str(), many[..10].join(","));
        assert!(state.as_str().len() <= TRACESTATE_MAX_LEN);
        // Exactly 512 characters: kept as given.
        let exact = format!(
            "k0={},k1={v},k2={v},k3={v}",
            "u".repeat(125),
            v = "v".repeat(124)
        );
        assert_eq!(exact.len(), 512);
        assert_eq!(
            TraceState::parse(exact.as_bytes())
                .unwrap()
                .unwrap()
                .as_str(),
            exact
        );
    }

    #[test]
    fn a_scope_keeps_a_context_started_in_it_from_poll_to_poll() {
        let mut trace = TaskTrace::new();
        assert!(current().is_none(), "outside any scope");
        let first = sync_scope(&mut trace, || {
            assert!(peek().is_none(), "none yet");
            current().unwrap()
        });
        assert_eq!(trace.get(), Some(&first), "handed back to its holder");
        let again = sync_scope(&mut trace, || current().unwrap());
        assert_eq!(again, first);
        assert!(current().is_none(), "the scope ended");

        // Nested scopes: the inner one's context inside it, the outer one's after.
        let received = TraceContext::received(VALID, None).unwrap();
        let mut inner = TaskTrace::from(received.clone());
        sync_scope(&mut trace, || {
            sync_scope(&mut inner, || {
                assert_eq!(current().unwrap().trace_id(), received.trace_id());
            });
            assert_eq!(current().unwrap(), first);
        });

        // A panic inside still restores the slot and hands the context back.
        let mut lazy = TaskTrace::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sync_scope(&mut lazy, || {
                let _ = current();
                panic!("in the handler");
            })
        }));
        assert!(caught.is_err());
        assert!(lazy.get().is_some());
        assert!(current().is_none());
    }

    #[test]
    fn a_scoped_future_keeps_its_context_across_awaits() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (a, b) = tokio::join!(
                scope(None, async {
                    let started = current().unwrap();
                    tokio::task::yield_now().await;
                    (started, current().unwrap())
                }),
                scope(TraceContext::received(VALID, None), async {
                    tokio::task::yield_now().await;
                    current().unwrap()
                }),
            );
            assert_eq!(a.0, a.1, "the same trace after an await");
            assert_ne!(a.0.trace_id(), b.trace_id(), "each scope its own");
            assert_eq!(b.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(current().is_none());
        });
    }
}
