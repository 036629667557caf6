//! Layer 1 (primitive): a JSON object payload read lazily. [`LazyObject::parse`] splits the
//! top level of an object into its keys and the exact text of each value, without building
//! a `serde_json::Value` tree; a field becomes a `Value` only when something reads it
//! ([`LazyObject::field`]) or changes it, and [`LazyObject::write_json`] copies every field
//! nothing changed verbatim from the input. [`JsonRoot`] is what conditions, templates,
//! expressions and JSONPaths read, implemented by `Value` and by `LazyObject`, so they work
//! on either.
//!
//! The contract that keeps the rule language's behaviour: `parse` accepts a payload only
//! when `serde_json::from_slice::<Value>` would (every value is checked by serde_json's own
//! parser, so number ranges, escapes and surrogates are judged the same way), and reads it
//! as that `Value` would read: fields in key order, a duplicated key keeps its last value.
//! Anything it does not handle (not an object, an escaped key, deep nesting, invalid JSON)
//! makes `parse` answer `None`, and the caller parses the payload the ordinary way (which
//! also gives invalid JSON its usual error). A field written out verbatim differs from
//! serde_json's re-serialization only in spacing inside nested values and in how numbers
//! and escapes were written by the sender; the values are the same.
//!
//! Imports nothing from the rule language.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What rule code reads from a payload: a top-level field, or the whole payload.
pub trait JsonRoot {
    /// The value of a top-level field; `None` when it is missing or the payload is not an
    /// object.
    fn field(&self, key: &str) -> Option<&Value>;
    /// True when the payload is an object holding `key` (without reading the value).
    fn has_field(&self, key: &str) -> bool {
        self.field(key).is_some()
    }
    /// The whole payload as one value (built on first use for a lazy payload).
    fn whole(&self) -> &Value;
    /// The text of a top-level string field when it can be read without parsing (a lazy
    /// payload's string written without escapes); `None` says read [`JsonRoot::field`].
    fn plain_text(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl JsonRoot for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    fn whole(&self) -> &Value {
        self
    }
}

/// Nested values deeper than this make `parse` give up (serde_json's own limit is 128
/// levels from the document's root; staying well under it keeps the answer the same).
const MAX_NESTED_DEPTH: usize = 100;

/// One top-level value: its text in the payload while nothing changed it (parsed on first
/// read), or the value a step gave it.
#[derive(Debug, Clone)]
pub struct Slot<'a> {
    /// The value's text in the payload; `None` once changed (then `owned` holds it).
    raw: Option<&'a str>,
    /// `raw` parsed, on first read.
    parsed: OnceCell<Value>,
    /// The changed value.
    owned: Option<Value>,
}

impl<'a> Slot<'a> {
    /// A slot holding a new value (written out by serde_json).
    pub fn from_value(value: Value) -> Slot<'a> {
        Slot {
            raw: None,
            parsed: OnceCell::new(),
            owned: Some(value),
        }
    }

    fn get(&self) -> &Value {
        match &self.owned {
            Some(v) => v,
            None => self.parsed.get_or_init(|| parse_checked(self.raw)),
        }
    }

    /// The value for changing it: from then on it is written out by serde_json.
    fn get_mut(&mut self) -> &mut Value {
        let parsed = self.parsed.take();
        let raw = self.raw.take();
        self.owned
            .get_or_insert_with(|| parsed.unwrap_or_else(|| parse_checked(raw)))
    }

    /// The value, parsed.
    pub fn into_value(mut self) -> Value {
        std::mem::take(self.get_mut())
    }
}

/// A value's text that serde_json already accepted when the payload was read.
fn parse_checked(raw: Option<&str>) -> Value {
    raw.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

#[derive(Debug, Clone)]
struct Entry<'a> {
    /// The key's first 8 bytes, big-endian, zero-padded: ordered as the keys are, so most
    /// comparisons of a lookup are one integer comparison.
    prefix: u64,
    /// Borrowed from the payload (no escapes), or added by a step.
    key: Cow<'a, str>,
    /// Removed by a step: left in place (nothing shifts), skipped by lookups and output.
    removed: bool,
    slot: Slot<'a>,
}

