//! Reading typed values out of a checked block. `resolve` has already
//! reported every wrong type, so a value of the wrong shape reads as absent.

use crate::syntax::ast::{Block, Entry, Value, ValueKind};
use std::collections::BTreeMap;

/// The fields of one declaration.
pub struct Fields<'p> {
    entry: Option<&'p Entry>,
    block: Option<&'p Block>,
}

pub fn as_str(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::Str(s) | ValueKind::Text(s) => Some(s),
        _ => None,
    }
}

impl<'p> Fields<'p> {
    pub fn of(entry: &'p Entry) -> Fields<'p> {
        Fields {
            entry: Some(entry),
            block: entry.block(),
        }
    }

    /// The fields of a nested block such as `keep { ... }`.
    pub fn of_block(block: &'p Block) -> Fields<'p> {
        Fields {
            entry: None,
            block: Some(block),
        }
    }

    /// The declaration's name: its first label.
    pub fn name(&self) -> String {
        self.entry
            .and_then(|e| e.labels.first())
            .map(|l| l.text.clone())
            .unwrap_or_default()
    }

    fn entries(&self) -> impl Iterator<Item = &'p Entry> {
        self.block.into_iter().flat_map(|b| b.entries.iter())
    }

    pub fn value(&self, key: &str) -> Option<&'p Value> {
        self.entries()
            .find(|e| e.key.text == key && e.labels.is_empty())
            .and_then(Entry::value)
    }

    /// Every `key = value` entry without labels.
    pub fn all(&self) -> impl Iterator<Item = (&'p str, &'p Value)> {
        self.entries()
            .filter_map(|e| Some((e.key.text.as_str(), e.value()?)))
    }

    pub fn string(&self, key: &str) -> Option<&'p str> {
        self.value(key).and_then(as_str)
    }

    /// A bare word (`engine = postgres`).
    pub fn word(&self, key: &str) -> Option<&'p str> {
        match &self.value(key)?.kind {
            ValueKind::Ref(name) => Some(&name.text),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.value(key)?.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.value(key)?.kind {
            ValueKind::Int(n) => Some(n),
            _ => None,
        }
    }

    pub fn port(&self, key: &str) -> Option<u16> {
        self.int(key).and_then(|n| u16::try_from(n).ok())
    }

    pub fn size(&self, key: &str) -> Option<u64> {
        match self.value(key)?.kind {
            ValueKind::Size(q) => Some(q.bytes()),
            _ => None,
        }
    }

    pub fn duration_ms(&self, key: &str) -> Option<u64> {
        match self.value(key)?.kind {
            ValueKind::Duration(q) => Some(q.millis()),
            _ => None,
        }
    }

    pub fn list(&self, key: &str) -> &'p [Value] {
        match self.value(key).map(|v| &v.kind) {
            Some(ValueKind::List(list)) => &list.items,
            _ => &[],
        }
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        self.list(key)
            .iter()
            .filter_map(as_str)
            .map(str::to_string)
            .collect()
    }

    pub fn strings_with_spans(&self, key: &str) -> Vec<(String, crate::source::Span)> {
        self.list(key)
            .iter()
            .filter_map(|v| Some((as_str(v)?.to_string(), v.span)))
            .collect()
    }

    /// The bare words of a list (`roles = [balancer, runner]`).
    pub fn words(&self, key: &str) -> Vec<String> {
        self.list(key)
            .iter()
            .filter_map(|v| match &v.kind {
                ValueKind::Ref(name) => Some(name.text.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn reference(&self, key: &str, ids: &BTreeMap<&str, usize>) -> Option<usize> {
        self.word(key).and_then(|name| ids.get(name).copied())
    }

    pub fn references(&self, key: &str, ids: &BTreeMap<&str, usize>) -> Vec<usize> {
        self.words(key)
            .iter()
            .filter_map(|name| ids.get(name.as_str()).copied())
            .collect()
    }

    /// The block of a nested `key { ... }` entry.
    pub fn block(&self, key: &str) -> Option<&'p Block> {
        self.entries()
            .find(|e| e.key.text == key)
            .and_then(Entry::block)
    }

    /// Every nested block entry with this keyword (`worker NAME { ... }`).
    pub fn blocks<'k>(&self, key: &'k str) -> impl Iterator<Item = &'p Entry> + 'k
    where
        'p: 'k,
    {
        self.entries()
            .filter(move |e| e.key.text == key && e.block().is_some())
    }

    /// Every `key "label" = value` entry.
    pub fn labelled<'k>(&self, key: &'k str) -> impl Iterator<Item = (&'p str, &'p Value)> + 'k
    where
        'p: 'k,
    {
        self.entries()
            .filter(move |e| e.key.text == key)
            .filter_map(|e| Some((e.labels.first()?.text.as_str(), e.value()?)))
    }
}
