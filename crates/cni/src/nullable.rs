//! Go's `encoding/json` leaves a field at its zero value when the JSON has
//! `null`; serde rejects `null` for `Vec`/`String`. Configs written for the Go
//! plugins (and results they print) rely on that, so the spec types accept it.

use serde::{Deserialize, Deserializer};

/// Deserializes `null` as `T::default()`.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}
