//! A serde deserializer over string key/value pairs (path parameters, query strings)
//! that parses numbers and booleans from text and names the field in its errors.

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
        if has_repeated_keys(self.0) {
            // `?tag=a&tag=b`: one entry per key, its values together (a sequence).
            return visitor.visit_map(GroupedMap {
                iter: group(self.0).into_iter(),
                value: None,
            });
        }
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

/// Whether a key comes more than once (rare: checked before grouping, which allocates).
fn has_repeated_keys<K: AsRef<str>, T>(pairs: &[(K, T)]) -> bool {
    if pairs.len() <= 16 {
        return pairs.iter().enumerate().any(|(i, (key, _))| {
            pairs[..i]
                .iter()
                .any(|(earlier, _)| earlier.as_ref() == key.as_ref())
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    !pairs.iter().all(|(key, _)| seen.insert(key.as_ref()))
}

/// The pairs by key, in the order keys first come, each key's values in order.
fn group<'de, K: AsRef<str>, T: AsRef<str>>(pairs: &'de [(K, T)]) -> Vec<Values<'de>> {
    let mut groups: Vec<Values<'de>> = Vec::new();
    let mut index: std::collections::HashMap<&'de str, usize> = std::collections::HashMap::new();
    for (key, value) in pairs {
        let at = *index.entry(key.as_ref()).or_insert_with(|| {
            groups.push(Values {
                key: key.as_ref(),
                values: Vec::new(),
            });
            groups.len() - 1
        });
        groups[at].values.push(value.as_ref());
    }
    groups
}

struct GroupedMap<'de, I> {
    iter: I,
    value: Option<Values<'de>>,
}

impl<'de, I: Iterator<Item = Values<'de>>> MapAccess<'de> for GroupedMap<'de, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(values) = self.iter.next() else {
            return Ok(None);
        };
        let key = values.key;
        self.value = Some(values);
        seed.deserialize(key.into_deserializer())
            .map(Some)
            .map_err(|e: de::value::Error| Error {
                field: Some(key.to_owned()),
                message: e.to_string(),
                shape: false,
            })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let values = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value without a key"))?;
        match values.values[..] {
            [value] => seed.deserialize(Value {
                key: values.key,
                value,
            }),
            _ => seed.deserialize(values),
        }
    }
}

/// A key given more than once: a sequence (`Vec<T>`, a set…), or an error naming the
/// key for a type that takes one value.
struct Values<'de> {
    key: &'de str,
    values: Vec<&'de str>,
}

impl Values<'_> {
    fn one_expected(&self) -> Error {
        Error {
            field: Some(self.key.to_owned()),
            message: format!("is given {} times; expected one value", self.values.len()),
            shape: false,
        }
    }
}

macro_rules! one_value_expected {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
            Err(self.one_expected())
        }
    )*};
}

impl<'de> Deserializer<'de> for Values<'de> {
    type Error = Error;

    /// Self-describing (`#[serde(flatten)]`, untagged enums): the values, as a
    /// sequence of strings.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let key = self.key;
        let tag = |mut error: Error| {
            error.field.get_or_insert_with(|| key.to_owned());
            error
        };
        let mut seq =
            SeqDeserializer::new(self.values.into_iter().map(|value| Value { key, value }));
        let out = visitor.visit_seq(&mut seq).map_err(tag)?;
        seq.end().map_err(tag)?;
        Ok(out)
    }

    /// A key the type does not use (`?utm=a&utm=b` beside the fields it reads).
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(self.one_expected())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(self.one_expected())
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(self.one_expected())
    }

    one_value_expected! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_map deserialize_identifier
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
    fn a_repeated_key_is_a_sequence_and_an_error_naming_it_for_one_value() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Filter {
            tag: Vec<String>,
            ids: Option<Vec<u32>>,
            page: Option<u32>,
        }
        let p = pairs(&[
            ("tag", "a"),
            ("page", "2"),
            ("tag", "b"),
            ("ids", "1"),
            ("ids", "2"),
        ]);
        let parsed: Filter = from_pairs(&p).unwrap();
        assert_eq!(
            parsed,
            Filter {
                tag: vec!["a".into(), "b".into()],
                ids: Some(vec![1, 2]),
                page: Some(2)
            }
        );
        // One value still makes a one-element sequence.
        let one: Filter = from_pairs(&pairs(&[("tag", "a")])).unwrap();
        assert_eq!(one.tag, ["a"]);
        // A value that does not parse, among several: named by its key.
        let bad = pairs(&[("tag", "a"), ("ids", "1"), ("ids", "x")]);
        let error = from_pairs::<Filter, _, _>(&bad).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("ids"));
        // A key given twice for a field that takes one value.
        let twice = pairs(&[("tag", "a"), ("page", "1"), ("page", "2")]);
        let error = from_pairs::<Filter, _, _>(&twice).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("page"));
        assert_eq!(error.message, "is given 2 times; expected one value");
        // A repeated key the type does not use is ignored, as a single one is.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Paging {
            page: u32,
        }
        let extra = pairs(&[("page", "1"), ("utm", "a"), ("utm", "b")]);
        assert_eq!(
            from_pairs::<Paging, _, _>(&extra).unwrap(),
            Paging { page: 1 }
        );
        // Flattened (self-describing): the values as a list.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Open {
            page: u32,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, Vec<String>>,
        }
        let open: Open = from_pairs(&extra).unwrap();
        assert_eq!(open.rest["utm"], ["a", "b"]);
        // Too many values for a pair: named by the key.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Range {
            r: (u32, u32),
        }
        let three = pairs(&[("r", "1"), ("r", "2"), ("r", "3")]);
        let error = from_pairs::<Range, _, _>(&three).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("r"));
        let two: Range = from_pairs(&three[..2]).unwrap();
        assert_eq!(two.r, (1, 2));

        // Many distinct keys (the hashed check).
        let many: Vec<(String, String)> =
            (0..40).map(|i| (format!("k{i}"), i.to_string())).collect();
        assert!(!has_repeated_keys(&many));
        let mut with_repeat = many.clone();
        with_repeat.push(("k3".into(), "x".into()));
        assert!(has_repeated_keys(&with_repeat));
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
