//! A serde deserializer over the path's parameters (name/value pairs, each name once)
//! that parses numbers and booleans from text and names the parameter in its errors.
//!
//! Kept by hand, as axum keeps its own: a route's parameters are a struct by name, a
//! tuple by position or one value, and a type that does not fit the route is the
//! program's error (`shape`), not the client's; query strings are serde_html_form's.

use std::fmt;

use serde::de::value::SeqDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

/// A deserialization error, naming the field when known.
#[derive(Debug)]
pub(crate) struct Error {
    pub(crate) field: Option<String>,
    pub(crate) message: String,
    /// The pairs do not have the shape of the type (a parameter missing, too many or
    /// too few), as opposed to a value that does not parse. For path parameters that is
    /// the program's error (the type does not fit the route), not the client's.
    pub(crate) shape: bool,
}

impl Error {
    fn shape(message: String) -> Self {
        Self {
            field: None,
            message,
            shape: true,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            field: None,
            message: msg.to_string(),
            shape: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: "is required".to_owned(),
            shape: true,
        }
    }
}

/// Deserializes `T` from pairs: a struct or map takes them by name, a tuple or sequence
/// by position, a single value takes the only one.
pub(crate) fn from_pairs<'de, T, K, V>(pairs: &'de [(K, V)]) -> Result<T, Error>
where
    T: de::Deserialize<'de>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    T::deserialize(Pairs(pairs))
}

struct Pairs<'de, K, T>(&'de [(K, T)]);

impl<'de, K: AsRef<str>, T: AsRef<str>> Pairs<'de, K, T> {
    fn single(&self) -> Result<Value<'de>, Error> {
        match self.0 {
            [(key, value)] => Ok(Value {
                key: key.as_ref(),
                value: value.as_ref(),
            }),
            _ => Err(Error::shape(format!(
                "expected exactly one parameter, found {}",
                self.0.len()
            ))),
        }
    }
}

macro_rules! forward_single {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.single()?.$method(visitor)
        }
    )*};
}

impl<'de, K: AsRef<str>, T: AsRef<str>> Deserializer<'de> for Pairs<'de, K, T> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(PairsMap {
            iter: self.0.iter(),
            value: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let values = self.0.iter().map(|(key, value)| Value {
            key: key.as_ref(),
            value: value.as_ref(),
        });
        let mut seq = SeqDeserializer::new(values);
        let out = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(out)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        if len != self.0.len() {
            return Err(Error::shape(format!(
                "expected {len} parameter(s), found {}",
                self.0.len()
            )));
        }
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.single()?.deserialize_enum(name, variants, visitor)
    }

    forward_single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct PairsMap<'de, I> {
    iter: I,
    value: Option<Value<'de>>,
}

impl<'de, I, N, T> MapAccess<'de> for PairsMap<'de, I>
where
    I: Iterator<Item = &'de (N, T)>,
    N: AsRef<str> + 'de,
    T: AsRef<str> + 'de,
{
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                let (key, value) = (key.as_ref(), value.as_ref());
                self.value = Some(Value { key, value });
                seed.deserialize(key.into_deserializer()).map(Some).map_err(
                    |e: de::value::Error| Error {
                        field: Some(key.to_owned()),
                        message: e.to_string(),
                        shape: false,
                    },
                )
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value without a key"))?;
        seed.deserialize(value)
    }
}

/// One text value, parsed on demand into the type asked for.
#[derive(Clone, Copy)]
struct Value<'de> {
    key: &'de str,
    value: &'de str,
}

impl Value<'_> {
    fn error(&self, message: impl fmt::Display) -> Error {
        Error {
            field: Some(self.key.to_owned()),
            message: message.to_string(),
            shape: false,
        }
    }
}

impl Value<'_> {
    fn tag(&self, mut error: Error) -> Error {
        error.field.get_or_insert_with(|| self.key.to_owned());
        error
    }
}

impl<'de> IntoDeserializer<'de, Error> for Value<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_value {
    ($($method:ident => $visit:ident : $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.value.parse::<$ty>() {
                Ok(parsed) => visitor.$visit(parsed).map_err(|e: Error| self.tag(e)),
                Err(_) => Err(self.error(format_args!("`{}` is not {}", self.value, $what))),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Value<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor
            .visit_borrowed_str(self.value)
            .map_err(|e: Error| self.tag(e))
    }

    parse_value! {
        deserialize_bool => visit_bool: bool, "true or false";
        deserialize_i8 => visit_i8: i8, "an integer (i8)";
        deserialize_i16 => visit_i16: i16, "an integer (i16)";
        deserialize_i32 => visit_i32: i32, "an integer (i32)";
        deserialize_i64 => visit_i64: i64, "an integer";
        deserialize_i128 => visit_i128: i128, "an integer";
        deserialize_u8 => visit_u8: u8, "a non-negative integer (u8)";
        deserialize_u16 => visit_u16: u16, "a non-negative integer (u16)";
        deserialize_u32 => visit_u32: u32, "a non-negative integer";
        deserialize_u64 => visit_u64: u64, "a non-negative integer";
        deserialize_u128 => visit_u128: u128, "a non-negative integer";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
        deserialize_char => visit_char: char, "a single character";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.value.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor
            .visit_enum(self.value.into_deserializer())
            .map_err(|e: de::value::Error| self.error(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut seq = SeqDeserializer::new(std::iter::once(self));
        let out = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(out)
    }

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn structs_tuples_and_single_values() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Params {
            code: String,
            page: u32,
            full: Option<bool>,
        }
        let p = pairs(&[("code", "gb"), ("page", "3")]);
        let parsed: Params = from_pairs(&p).unwrap();
        assert_eq!(
            parsed,
            Params {
                code: "gb".into(),
                page: 3,
                full: None
            }
        );
        let t: (String, u32) = from_pairs(&p).unwrap();
        assert_eq!(t, ("gb".into(), 3));
        let one = pairs(&[("id", "42")]);
        assert_eq!(from_pairs::<u64, _, _>(&one).unwrap(), 42);
        let bad = pairs(&[("code", "gb"), ("page", "three")]);
        let error = from_pairs::<Params, _, _>(&bad).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("page"));
        assert!(
            error.message.contains("`three` is not"),
            "{}",
            error.message
        );
        assert!(
            !error.shape,
            "a value that does not parse is the client's error"
        );
    }

    #[test]
    fn shape_mismatches_are_told_apart_from_bad_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Params {
            code: String,
            page: u32,
        }
        let two = pairs(&[("code", "gb"), ("id", "3")]);
        assert!(
            from_pairs::<u64, _, _>(&two).unwrap_err().shape,
            "one value, two params"
        );
        assert!(
            from_pairs::<(String, u32, u32), _, _>(&two)
                .unwrap_err()
                .shape
        );
        assert!(
            from_pairs::<Params, _, _>(&two).unwrap_err().shape,
            "`page` missing"
        );
        let none: [(String, String); 0] = [];
        assert!(
            from_pairs::<String, _, _>(&none).unwrap_err().shape,
            "no params"
        );
        let bad = pairs(&[("id", "x")]);
        assert!(!from_pairs::<u64, _, _>(&bad).unwrap_err().shape);
    }
}
