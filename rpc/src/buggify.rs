//! `buggify!()`: fault sites in production code that only the simulator activates (after
//! FoundationDB's BUGGIFY).
//!
//! A site is an expression `buggify!()` that is `false` unless the simulator enabled
//! buggification on the current thread ([`enable`]). Once enabled, each site (named by its
//! file and line) is switched on or off for the whole run the first time it is reached (on with
//! probability [`SITE_ACTIVE_PROBABILITY`]), and an active site fires with the run's fire
//! probability. Every draw comes from one seeded SplitMix64 stream, so a seed replays the same
//! fires. Production never calls [`enable`]: a site then costs one thread-local read.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::rng::SplitMix64;

/// Chance that a site is active in a run where buggification is enabled.
pub const SITE_ACTIVE_PROBABILITY: f64 = 0.25;

struct State {
    rng: SplitMix64,
    fire_probability: f64,
    sites: BTreeMap<&'static str, bool>,
    fired: u64,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Turns buggification on for this thread: sites draw from `seed`, active ones fire with
/// `fire_probability`.
pub fn enable(seed: u64, fire_probability: f64) {
    STATE.with(|state| {
        *state.borrow_mut() = Some(State {
            rng: SplitMix64::new(seed),
            fire_probability,
            sites: BTreeMap::new(),
            fired: 0,
        })
    });
}

/// Turns buggification off for this thread; returns how many times sites fired.
pub fn disable() -> u64 {
    STATE.with(|state| state.borrow_mut().take().map_or(0, |state| state.fired))
}

/// Whether the site `site` fires now (always `false` unless [`enable`]d on this thread).
pub fn fire(site: &'static str) -> bool {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let Some(state) = state.as_mut() else {
            return false;
        };
        let active = match state.sites.get(site) {
            Some(&active) => active,
            None => {
                let active = state.rng.chance(SITE_ACTIVE_PROBABILITY);
                state.sites.insert(site, active);
                active
            }
        };
        let fires = active && state.rng.chance(state.fire_probability);
        state.fired += u64::from(fires);
        fires
    })
}

/// A fault site: `true` only when the simulator has enabled buggification and this site
/// fires (see the [`buggify`](crate::buggify) module).
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify::fire(concat!(file!(), ":", line!()))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(seed: u64) -> Vec<bool> {
        enable(seed, 0.5);
        let draws = (0..64)
            .map(|i| {
                if i % 2 == 0 {
                    crate::buggify!()
                } else {
                    crate::buggify!()
                }
            })
            .collect();
        disable();
        draws
    }

    #[test]
    fn off_unless_enabled_and_replayable_by_seed() {
        assert!(!crate::buggify!());
        assert_eq!(fires(3), fires(3));
        let any = (0..32).any(|seed| fires(seed).contains(&true));
        assert!(any, "some site fires for some seed");
        assert!(!crate::buggify!(), "disabled again");
    }
}