impl Entry<'_> {
    fn is(&self, prefix: u64, key: &str) -> bool {
        self.prefix == prefix && self.key == key
    }
}

/// Two keys in `str` order, from their prefixes when that decides: keys of at most 8
/// bytes with equal prefixes differ only in length (zero padding).
fn cmp_keys(prefix_a: u64, a: &str, prefix_b: u64, b: &str) -> Ordering {
    match prefix_a.cmp(&prefix_b) {
        Ordering::Equal if a.len() <= 8 && b.len() <= 8 => a.len().cmp(&b.len()),
        Ordering::Equal => a.cmp(b),
        other => other,
    }
}

/// [`Entry::prefix`] of a key.
fn key_prefix(key: &str) -> u64 {
    let bytes = key.as_bytes();
    if let Some(head) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    bytes
        .iter()
        .enumerate()
        .fold(0, |x, (i, &b)| x | u64::from(b) << (56 - 8 * i))
}

/// A JSON object payload whose fields are parsed when read; see the module docs.
#[derive(Debug, Clone)]
pub struct LazyObject<'a> {
    /// The payload's fields sorted by key, each key once (as `serde_json::Map` orders and
    /// de-duplicates them), then from `sorted` on the keys steps added, as added.
    entries: Vec<Entry<'a>>,
    sorted: usize,
    /// The whole object, built when something asks for it; reset by every change.
    whole: OnceCell<Value>,
    /// True once a field was changed, added or removed.
    changed: bool,
}

