//! No panic. Source: the simulator's own contract (TigerBeetle's VOPR and openraft's turmoil
//! tests treat any panic as a failure): a panic in a member's task, a client or the driver
//! fails the run, even when tokio would have swallowed it into a `JoinError`.
//!
//! A process-wide panic hook (installed once, chained to the previous one) records the first
//! panic message of the current thread while a simulation runs on it.

use std::cell::RefCell;
use std::sync::Once;

use super::Violation;

thread_local! {
    static WATCHING: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Starts watching this thread for panics.
pub fn watch() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            WATCHING.with(|watching| {
                if let Some(seen @ None) = &mut *watching.borrow_mut() {
                    *seen = Some(info.to_string());
                }
            });
            previous(info);
        }));
    });
    WATCHING.with(|watching| *watching.borrow_mut() = Some(None));
}

/// Stops watching; the first panic seen since [`watch`], as a violation.
pub fn finish() -> Option<Violation> {
    WATCHING
        .with(|watching| watching.borrow_mut().take().flatten())
        .map(|message| Violation::new("no panic", message))
}
