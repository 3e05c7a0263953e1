//! Wakes watchers when a job has new stored events, and carries live-only events to them. The database
//! is the source of truth for stored events: a wake-up only says "look again", so a watcher that is
//! woken twice just reads the log once more.
//!
//! Wake-ups go only to the watchers of the job that moved: each watched job has one slot (a `watch`
//! channel) that lives while someone watches it. The account-wide streams and the webhook fan-out
//! follow every job through one coalescing counter instead.
//!
//! Live events ([`EventBus::publish`]) are never stored: a slot keeps the last [`LIVE_KEPT`] of them so
//! that a watcher busy sending a batch still sees the recent ones, and a job nobody watches drops them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use atelier_proto::v1 as pb;
use tokio::sync::watch;

/// Live events a watched job keeps for watchers that have not read them yet.
pub const LIVE_KEPT: usize = 32;

/// Wake-ups and live events for the watchers of this replica.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// Watched jobs; an entry goes with its last watcher.
    jobs: Mutex<HashMap<Arc<str>, watch::Sender<Slot>>>,
    /// Counts wake-ups of any job, for the streams that follow every job.
    all: watch::Sender<u64>,
}

/// What a watched job has to say.
#[derive(Default)]
struct Slot {
    /// Bumped when the job has new stored events.
    stored: u64,
    /// Number of the next live event.
    next_live: u64,
    /// The newest live events, with their numbers.
    live: VecDeque<(u64, Arc<pb::JobEvent>)>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (all, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(HashMap::new()),
                all,
            }),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<Arc<str>, watch::Sender<Slot>>> {
        // A panic while holding the lock leaves the map consistent: every change is one call.
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says that the job has new stored events: wakes its watchers and the streams of every job.
    pub fn notify(&self, job_id: &str) {
        if let Some(slot) = self.jobs().get(job_id) {
            slot.send_modify(|s| s.stored = s.stored.wrapping_add(1));
        }
        self.inner.all.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes every watcher of every job, as if each had new stored events: for when notifications
    /// may have been lost (the PostgreSQL listener reconnected).
    pub fn notify_all(&self) {
        for slot in self.jobs().values() {
            slot.send_modify(|s| s.stored = s.stored.wrapping_add(1));
        }
        self.inner.all.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Hands a live-only event to this replica's watchers of the job, as it is; nothing is stored,
    /// and nobody watching means nobody gets it.
    pub fn publish(&self, job_id: &str, event: pb::JobEvent) {
        if let Some(slot) = self.jobs().get(job_id) {
            let event = Arc::new(event);
            slot.send_modify(|s| {
                if s.live.len() == LIVE_KEPT {
                    s.live.pop_front();
                }
                s.live.push_back((s.next_live, event));
                s.next_live += 1;
            });
        }
    }

    /// Wake-ups of one job; subscribe before reading the log so nothing falls between.
    pub fn watch_job(&self, job_id: &str) -> JobWakes {
        let mut jobs = self.jobs();
        let rx = match jobs.get(job_id) {
            Some(slot) => slot.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Slot::default());
                jobs.insert(Arc::from(job_id), tx);
                rx
            }
        };
        drop(jobs);
        let (stored, next_live) = {
            let slot = rx.borrow();
            (slot.stored, slot.next_live)
        };
        JobWakes {
            bus: self.clone(),
            job_id: Arc::from(job_id),
            rx,
            stored,
            next_live,
        }
    }

    /// Wake-ups of any job, coalesced: a receiver woken once may stand for many jobs. Subscribe
    /// before reading so nothing falls between.
    pub fn subscribe(&self) -> AllWakes {
        AllWakes(self.inner.all.subscribe())
    }

    /// Jobs with at least one watcher on this replica.
    pub fn watched_jobs(&self) -> usize {
        self.jobs().len()
    }
}

/// What woke a job's watcher.
#[derive(Debug, Default)]
pub struct Woken {
    /// The job has new stored events (or may have): read the log.
    pub stored: bool,
    /// Live events published since the last wake-up, oldest first.
    pub live: Vec<Arc<pb::JobEvent>>,
}

/// One watcher's wake-ups for one job.
pub struct JobWakes {
    bus: EventBus,
    job_id: Arc<str>,
    rx: watch::Receiver<Slot>,
    stored: u64,
    next_live: u64,
}

impl JobWakes {
    /// Waits for the next wake-up; returns at once when one came since the last call.
    pub async fn wait(&mut self) -> Woken {
        // The bus holds the sender for as long as this receiver lives, so `changed` cannot fail;
        // if it ever did, reading the log again is the safe answer.
        if self.rx.changed().await.is_err() {
            return Woken {
                stored: true,
                live: Vec::new(),
            };
        }
        let slot = self.rx.borrow_and_update();
        let stored = slot.stored != self.stored;
        self.stored = slot.stored;
        let live = slot
            .live
            .iter()
            .filter(|(n, _)| *n >= self.next_live)
            .map(|(_, e)| Arc::clone(e))
            .collect();
        self.next_live = slot.next_live;
        Woken { stored, live }
    }
}

