//! What one attempt's provider calls used, per provider and model, reported to the orchestrator as
//! `usage` events before the attempt's end (its `completed` event or its error status), so GetStats can
//! show what each account spends upstream. The same calls are counted in the processor's metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use atelier_proto::v1;

/// The attempt's tally; shared by its concurrent calls (a pose set's shots).
#[derive(Debug, Default)]
pub struct Usage {
    by_model: Mutex<BTreeMap<(String, String), v1::ProviderUsage>>,
}

impl Usage {
    /// Counts one call: `images` returned, or `None` when it failed.
    pub fn call(&self, provider: &str, model: &str, took: Duration, images: Option<usize>) {
        let mut by_model = self
            .by_model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = by_model
            .entry((provider.to_string(), model.to_string()))
            .or_insert_with(|| v1::ProviderUsage {
                provider: provider.to_string(),
                model: model.to_string(),
                ..Default::default()
            });
        entry.calls += 1;
        entry.seconds += took.as_secs_f64();
        match images {
            Some(n) => entry.images += n as u64,
            None => entry.failures += 1,
        }
    }

    /// Everything counted so far, ordered by provider and model; the tally is empty afterwards, so
    /// nothing is reported twice.
    pub fn take(&self) -> Vec<v1::ProviderUsage> {
        let mut by_model = self
            .by_model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *by_model).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_add_up_per_provider_and_model_and_are_taken_once() {
        let usage = Usage::default();
        usage.call("ark", "seedream", Duration::from_millis(500), None);
        usage.call("backup", "seedream", Duration::from_millis(250), Some(2));
        usage.call("ark", "seedream", Duration::from_millis(500), Some(1));
        let taken = usage.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            (
                taken[0].provider.as_str(),
                taken[0].calls,
                taken[0].images,
                taken[0].failures
            ),
            ("ark", 2, 1, 1)
        );
        assert!((taken[0].seconds - 1.0).abs() < 1e-9);
        assert_eq!(
            (
                taken[1].provider.as_str(),
                taken[1].calls,
                taken[1].images,
                taken[1].failures
            ),
            ("backup", 1, 2, 0)
        );
        assert!(usage.take().is_empty());
    }
}