impl<'a> LazyObject<'a> {
    /// The payload's top-level fields, when the payload is a JSON object this reader
    /// handles; `None` for anything else (the caller then parses it the ordinary way).
    pub fn parse(payload: &'a [u8]) -> Option<LazyObject<'a>> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut scan = Scanner {
            text,
            bytes: payload,
            at: 0,
        };
        scan.skip_ws();
        scan.eat(b'{')?;
        // (prefix, key, value text): sorted and de-duplicated before the entries are made
        let mut fields: Vec<(u64, &'a str, &'a str)> = Vec::with_capacity(16);
        scan.skip_ws();
        if scan.peek() == Some(b'}') {
            scan.at += 1;
        } else {
            loop {
                scan.skip_ws();
                let key = scan.key()?;
                scan.skip_ws();
                scan.eat(b':')?;
                scan.skip_ws();
                let raw = scan.value()?;
                fields.push((key_prefix(key), key, raw));
                scan.skip_ws();
                match scan.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        scan.skip_ws();
        if scan.at != payload.len() {
            return None;
        }
        // a stable sort of the reversed list puts the last of equal keys first: keep it
        fields.reverse();
        fields.sort_by(|a, b| cmp_keys(a.0, a.1, b.0, b.1));
        fields.dedup_by(|later, first| later.1 == first.1);
        // room for the fields steps add, so adding one does not move the others
        let mut entries = Vec::with_capacity(fields.len() + 8);
        entries.extend(fields.into_iter().map(|(prefix, key, raw)| Entry {
            prefix,
            key: Cow::Borrowed(key),
            removed: false,
            slot: Slot {
                raw: Some(raw),
                parsed: OnceCell::new(),
                owned: None,
            },
        }));
        Some(LazyObject {
            sorted: entries.len(),
            entries,
            whole: OnceCell::new(),
            changed: false,
        })
    }

    /// Before every change: the whole-object view is rebuilt when asked for again.
    fn touch(&mut self) {
        self.whole = OnceCell::new();
        self.changed = true;
    }

    /// The entry of `key`, a removed one included. A linear scan: with the few fields of a
    /// message its branches predict better than a binary search's, and nearly every step
    /// is one integer comparison.
    fn find(&self, key: &str) -> Option<usize> {
        let prefix = key_prefix(key);
        let (sorted, added) = self.entries.split_at(self.sorted);
        for (i, e) in sorted.iter().enumerate() {
            if e.prefix < prefix {
                continue;
            }
            if e.prefix > prefix {
                break;
            }
            if e.key == key {
                return Some(i);
            }
        }
        added
            .iter()
            .position(|e| e.is(prefix, key))
            .map(|i| self.sorted + i)
    }

    /// The entry of `key`, when it holds a field.
    fn live(&self, key: &str) -> Option<usize> {
        self.find(key).filter(|&i| !self.entries[i].removed)
    }

    /// Sets `key` to `slot` in its entry, or in a new one.
    fn put(&mut self, key: &str, slot: Slot<'a>) -> usize {
        match self.find(key) {
            Some(i) => {
                let e = &mut self.entries[i];
                e.removed = false;
                e.slot = slot;
                i
            }
            None => {
                self.entries.push(Entry {
                    prefix: key_prefix(key),
                    key: Cow::Owned(key.to_string()),
                    removed: false,
                    slot,
                });
                self.entries.len() - 1
            }
        }
    }

    /// The field's value for changing it (parsed if it was not yet); it is then written out
    /// by serde_json.
    pub fn field_mut(&mut self, key: &str) -> Option<&mut Value> {
        let i = self.live(key)?;
        self.touch();
        Some(self.entries[i].slot.get_mut())
    }

    /// The field's value for changing it, inserting `make()` first when it is missing.
    pub fn field_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> Value) -> &mut Value {
        self.touch();
        let i = match self.live(key) {
            Some(i) => i,
            None => self.put(key, Slot::from_value(make())),
        };
        self.entries[i].slot.get_mut()
    }

    /// Removes the field; its slot keeps the original text, so moving it elsewhere
    /// ([`LazyObject::insert`]) never parses it.
    pub fn remove(&mut self, key: &str) -> Option<Slot<'a>> {
        let i = self.live(key)?;
        self.touch();
        let e = &mut self.entries[i];
        e.removed = true;
        Some(std::mem::replace(
            &mut e.slot,
            Slot::from_value(Value::Null),
        ))
    }

    /// Sets the field (replacing any value it had).
    pub fn insert(&mut self, key: &str, slot: Slot<'a>) {
        self.touch();
        self.put(key, slot);
    }