impl Drop for JobWakes {
    fn drop(&mut self) {
        let mut jobs = self.bus.jobs();
        // Subscribing takes the same lock, so no watcher can join between the count and the removal.
        if jobs
            .get(&*self.job_id)
            .is_some_and(|slot| slot.receiver_count() <= 1)
        {
            jobs.remove(&*self.job_id);
        }
    }
}

/// Wake-ups of any job for one follower.
pub struct AllWakes(watch::Receiver<u64>);

impl AllWakes {
    /// Waits until some job moved since the last call (at once if one did).
    pub async fn wait(&mut self) {
        // The bus holds the sender; a closed channel only happens without a bus, where waiting
        // for ever is right.
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queue(position: u32) -> pb::JobEvent {
        pb::JobEvent {
            event: Some(pb::job_event::Event::Queue(pb::QueuePosition {
                position,
                estimated_seconds: 0,
            })),
            ..Default::default()
        }
    }

    /// Whether a wake-up is already there (waiting no longer than a poll).
    async fn woken(wakes: &mut JobWakes) -> Option<Woken> {
        tokio::time::timeout(Duration::ZERO, wakes.wait())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_notify_wakes_only_the_watchers_of_that_job() {
        let bus = EventBus::new();
        let mut a = bus.watch_job("job-a");
        let mut a2 = bus.watch_job("job-a");
        let mut b = bus.watch_job("job-b");
        let mut all = bus.subscribe();
        bus.notify("job-a");
        assert!(woken(&mut a)
            .await
            .is_some_and(|w| w.stored && w.live.is_empty()));
        assert!(woken(&mut a2).await.is_some_and(|w| w.stored));
        assert!(woken(&mut b).await.is_none(), "job B's watcher was woken");
        assert!(woken(&mut a).await.is_none(), "one notify wakes once");
        assert!(tokio::time::timeout(Duration::ZERO, all.wait())
            .await
            .is_ok());
        // Several notifies before the watcher looks again are one wake-up.
        bus.notify("job-b");
        bus.notify("job-b");
        assert!(woken(&mut b).await.is_some_and(|w| w.stored));
        assert!(woken(&mut b).await.is_none());
        assert!(woken(&mut a).await.is_none());
    }

    #[tokio::test]
    async fn live_events_reach_the_watchers_of_their_job_in_order() {
        let bus = EventBus::new();
        let mut a = bus.watch_job("job-a");
        let mut b = bus.watch_job("job-b");
        bus.publish("job-a", queue(3));
        bus.publish("job-a", queue(2));
        let w = woken(&mut a).await.expect("woken");
        assert!(!w.stored, "a live event is not a stored one");
        let positions: Vec<u32> = w
            .live
            .iter()
            .filter_map(|e| match &e.event {
                Some(pb::job_event::Event::Queue(q)) => Some(q.position),
                _ => None,
            })
            .collect();
        assert_eq!(positions, [3, 2]);
        assert!(woken(&mut b).await.is_none());
        // Already delivered events are not delivered again.
        bus.notify("job-a");
        assert!(woken(&mut a)
            .await
            .is_some_and(|w| w.stored && w.live.is_empty()));
        // A watcher that joins later sees only what comes after it.
        let mut late = bus.watch_job("job-a");
        bus.publish("job-a", queue(1));
        assert_eq!(woken(&mut late).await.map(|w| w.live.len()), Some(1));
    }

    #[tokio::test]
    async fn a_job_is_forgotten_with_its_last_watcher() {
        let bus = EventBus::new();
        let a = bus.watch_job("job-a");
        let a2 = bus.watch_job("job-a");
        let b = bus.watch_job("job-b");
        assert_eq!(bus.watched_jobs(), 2);
        drop(a);
        assert_eq!(bus.watched_jobs(), 2);
        drop(a2);
        assert_eq!(bus.watched_jobs(), 1);
        // Nobody watches job A: its live events go nowhere.
        bus.publish("job-a", queue(1));
        drop(b);
        assert_eq!(bus.watched_jobs(), 0);
    }

    #[tokio::test]
    async fn notify_all_wakes_every_watcher() {
        let bus = EventBus::new();
        let mut a = bus.watch_job("job-a");
        let mut b = bus.watch_job("job-b");
        bus.notify_all();
        assert!(woken(&mut a).await.is_some_and(|w| w.stored));
        assert!(woken(&mut b).await.is_some_and(|w| w.stored));
    }
}
