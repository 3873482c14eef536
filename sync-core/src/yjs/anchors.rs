//! Where every Yjs item sits — the type (and map key) it belongs to — and the rule that an item's
//! left and right origins lie in the place it is integrated into.
//!
//! A v1 update names an item's parent only when the item has no origins; otherwise yrs (like Yjs)
//! takes the parent from the left origin, or the right one. An update whose item has its left
//! origin in one list and its right origin in another (a text and an array, say) integrates
//! without an error and links the two lists into each other: the document still encodes and
//! loads, but every later edit of either type can panic, on the relay and on every client that
//! received it (found by fuzzing the relay; yrs 0.28). Honest editors always take both origins
//! from neighbours in one list, so [`Anchors::check`] refuses such an update before it is applied.
//! It refuses, too, an item with one collected and one live neighbour: yrs places it by the live
//! one alone, and a document loaded from the replica's state then places later edits beside it
//! differently (found by fuzzing too); and a map entry with a right origin, which honest map
//! writes never have and after which the replica and a document loaded from it pick different
//! values for the key (found by fuzzing; Yjs in JavaScript diverges the same way).
//!
//! yrs does not expose an item's parent, so [`Anchors`] keeps its own index: for each client, runs
//! of clocks and the place their items went, appended as updates are applied (consecutive items in
//! one place share a run, so an editing session costs one entry). [`super::scan`] reads an
//! update's items.

use std::collections::HashMap;

use yrs::block::{ClientID, ID};

use super::scan::{Kind, Place, Struct};

/// A run of one client's clocks whose items went to one place.
#[derive(Clone, Debug)]
struct Run {
    start: u32,
    end: u32,
    place: Place,
}

/// The place of every item a replica holds. See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Anchors {
    runs: HashMap<ClientID, Vec<Run>>,
}

/// The places an update's new structs go to, worked out by [`Anchors::check`], for
/// [`Anchors::record`] once the update is applied.
#[derive(Debug)]
pub(crate) struct Placed(Vec<(ID, u32, Place)>);

/// A part of an update the replica does not have yet, while [`Anchors::check`] places it.
struct New {
    id: ID,
    len: u32,
    /// Left and right origin, which place the item.
    origins: [Option<ID>; 2],
    /// What the part is linked between: its origins, or (continuing a known item) that item's
    /// last clock and its right origin.
    linked: [Option<ID>; 2],
    place: Option<Place>,
}

impl Anchors {
    /// Where the item with clock `id` went, if the replica holds it.
    fn place_of(&self, id: &ID) -> Option<&Place> {
        let runs = self.runs.get(&id.client)?;
        let index = runs.partition_point(|run| run.end <= id.clock);
        runs.get(index).filter(|run| run.start <= id.clock).map(|run| &run.place)
    }

    fn end(&self, client: &ClientID) -> u32 {
        self.runs.get(client).and_then(|runs| runs.last()).map_or(0, |run| run.end)
    }

