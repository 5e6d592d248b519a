//! A spec's backend options, read into the backend's own typed struct.
//!
//! In a registry (or system configuration) file, `options` is a map from a key
//! to a plain value: a string, a number or a boolean, written as itself.
//!
//! ```ron
//! options: {
//!     "base_url": "http://gpu-box:8000/v1",
//!     "timeout_secs": 120,
//!     "extensions": false,
//! },
//! ```
//!
//! A backend declares the options it reads as a serde struct, usually with
//! `#[serde(deny_unknown_fields)]` so that a typo is rejected with the list of
//! valid keys, and reads it with [`ModelSpec::options`](crate::ModelSpec::options):
//!
//! ```
//! use mdsa_engine::{ModelRole, ModelSpec};
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct MyOptions {
//!     base_url: String,
//!     #[serde(default)]
//!     timeout_secs: Option<f64>,
//! }
//!
//! let mut spec = ModelSpec::new("big", "served-name", ModelRole::Generator);
//! spec.options.insert("base_url", "http://gpu-box:8000/v1");
//! spec.options.insert("timeout_secs", "120"); // a string: still a number
//! let options: MyOptions = spec.options()?;
//! assert_eq!(options.timeout_secs, Some(120.0));
//!
//! spec.options.insert("timeout", 5);
//! let err = spec.options::<MyOptions>().unwrap_err();
//! assert!(err.to_string().contains("unknown field `timeout`, expected `base_url` or `timeout_secs`"));
//! # Ok::<(), mdsa_config::ConfigError>(())
//! ```
//!
//! Options are flat: one level of keys, each with a plain value. Reading is
//! lenient in one way only: a string holding a number or `true`/`false` reads
//! as that number or boolean, so files written when every option was a string
//! (`"timeout_secs": "120"`) keep working. Errors follow mdsa-config's style:
//! the file, line and column when the spec came from a file, the field path
//! (`models[0].options.timeout_secs`), the model, what was expected and what was
//! found.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use mdsa_config::ConfigError;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One option's value, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Integer(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string.
    String(String),
}

impl fmt::Display for OptionValue {
    /// As it would be written in RON (strings quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<&str> for OptionValue {
    fn from(s: &str) -> Self {
        Self::String(s.to_string())
    }
}

