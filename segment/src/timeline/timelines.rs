//! [`Timelines`]: every datasource's and namespace's [`Timeline`], so the broker and coordinator
//! can hold all of them in one place. Namespaces never interact; empty timelines are dropped.

use std::collections::BTreeMap;

use super::{Timeline, TimelineEntry};
use crate::id::SegmentId;
use crate::time::Interval;

/// All timelines, per datasource and namespace. Namespaces never interact.
#[derive(Clone, Debug)]
pub struct Timelines<T> {
    data_sources: BTreeMap<String, Namespaces<T>>,
}

#[derive(Clone, Debug)]
struct Namespaces<T> {
    default: Timeline<T>,
    named: BTreeMap<String, Timeline<T>>,
}

impl<T> Namespaces<T> {
    fn get(&self, namespace: Option<&str>) -> Option<&Timeline<T>> {
        match namespace {
            None => Some(&self.default),
            Some(ns) => self.named.get(ns),
        }
    }

    fn is_empty(&self) -> bool {
        self.default.is_empty() && self.named.is_empty()
    }
}

impl<T> Default for Timelines<T> {
    fn default() -> Self {
        Timelines::new()
    }
}

impl<T> Timelines<T> {
    pub fn new() -> Self {
        Timelines {
            data_sources: BTreeMap::new(),
        }
    }

    /// Adds a segment to its datasource and namespace's timeline (see [`Timeline::add`]).
    pub fn add(&mut self, id: &SegmentId, core_partitions: u32, payload: T) -> Result<(), String> {
        let namespaces = self
            .data_sources
            .entry(id.data_source.clone())
            .or_insert_with(|| Namespaces {
                default: Timeline::new(),
                named: BTreeMap::new(),
            });
        let timeline = match &id.namespace {
            None => &mut namespaces.default,
            Some(ns) => namespaces.named.entry(ns.clone()).or_default(),
        };
        let result = timeline.add(id, core_partitions, payload);
        self.prune(id);
        result
    }

    pub fn remove(&mut self, id: &SegmentId) -> Option<T> {
        let namespaces = self.data_sources.get_mut(&id.data_source)?;
        let timeline = match &id.namespace {
            None => &mut namespaces.default,
            Some(ns) => namespaces.named.get_mut(ns)?,
        };
        let payload = timeline.remove(id);
        self.prune(id);
        payload
    }

    /// Drops `id`'s namespace and datasource entries if they became empty.
    fn prune(&mut self, id: &SegmentId) {
        let Some(namespaces) = self.data_sources.get_mut(&id.data_source) else {
            return;
        };
        if let Some(ns) = &id.namespace
            && namespaces.named.get(ns).is_some_and(Timeline::is_empty)
        {
            namespaces.named.remove(ns);
        }
        if namespaces.is_empty() {
            self.data_sources.remove(&id.data_source);
        }
    }

    pub fn timeline(&self, data_source: &str, namespace: Option<&str>) -> Option<&Timeline<T>> {
        self.data_sources.get(data_source)?.get(namespace)
    }

    pub fn get(&self, id: &SegmentId) -> Option<&T> {
        self.timeline(&id.data_source, id.namespace.as_deref())?
            .get(id)
    }

    /// See [`Timeline::lookup`]; empty for an unknown datasource or namespace.
    pub fn lookup(
        &self,
        data_source: &str,
        namespace: Option<&str>,
        interval: Interval,
    ) -> Vec<TimelineEntry<'_, T>> {
        self.timeline(data_source, namespace)
            .map(|t| t.lookup(interval))
            .unwrap_or_default()
    }

    /// The namespaces of `data_source` that hold segments, default (`None`) first, then by name.
    pub fn namespaces(&self, data_source: &str) -> Vec<Option<&str>> {
        let Some(namespaces) = self.data_sources.get(data_source) else {
            return Vec::new();
        };
        let default = (!namespaces.default.is_empty()).then_some(None);
        default
            .into_iter()
            .chain(namespaces.named.keys().map(|ns| Some(ns.as_str())))
            .collect()
    }

    /// Datasources that hold segments, sorted.
    pub fn data_sources(&self) -> impl Iterator<Item = &str> + '_ {
        self.data_sources.keys().map(String::as_str)
    }

    pub fn is_overshadowed(&self, id: &SegmentId) -> bool {
        self.timeline(&id.data_source, id.namespace.as_deref())
            .is_some_and(|t| t.is_overshadowed(id))
    }

    /// Fully overshadowed segments of every timeline, sorted.
    pub fn overshadowed(&self) -> Vec<SegmentId> {
        let mut out: Vec<SegmentId> = self
            .data_sources
            .values()
            .flat_map(|n| std::iter::once(&n.default).chain(n.named.values()))
            .flat_map(Timeline::overshadowed)
            .collect();
        out.sort_unstable();
        out
    }

    /// Total number of segments held.
    pub fn len(&self) -> usize {
        self.data_sources
            .values()
            .flat_map(|n| std::iter::once(&n.default).chain(n.named.values()))
            .map(Timeline::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.data_sources.is_empty()
    }
}