    /// Works out where each of `structs`' new items goes and checks that its origins lie there.
    ///
    /// # Errors
    /// A description of the first item whose origins lie in two places, or of an origin nobody has
    /// (the update would then not integrate completely).
    pub(crate) fn check(&self, structs: &[Struct]) -> Result<Placed, String> {
        // The parts of the update the replica does not have yet (yrs keeps what it has). yrs
        // places an item by its own origins (or its named parent); a part that continues a known
        // item is then linked after that item's last clock, which must lie in the same place.
        let mut new: Vec<New> = Vec::new();
        for s in structs {
            let known = self.end(&s.id.client);
            let end = s.id.clock.saturating_add(s.len);
            if end <= known {
                continue;
            }
            let start = s.id.clock.max(known);
            let (origins, linked, place) = match &s.kind {
                Kind::Collected => ([None, None], [None, None], Some(Place::Collected)),
                Kind::Item { origin, right_origin, place } => {
                    let left =
                        if start > s.id.clock { Some(ID::new(s.id.client, start - 1)) } else { *origin };
                    ([*origin, *right_origin], [left, *right_origin], place.clone())
                }
            };
            new.push(New { id: ID::new(s.id.client, start), len: end - start, origins, linked, place });
        }
        let mut by_client: HashMap<ClientID, Vec<usize>> = HashMap::new();
        for (index, part) in new.iter().enumerate() {
            by_client.entry(part.id.client).or_default().push(index);
        }
        // Where the item holding `id` is: the replica's, or one of the update's new parts.
        let lookup = |new: &[New], id: &ID| -> Option<Place> {
            if let Some(place) = self.place_of(id) {
                return Some(place.clone());
            }
            by_client
                .get(&id.client)?
                .iter()
                .map(|&i| &new[i])
                .find(|part| part.id.clock <= id.clock && id.clock - part.id.clock < part.len)
                .and_then(|part| part.place.clone())
        };
        // Items may name origins later in the update (another client's): resolve until no change.
        // Like yrs: collected if either origin is, else the left origin's place, else the right's.
        loop {
            let mut progress = false;
            for index in 0..new.len() {
                if new[index].place.is_some() {
                    continue;
                }
                let [origin, right_origin] = new[index].origins;
                let left = origin.and_then(|id| lookup(&new, &id));
                let right = right_origin.and_then(|id| lookup(&new, &id));
                let place = match (left, right) {
                    (Some(Place::Collected), _) | (_, Some(Place::Collected)) => Some(Place::Collected),
                    (Some(place), Some(_)) => Some(place),
                    (Some(place), None) if right_origin.is_none() => Some(place),
                    (None, Some(place)) if origin.is_none() => Some(place),
                    _ => None,
                };
                if place.is_some() {
                    new[index].place = place;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        let mut placed = Vec::with_capacity(new.len());
        for part in &new {
            let name = || format!("{}#{}", part.id.client, part.id.clock);
            let Some(place) = &part.place else {
                return Err(format!("its item {} refers to content this replica does not have", name()));
            };
            // yrs links an item to a collected neighbour as if it had none there, and takes its
            // place from the other one; the item then sits in a live list without the left (or
            // right) neighbour it names, and where it lands depends on what else that list holds
            // when it arrives: the replica and a document loaded from its state disagree after
            // the next concurrent edit there. Honest neighbours are collected together (yrs
            // collects every item of a deleted type), so one collected and one live is refused.
            let sides: Vec<Option<Place>> = part.linked.iter().flatten().map(|id| lookup(&new, id)).collect();
            let collected = sides.contains(&Some(Place::Collected));
            if collected && sides.iter().any(|side| matches!(side, Some(Place::In { .. }))) {
                return Err(format!("its item {} lies between collected content and a live type", name()));
            }
            // A map entry is written with its key's current value as its left origin and nothing
            // to its right (Yjs's and yrs's map set; an undone entry is redone the same way). One
            // with a right origin sits before a value of its key: yrs then deletes it or the value
            // depending on what else the key's list holds when it arrives, so the replica and a
            // document loaded from its state choose different values (and Yjs does the same).
            if matches!(place, Place::In { key: Some(_), .. }) && part.origins[1].is_some() {
                return Err(format!("its item {} is a map entry with a right origin", name()));
            }
            if *place != Place::Collected {
                for origin in part.linked.iter().flatten() {
                    match lookup(&new, origin) {
                        Some(Place::Collected) => {}
                        Some(at) if at == *place => {}
                        _ => {
                            return Err(format!(
                                "its item {} has origins in two different types or keys",
                                name()
                            ));
                        }
                    }
                }
            }
            placed.push((part.id, part.len, place.clone()));
        }
        Ok(Placed(placed))
    }

    /// Records where an applied update's new items went.
    pub(crate) fn record(&mut self, placed: Placed) {
        let mut placed = placed.0;
        placed.sort_by_key(|(id, _, _)| (id.client, id.clock));
        for (id, len, place) in placed {
            let runs = self.runs.entry(id.client).or_default();
            let end = runs.last().map_or(0, |run| run.end);
            // yrs integrates a client's structs in clock order from its state vector on.
            let start = id.clock.max(end);
            let stop = id.clock + len;
            if stop <= start {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.end == start && last.place == place => last.end = stop,
                _ => runs.push(Run { start, end: stop, place }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use yrs::encoding::write::Write;
    use yrs::updates::encoder::{Encoder, EncoderV1};
    use yrs::{Array, Doc, ReadTxn, StateVector, Text, Transact};

    use crate::yjs::YjsReplica;

    /// One string item `text` by `client` at `clock`, linked as given (a v1 update, empty delete set).
    fn item(
        client: u64,
        clock: u32,
        origins: [Option<(u64, u32)>; 2],
        parent: Option<&str>,
        text: &str,
    ) -> Vec<u8> {
        let mut e = EncoderV1::new();
        e.write_var(1u32);
        e.write_var(1u32);
        e.write_client(yrs::block::ClientID::new(client));
        e.write_var(clock);
        let [left, right] = origins;
        let info = 4
            | left.map_or(0, |_| crate::yjs::scan::HAS_ORIGIN)
            | right.map_or(0, |_| crate::yjs::scan::HAS_RIGHT_ORIGIN);
        e.write_info(info);
        if let Some((c, k)) = left {
            e.write_left_id(&yrs::ID::new(yrs::block::ClientID::new(c), k));
        }
        if let Some((c, k)) = right {
            e.write_right_id(&yrs::ID::new(yrs::block::ClientID::new(c), k));
        }
        if let Some(name) = parent {
            e.write_parent_info(true);
            e.write_string(name);
        }
        e.write_string(text);
        e.write_var(0u32);
        e.to_vec()
    }

    /// A replica holding text `t` = "ab" (client 1, clocks 0..2) and array `a` = [true] (client 2).
    fn text_and_array() -> YjsReplica {
        let one = Doc::with_client_id(1);
        one.get_or_insert_text("t").push(&mut one.transact_mut(), "ab");
        let two = Doc::with_client_id(2);
        two.get_or_insert_array("a").push_back(&mut two.transact_mut(), true);
        let mut replica = YjsReplica::new();
        for doc in [one, two] {
            let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
            replica.apply(YjsReplica::decode(&update).unwrap(), None).unwrap();
        }
        replica
    }

    #[test]
    fn an_honest_insert_between_neighbours_is_placed() {
        let mut replica = text_and_array();
        let update = item(3, 0, [Some((1, 0)), Some((1, 1))], None, "x");
        replica.apply(YjsReplica::decode(&update).unwrap(), None).unwrap();
        let text =
            replica.read(|doc| yrs::GetString::get_string(&doc.get_or_insert_text("t"), &doc.transact()));
        assert_eq!(text.unwrap(), "axb");
    }

    #[test]
    fn origins_in_two_types_are_refused_before_anything_is_applied() {
        let mut replica = text_and_array();
        let before = replica.state_vector().unwrap();
        let update = item(3, 0, [Some((1, 0)), Some((2, 0))], None, "x");
        let err = replica.apply(YjsReplica::decode(&update).unwrap(), None).unwrap_err();
        assert!(err.detail.contains("two different types"), "{err}");
        assert_eq!(replica.state_vector().unwrap(), before);
        replica.verify().unwrap();
    }

    #[test]
    fn a_forged_resend_whose_new_tail_would_follow_another_type_is_refused() {
        // Client 1 wrote "f" into the text, then `true` into the array: clocks 0 and 1.
        let one = Doc::with_client_id(1);
        one.get_or_insert_text("t").push(&mut one.transact_mut(), "f");
        one.get_or_insert_array("a").push_back(&mut one.transact_mut(), true);
        let mut replica = YjsReplica::new();
        let state = one.transact().encode_state_as_update_v1(&StateVector::default());
        replica.apply(YjsReplica::decode(&state).unwrap(), None).unwrap();
        // A forged five-clock item of client 1 in the text: its new tail (clocks 2..5) would be
        // linked after clock 1, which is in the array.
        let forged = item(1, 0, [None, None], Some("t"), "hello");
        let err = replica.apply(YjsReplica::decode(&forged).unwrap(), None).unwrap_err();
        assert!(err.detail.contains("two different types"), "{err}");
    }

    #[test]
    fn an_origin_nobody_has_is_refused() {
        let mut replica = text_and_array();
        let update = item(3, 0, [Some((9, 4)), None], None, "x");
        let err = replica.apply(YjsReplica::decode(&update).unwrap(), None).unwrap_err();
        assert!(err.detail.contains("does not have"), "{err}");
    }
}