    /// The text of a field that is a string written without escapes and not changed, read
    /// without parsing it; `None` otherwise (read it with [`JsonRoot::field`] then).
    pub fn plain_str(&self, key: &str) -> Option<&'a str> {
        let i = self.live(key)?;
        let raw = self.entries[i].slot.raw?;
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| !e.removed).count()
    }

    /// True when the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields in key order: the payload's (already sorted) merged with those steps
    /// added (sorted first, in place).
    fn in_order(&mut self) -> impl Iterator<Item = &Entry<'a>> {
        let (sorted, added) = self.entries.split_at_mut(self.sorted);
        added.sort_by(|a, b| cmp_keys(a.prefix, &a.key, b.prefix, &b.key));
        let mut sorted = sorted.iter().peekable();
        let mut added = added.iter().peekable();
        std::iter::from_fn(move || {
            let take_sorted = match (sorted.peek(), added.peek()) {
                (Some(a), Some(b)) => {
                    cmp_keys(a.prefix, &a.key, b.prefix, &b.key) == Ordering::Less
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if take_sorted {
                sorted.next()
            } else {
                added.next()
            }
        })
        .filter(|e| !e.removed)
    }

    /// The object as JSON: `{"key":value,...}` in key order, each unchanged value as it was
    /// written in the payload, each changed one serialized by serde_json.
    pub fn write_json(&mut self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.push(b'{');
        for (i, e) in self.in_order().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match &e.key {
                // a key from the payload has no escapes and no control characters
                Cow::Borrowed(key) => {
                    out.push(b'"');
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'"');
                }
                Cow::Owned(key) => serde_json::to_writer(&mut *out, key)?,
            }
            out.push(b':');
            match e.slot.raw {
                Some(raw) => out.extend_from_slice(raw.as_bytes()),
                None => serde_json::to_writer(&mut *out, e.slot.get())?,
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// The object as a `Value`, as `serde_json::from_slice` would have made it from the
    /// payload with the changes applied. `payload` is the text it was parsed from: an
    /// untouched object is parsed from it in one go.
    pub fn into_value(self, payload: &[u8]) -> Value {
        if !self.changed {
            if let Ok(v) = serde_json::from_slice(payload) {
                return v;
            }
        }
        self.build_map()
    }

    fn build_map(&self) -> Value {
        let map: Map<String, Value> = self
            .entries
            .iter()
            .filter(|e| !e.removed)
            .map(|e| (e.key.to_string(), e.slot.get().clone()))
            .collect();
        Value::Object(map)
    }
}

impl JsonRoot for LazyObject<'_> {
    fn field(&self, key: &str) -> Option<&Value> {
        let i = self.live(key)?;
        Some(self.entries[i].slot.get())
    }

    fn has_field(&self, key: &str) -> bool {
        self.live(key).is_some()
    }

    fn whole(&self) -> &Value {
        self.whole.get_or_init(|| self.build_map())
    }

    fn plain_text(&self, key: &str) -> Option<&str> {
        self.plain_str(key)
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// The whitespace serde_json skips.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A key without escapes or control characters (any other makes the caller give up).
    fn key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = plain_string_end(self.bytes, start);
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        self.text.get(start..end)
    }

    /// One value, checked as serde_json's parser checks it; its text.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.at;
        let end = match self.simple_end(start) {
            Some(end) => end,
            None => {
                let rest = self.bytes.get(start..)?;
                let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Checked>();
                match stream.next()? {
                    Ok(Checked) => {}
                    Err(_) => return None,
                }
                start + stream.byte_offset()
            }
        };
        self.at = end;
        self.text.get(start..end)
    }

    /// Where a value that needs no parser to be judged ends: a string without escapes or
    /// control characters (the payload is valid UTF-8), an integer of at most 18 digits
    /// without a leading zero, `true`, `false`, `null`. `None` for anything else, which
    /// serde_json then checks; what follows the value is checked by the caller.
    fn simple_end(&self, start: usize) -> Option<usize> {
        let bytes = self.bytes;
        match *bytes.get(start)? {
            b'"' => {
                let i = plain_string_end(bytes, start + 1);
                (bytes.get(i) == Some(&b'"')).then_some(i + 1)
            }
            b'-' | b'0'..=b'9' => {
                let digits_at = start + usize::from(bytes[start] == b'-');
                let mut i = digits_at;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let digits = i - digits_at;
                let leading_zero = digits > 1 && bytes[digits_at] == b'0';
                let more = matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
                ((1..=18).contains(&digits) && !leading_zero && !more).then_some(i)
            }
            b't' => bytes[start..].starts_with(b"true").then_some(start + 4),
            b'f' => bytes[start..].starts_with(b"false").then_some(start + 5),
            b'n' => bytes[start..].starts_with(b"null").then_some(start + 4),
            _ => None,
        }
    }
}

/// The index of the first `"`, `\\` or control character at or after `from` (the
/// length when there is none), eight bytes at a time.
fn plain_string_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // a byte of `x ^ c` is zero where `x` holds `c`; `x - 0x20` borrows where a byte
        // is below 0x20 (bytes of 0x80 and up, UTF-8, are masked out by `!x`)
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if found & HIGHS != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// A JSON value checked the way `serde_json::Value` parses it (every string, number and
/// key goes through the same parser code) but kept nowhere.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CheckSeed { depth: 0 }.deserialize(d)
    }
}

