//! `GROVE_SIM_LOG=<level>[,<target prefix>]`: prints the `tracing` events of a run (openraft's,
//! Grove's) at or above `level`, stamped with simulated time and the member whose gate is in
//! scope. For debugging one seed; off by default (no subscriber is installed).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

struct Printer {
    level: Level,
    target: Option<String>,
    start: tokio::time::Instant,
    next_span: AtomicU64,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Printer {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
            && self
                .target
                .as_deref()
                .is_none_or(|t| metadata.target().starts_with(t))
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let at = tokio::time::Instant::now() - self.start;
        let member = grove_rpc::pause::current()
            .map(|gate| gate.label().to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>10.3} ms  {member:<4} {} {}:{}",
            at.as_secs_f64() * 1e3,
            event.metadata().level(),
            event.metadata().target(),
            fields.0
        );
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The subscriber `GROVE_SIM_LOG` asks for, if any (call inside the run's runtime).
pub fn from_env() -> Option<tracing::Dispatch> {
    let spec = std::env::var("GROVE_SIM_LOG").ok()?;
    let (level, target) = match spec.split_once(',') {
        Some((level, target)) => (level, Some(target.to_string())),
        None => (spec.as_str(), None),
    };
    let level = level.parse().ok()?;
    Some(tracing::Dispatch::new(Printer {
        level,
        target,
        start: tokio::time::Instant::now(),
        next_span: AtomicU64::new(0),
    }))
}
