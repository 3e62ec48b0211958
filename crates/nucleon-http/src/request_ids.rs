//! Request ids on a worker: making new ones, and writing any one as the
//! `x-request-id` response header.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};

use bytes::BytesMut;
use http::HeaderValue;
use nucleon_runtime::request_id::Id;

/// How many bytes of header values one allocation holds: made ids are about 18–33
/// bytes, so a chunk serves over a hundred responses.
const CHUNK: usize = 4096;

/// A worker's request ids: a random prefix and a counter, and a chunk of memory the
/// response headers of made ids are cut from (one allocation per hundred or so
/// responses, not one per response; a chunk is freed when the last response written
/// from it is).
pub(crate) struct IdSource {
    prefix: u64,
    counter: Cell<u64>,
    chunk: RefCell<BytesMut>,
}

impl IdSource {
    pub(crate) fn new() -> Self {
        IdSource {
            prefix: std::hash::RandomState::new().build_hasher().finish(),
            counter: Cell::new(0),
            chunk: RefCell::new(BytesMut::new()),
        }
    }

    /// A new id.
    #[inline]
    pub(crate) fn next(&self) -> Id {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        Id::made(self.prefix, n)
    }

    /// The `x-request-id` header for `id`: a client's own bytes as they came, or a
    /// made id written out.
    pub(crate) fn header(&self, id: &Id) -> HeaderValue {
        let value = match id.given_bytes() {
            Some(bytes) => HeaderValue::from_maybe_shared(bytes.clone()),
            None => id.with_bytes(|text| {
                let mut chunk = self.chunk.borrow_mut();
                if chunk.capacity() - chunk.len() < text.len() {
                    *chunk = BytesMut::with_capacity(CHUNK.max(text.len()));
                }
                chunk.extend_from_slice(text);
                HeaderValue::from_maybe_shared(chunk.split().freeze())
            }),
        };
        value.unwrap_or(HeaderValue::from_static("unknown"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_the_ids_and_stay_apart() {
        let ids = IdSource::new();
        let made: Vec<Id> = (0..1000).map(|_| ids.next()).collect();
        // Many chunks' worth, all held at once: none overwrites another.
        let headers: Vec<HeaderValue> = made.iter().map(|id| ids.header(id)).collect();
        for (id, header) in made.iter().zip(&headers) {
            assert_eq!(header.to_str().unwrap(), id.to_string());
        }
        assert!(made[0].to_string().ends_with("-1"), "{}", made[0]);
        assert!(made[999].to_string().ends_with("-3e8"), "{}", made[999]);
        assert_eq!(ids.header(&Id::from("abc-1")).to_str().unwrap(), "abc-1");
    }

    #[test]
    fn each_source_has_its_own_64_bit_prefix() {
        let prefixes: Vec<String> = (0..64)
            .map(|_| {
                let id = IdSource::new().next().to_string();
                let (prefix, n) = id.split_once('-').expect("prefix-counter");
                assert_eq!(n, "1");
                assert_eq!(prefix.len(), 16, "{id}");
                prefix.to_owned()
            })
            .collect();
        let mut distinct = prefixes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), prefixes.len(), "{prefixes:?}");
        // The high half varies too (a 32-bit prefix left it zero).
        assert!(prefixes.iter().any(|p| !p.starts_with("00000000")));
    }
}