#[derive(Clone, Copy)]
struct CheckSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for CheckSeed {
    type Value = Checked;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, read as `Value` reads one (a string, escapes and all).
struct CheckKey;

impl<'de> DeserializeSeed<'de> for CheckKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(CheckSeed { depth: 0 }).map(|_| ())
    }
}

impl CheckSeed {
    fn deeper<E: serde::de::Error>(self) -> Result<CheckSeed, E> {
        if self.depth >= MAX_NESTED_DEPTH {
            return Err(E::custom("nested too deep for the lazy reader"));
        }
        Ok(CheckSeed {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for CheckSeed {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(CheckKey)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the old path made of `text`, and what the lazy reader makes of it: the same
    /// value when the lazy reader takes it.
    fn same_as_serde(text: &str) -> Option<Value> {
        let lazy = LazyObject::parse(text.as_bytes());
        let serde: Result<Value, _> = serde_json::from_str(text);
        match lazy {
            Some(mut obj) => {
                let Ok(expected) = serde else {
                    panic!("lazy accepted what serde_json rejects: {text}");
                };
                assert_eq!(obj.whole(), &expected, "{text}");
                let mut out = Vec::new();
                obj.write_json(&mut out).unwrap();
                let written: Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(written, expected, "{text}");
                assert_eq!(obj.clone().into_value(text.as_bytes()), expected);
                Some(expected)
            }
            None => None,
        }
    }

    #[test]
    fn reads_objects_like_serde_json() {
        for text in [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            "{\n\t\"a\" : 1 ,\r\n \"b\":[1, 2, {\"c\": null}] }\n",
            r#"{"s":"x\"y\\z\u00e9\ud83d\ude00","n":-1.5e3,"t":true,"f":false,"z":null}"#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":1e300}"#,
            r#"{"nested":{"b":{"c":[[],[{}]]}}}"#,
            r#"{"i":0,"j":-0,"k":123456789012345678,"l":1234567890123456789012,"m":-7}"#,
            r#"{"e":"","u":"日本語","esc":"a\/b\n"}"#,
        ] {
            assert!(same_as_serde(text).is_some(), "not taken lazily: {text}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_in_key_order() {
        let text = r#"{"b":1,"a":2,"b":3,"a":4,"c":5}"#;
        let v = same_as_serde(text).unwrap();
        assert_eq!(v, json!({"a": 4, "b": 3, "c": 5}));
        let mut obj = LazyObject::parse(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        obj.write_json(&mut out).unwrap();
        assert_eq!(out, br#"{"a":4,"b":3,"c":5}"#);
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle() {
        for text in [
            r#"[1,2]"#,
            r#""text""#,
            r#"5"#,
            r#"{"a\u0062":1}"#,
            r#"{"a\"":1}"#,
        ] {
            assert!(LazyObject::parse(text.as_bytes()).is_none(), "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(120), "]".repeat(120));
        assert!(LazyObject::parse(deep.as_bytes()).is_none());
    }

    #[test]
    fn never_accepts_invalid_json() {
        for text in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":1}x",
            "{\"a\":1}{}",
            "{\"a\":01}",
            "{\"a\":00}",
            "{\"a\":-01}",
            "{\"a\":1x}",
            "{\"a\":1 2}",
            "{\"a\":nul}",
            "{\"a\":nullx}",
            "{\"a\":\"x\"\"y\"}",
            "{\"a\":\"new\nline\"}",
            "{\"a\":1.}",
            "{\"a\":1e400}",
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":truex}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00x\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":[1,]}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":{\"\\ud800\":1}}",
            "{\"a\":NaN}",
            "{\"a\":'x'}",
            "{\"a\":\"unterminated}",
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
            assert!(LazyObject::parse(text.as_bytes()).is_none(), "{text}");
        }
        assert!(LazyObject::parse(b"{\"a\":\"\xff\"}").is_none());
    }

    #[test]
    fn untouched_fields_are_copied_verbatim_and_changes_serialized() {
        let text = r#"{"keep": [1, 2.50, "\u00e9"], "p": "1.5", "gone": 1, "mv": {"x": 1}}"#;
        let mut obj = LazyObject::parse(text.as_bytes()).unwrap();
        assert_eq!(obj.field("p"), Some(&json!("1.5")));
        if let Some(p) = obj.field_mut("p") {
            *p = json!(1.5);
        }
        assert!(obj.remove("gone").is_some());
        assert!(obj.remove("gone").is_none());
        let moved = obj.remove("mv").unwrap();
        obj.insert("z\"q", moved);
        obj.field_or_insert_with("new", || json!({}))
            .as_object_mut()
            .unwrap()
            .insert("k".into(), json!(true));
        let mut out = Vec::new();
        obj.write_json(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"keep":[1, 2.50, "\u00e9"],"new":{"k":true},"p":1.5,"z\"q":{"x": 1}}"#
        );
        assert_eq!(obj.len(), 4);
        assert_eq!(
            obj.whole(),
            &json!({"keep": [1, 2.5, "é"], "new": {"k": true}, "p": 1.5, "z\"q": {"x": 1}})
        );
        assert!(obj.has_field("keep") && !obj.has_field("gone"));
    }

    #[test]
    fn removed_fields_come_back_and_added_ones_merge_in_key_order() {
        let text = r#"{"b":1,"d":2,"f":3}"#;
        let mut obj = LazyObject::parse(text.as_bytes()).unwrap();
        let d = obj.remove("d").unwrap();
        assert_eq!(obj.field("d"), None);
        assert!(obj.field_mut("d").is_none());
        obj.insert("a", Slot::from_value(json!(0)));
        obj.insert("zz", Slot::from_value(json!(9)));
        obj.insert("e", d);
        obj.insert("c", Slot::from_value(json!("x")));
        obj.insert("c", Slot::from_value(json!("y")));
        obj.insert("d", Slot::from_value(json!([])));
        assert_eq!(obj.remove("f").map(Slot::into_value), Some(json!(3)));
        *obj.field_or_insert_with("f", || json!(7)) = json!(8);
        let mut out = Vec::new();
        obj.write_json(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":0,"b":1,"c":"y","d":[],"e":2,"f":8,"zz":9}"#
        );
        assert_eq!(obj.len(), 7);
        assert_eq!(
            obj.into_value(text.as_bytes()),
            json!({"a": 0, "b": 1, "c": "y", "d": [], "e": 2, "f": 8, "zz": 9})
        );
    }

    #[test]
    fn string_scan_stops_at_the_first_quote_backslash_or_control_character() {
        for len in 0..24 {
            for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..len {
                    let mut bytes: Vec<u8> = "é".repeat(len).into_bytes();
                    bytes.truncate(len);
                    bytes
                        .iter_mut()
                        .for_each(|b| *b = if *b < 0x20 { b'a' } else { *b });
                    bytes[at] = stop;
                    assert_eq!(
                        plain_string_end(&bytes, 0),
                        at,
                        "len {len} stop {stop} at {at}"
                    );
                }
                let plain = vec![b'x'; len];
                assert_eq!(plain_string_end(&plain, 0), len);
                let high = vec![0xe9u8; len];
                assert_eq!(plain_string_end(&high, 0), len);
            }
        }
    }

    #[test]
    fn key_prefixes_order_as_keys_do() {
        let keys = [
            "",
            "a",
            "a\u{0}",
            "ab",
            "abcdefgh",
            "abcdefgha",
            "abcdefgi",
            "b",
            "é",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(
                    cmp_keys(key_prefix(a), a, key_prefix(b), b),
                    a.cmp(b),
                    "{a:?} {b:?}"
                );
            }
        }
        assert_eq!(key_prefix("ab"), 0x6162_0000_0000_0000);
    }
}
