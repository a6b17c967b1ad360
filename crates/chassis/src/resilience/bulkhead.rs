//! A cap on concurrent calls to one dependency. When it is full the caller
//! is refused at once: waiting would let one slow dependency hold every
//! worker of the caller.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct Bulkhead {
    name: String,
    slots: Arc<Semaphore>,
}

impl Bulkhead {
    pub fn new(name: impl Into<String>, max_concurrent: usize) -> Self {
        Self {
            name: name.into(),
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// A slot for one call, held until dropped; `None` when full.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            metrics::counter!("bulkhead_rejections_total", "name" => self.name.clone())
                .increment(1);
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_means_refused_and_a_freed_slot_is_reused() {
        let bulkhead = Bulkhead::new("test", 2);
        let first = bulkhead.try_enter().unwrap();
        let _second = bulkhead.try_enter().unwrap();
        assert!(bulkhead.try_enter().is_none());
        drop(first);
        assert!(bulkhead.try_enter().is_some());
    }
}