impl From<String> for OptionValue {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<bool> for OptionValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for OptionValue {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

impl From<i32> for OptionValue {
    fn from(n: i32) -> Self {
        Self::Integer(n.into())
    }
}

impl From<u32> for OptionValue {
    fn from(n: u32) -> Self {
        Self::Integer(n.into())
    }
}

impl From<f64> for OptionValue {
    fn from(x: f64) -> Self {
        Self::Float(x)
    }
}

impl OptionValue {
    /// The value as a string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for OptionValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Integer(n) => serializer.serialize_i64(*n),
            Self::Float(x) => serializer.serialize_f64(*x),
            Self::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = OptionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OptionValue, E> {
                Ok(OptionValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptionValue, E> {
                Ok(OptionValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptionValue, E> {
                i64::try_from(v)
                    .map(OptionValue::Integer)
                    .map_err(|_| E::custom(format!("{v} is too large for an option")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptionValue, E> {
                Ok(OptionValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OptionValue, E> {
                Ok(OptionValue::String(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<OptionValue, E> {
                Ok(OptionValue::String(v))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OptionValue, D::Error> {
                OptionValue::deserialize(d)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Where a spec was read from, so that option errors can name the file, line
/// and field path.
#[derive(Debug, Clone)]
pub struct SpecOrigin {
    /// The file (or another name for where the text came from).
    pub origin: String,
    /// The whole text the spec was parsed from.
    pub text: Arc<str>,
    /// The spec's path in that text, e.g. `models[2]`.
    pub path: String,
}

/// A spec's backend options: keys to plain values, plus where they were read
/// from (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    values: BTreeMap<String, OptionValue>,
    origin: Option<SpecOrigin>,
}

impl PartialEq for SpecOptions {
    /// Equal when the values are; where they were read from does not count.
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl SpecOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<OptionValue>,
    ) -> Option<OptionValue> {
        self.values.insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<OptionValue> {
        self.values.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.values.get(key)
    }

    /// Every key and value, keys in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Where the options were read from, when they came from a file.
    pub fn origin(&self) -> Option<&SpecOrigin> {
        self.origin.as_ref()
    }

    /// Records where the options were read from; errors then name the file,
    /// line and field path. The registry and the system configuration do this
    /// for every spec they parse.
    pub fn set_origin(&mut self, origin: SpecOrigin) {
        self.origin = Some(origin);
    }

    /// Reads the options into `T` (a serde struct); `model` names the spec in
    /// errors. [`ModelSpec::options`](crate::ModelSpec::options) calls this.
    pub fn read<T: DeserializeOwned>(&self, model: &str) -> Result<T, ConfigError> {
        let current = std::cell::RefCell::new(None);
        let deserializer = MapDeserializer {
            iter: self.values.iter(),
            value: None,
            current: &current,
        };
        T::deserialize(deserializer).map_err(|e| {
            let key = current.borrow().clone();
            self.error(model, key.as_deref(), e.0)
        })
    }

    /// An error about option `key` (or about the options as a whole when
    /// `None`) of model `model`, located like a parse error: for checks a
    /// backend makes after [`read`](Self::read), such as a range.
    pub fn error(&self, model: &str, key: Option<&str>, message: impl fmt::Display) -> ConfigError {
        let suffix = key.map(|k| format!(".{k}")).unwrap_or_default();
        let message = format!("model {model:?}: {message}");
        match &self.origin {
            Some(o) => {
                // An option left unset is located by the nearest written parent.
                let field = format!("{}.options{suffix}", o.path);
                mdsa_config::field_error(&o.text, &o.origin, &field, message)
            }
            None => ConfigError {
                origin: "(spec)".into(),
                line: None,
                column: None,
                field: format!("options{suffix}"),
                message,
            },
        }
    }
}

impl<K: Into<String>, V: Into<OptionValue>> FromIterator<(K, V)> for SpecOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            values: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            origin: None,
        }
    }
}

impl Serialize for SpecOptions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SpecOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            values: BTreeMap::deserialize(deserializer)?,
            origin: None,
        })
    }
}

/// An error reading options: the message; the key is tracked by the map.
#[derive(Debug)]
struct OptionError(String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

impl de::Error for OptionError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// The options as a map, remembering the key being read for error messages.
struct MapDeserializer<'a, I> {
    iter: I,
    value: Option<&'a OptionValue>,
    current: &'a std::cell::RefCell<Option<String>>,
}

impl<'de, 'a, I> Deserializer<'de> for MapDeserializer<'a, I>
where
    I: Iterator<Item = (&'a String, &'a OptionValue)>,
{
    type Error = OptionError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, 'a, I> de::MapAccess<'de> for MapDeserializer<'a, I>
where
    I: Iterator<Item = (&'a String, &'a OptionValue)>,
{
    type Error = OptionError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, OptionError> {
        match self.iter.next() {
            Some((key, value)) => {
                *self.current.borrow_mut() = Some(key.clone());
                self.value = Some(value);
                let key: de::value::StrDeserializer<'_, OptionError> =
                    key.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => {
                // What fails now (a missing field) is about the options as a whole.
                *self.current.borrow_mut() = None;
                Ok(None)
            }
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, OptionError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| OptionError("value asked for before its key".into()))?;
        seed.deserialize(ValueDeserializer(value))
    }
}

/// One value; numbers and booleans also read from strings that hold them.
struct ValueDeserializer<'a>(&'a OptionValue);

impl ValueDeserializer<'_> {
    fn expected(&self, what: &str) -> OptionError {
        OptionError(format!("expected {what}, found {}", self.0))
    }

    /// The value as a whole number, from an integer or a string holding one.
    fn whole(&self, what: &str) -> Result<i128, OptionError> {
        match self.0 {
            OptionValue::Integer(n) => Ok((*n).into()),
            OptionValue::String(s) => s.trim().parse().map_err(|_| self.expected(what)),
            _ => Err(self.expected(what)),
        }
    }

    fn number(&self) -> Result<f64, OptionError> {
        const WHAT: &str = "a number";
        match self.0 {
            OptionValue::Integer(n) => Ok(*n as f64),
            OptionValue::Float(x) => Ok(*x),
            OptionValue::String(s) => s.trim().parse().map_err(|_| self.expected(WHAT)),
            OptionValue::Bool(_) => Err(self.expected(WHAT)),
        }
    }
}

/// `deserialize_u8` and friends: a whole number in the type's range.
macro_rules! whole_number {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
            let what = if <$ty>::MIN == 0 {
                format!("a whole number from 0 to {}", <$ty>::MAX)
            } else {
                format!("a whole number from {} to {}", <$ty>::MIN, <$ty>::MAX)
            };
            let n = self.whole(&what)?;
            let n = <$ty>::try_from(n).map_err(|_| self.expected(&what))?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = OptionError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        match self.0 {
            OptionValue::Bool(b) => visitor.visit_bool(*b),
            OptionValue::Integer(n) => visitor.visit_i64(*n),
            OptionValue::Float(x) => visitor.visit_f64(*x),
            OptionValue::String(s) => visitor.visit_str(s),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        match self.0 {
            OptionValue::Bool(b) => visitor.visit_bool(*b),
            OptionValue::String(s) if s.trim() == "true" => visitor.visit_bool(true),
            OptionValue::String(s) if s.trim() == "false" => visitor.visit_bool(false),
            _ => Err(self.expected("true or false")),
        }
    }

    whole_number! {
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_f32(self.number()? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_f64(self.number()?)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        match self.0 {
            OptionValue::String(s) => visitor.visit_str(s),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        // A unit variant written as a string: `"mode": "fast"`.
        match self.0 {
            OptionValue::String(s) => {
                let d: de::value::StrDeserializer<'_, OptionError> = s.as_str().into_deserializer();
                visitor.visit_enum(d)
            }
            _ => Err(self.expected("a string naming a variant")),
        }
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Opts {
        url: String,
        #[serde(default)]
        secs: Option<f64>,
        #[serde(default)]
        retries: Option<u32>,
        #[serde(default)]
        flag: Option<bool>,
    }

    fn options(pairs: &[(&str, OptionValue)]) -> SpecOptions {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn natural_and_string_values_read_alike() {
        let natural = options(&[
            ("url", "http://a".into()),
            ("secs", 120.into()),
            ("retries", 3.into()),
            ("flag", false.into()),
        ]);
        let strings = options(&[
            ("url", "http://a".into()),
            ("secs", "120".into()),
            ("retries", " 3".into()),
            ("flag", "false".into()),
        ]);
        let a: Opts = natural.read("m").unwrap();
        let b: Opts = strings.read("m").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.secs, Some(120.0));
        assert_eq!(a.retries, Some(3));
        assert_eq!(a.flag, Some(false));
    }

    #[test]
    fn errors_name_the_model_the_field_and_what_was_found() {
        let m = |pairs: &[(&str, OptionValue)]| {
            options(pairs).read::<Opts>("big").unwrap_err().to_string()
        };
        let e = m(&[("url", "x".into()), ("retries", (-1).into())]);
        assert_eq!(
            e,
            "(spec): options.retries: model \"big\": expected a whole number from 0 to 4294967295, found -1"
        );
        let e = m(&[("url", "x".into()), ("flag", "yes".into())]);
        assert!(e.ends_with("expected true or false, found \"yes\""), "{e}");
        let e = m(&[("url", 5.into())]);
        assert!(
            e.contains("options.url") && e.contains("expected a string, found 5"),
            "{e}"
        );
        let e = m(&[]);
        assert!(
            e.contains("options: ") && e.contains("missing field `url`"),
            "{e}"
        );
        let e = m(&[("url", "x".into()), ("sec", 1.into())]);
        assert!(
            e.contains("options.sec") && e.contains("unknown field `sec`, expected one of"),
            "{e}"
        );
    }
}
