//! Job events as JSON (the view of `atelier_views`): the `data:` of each Server-Sent Event, whose
//! `event:` is the `type` and whose `id:` is the `sequence`.

pub use atelier_views::event::{EventType, JobEvent};
