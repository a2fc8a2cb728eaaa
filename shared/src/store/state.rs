//! What the store of `serve` holds, and the changes to it: kept in memory by
//! [`super::memory::MemoryStore`] and, for a durable store, committed to the file by
//! [`super::file::FileJournal`] before they are applied.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{TokenRecord, Usage};
use crate::event::{Delivery, DeliveryKey, Event, Millis};

#[derive(Default)]
pub(super) struct State {
    pub(super) events: HashMap<String, Event>,
    pub(super) deliveries: BTreeMap<DeliveryKey, Delivery>,
    pub(super) tokens: HashMap<String, TokenSlot>,
    pub(super) links: HashMap<(String, String), DeliveryKey>,
    pub(super) cache: HashMap<String, (String, Millis)>,
    /// By (name, period).
    pub(super) usage: BTreeMap<(String, String), Usage>,
    /// By name: the current window and the places taken in it. Not journaled: one process
    /// is the whole fleet of `serve`, and a restart starts a new window anyway.
    pub(super) rates: HashMap<String, (i64, u32)>,
    /// By name: the highest mark taken. Not journaled, for the same reason.
    pub(super) marks: HashMap<String, i64>,
}

/// A token item: the token, and the refresh lease (owner, held until).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct TokenSlot {
    pub(super) token: Option<TokenRecord>,
    pub(super) lease: Option<(String, Millis)>,
}

/// One change to commit before it is applied.
pub(super) enum Change<'a> {
    Event(&'a Event),
    Delivery(&'a Delivery),
    Token(&'a str, &'a TokenSlot),
    Link(&'a str, &'a str, &'a DeliveryKey),
    Cache(&'a str, Option<&'a (String, Millis)>),
    /// Retention: an event, or a delivery, or a link, gone.
    DropEvent(&'a str),
    DropDelivery(&'a DeliveryKey),
    DropLink(&'a str, &'a str),
    Usage(&'a Usage),
}
