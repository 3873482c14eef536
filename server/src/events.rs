//! The live events hub: what derivation produces for a person (a new notification), handed to
//! their open `/ws/events` connections (`http/events.rs`) as soon as the derivation is committed.
//! In-process and best-effort by design: what a connection misses (it was closed, or too slow)
//! is in the store, where the REST API lists it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Events a connection may fall behind by before it is told to catch up over REST.
const BACKLOG: usize = 256;

/// Something that happened for one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Notification `id` was created for them.
    Notification(i64),
}

/// Per person, the channel their live connections listen on. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Events {
    people: Arc<Mutex<HashMap<String, broadcast::Sender<Event>>>>,
}

impl Events {
    /// Listens for `user_id`'s events.
    pub fn subscribe(&self, user_id: &str) -> broadcast::Receiver<Event> {
        let mut people = self.people.lock().unwrap_or_else(|p| p.into_inner());
        people.entry(user_id.to_owned()).or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe()
    }

    /// Notifications `created` (row id, recipient) were committed.
    pub fn notified(&self, created: &[(i64, String)]) {
        let mut people = self.people.lock().unwrap_or_else(|p| p.into_inner());
        for (id, user) in created {
            if let Some(sender) = people.get(user)
                && sender.send(Event::Notification(*id)).is_err()
            {
                // Nobody listens any more.
                people.remove(user);
            }
        }
    }
}
