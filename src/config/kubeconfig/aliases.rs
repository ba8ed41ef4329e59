//! YAML aliases, bounded: a document whose aliases repeat an anchored node (`&big`, then `*big` two
//! thousand times) expands to far more than its own size when parsed. Before a kubeconfig is parsed for
//! real, its expansion is walked without keeping anything, and refused once its text outgrows the file.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// How much text a kubeconfig of `len` bytes may expand to: twice its size (escapes can make a little
/// more text than they take) and a megabyte.
pub(super) fn budget(len: usize) -> u64 {
    2 * len as u64 + 1024 * 1024
}

/// Walk `text` as YAML, counting the bytes of every scalar and key as the parser hands them out (an
/// alias hands its anchor's out again), and fail once they pass `budget`. Nothing is kept, so the walk
/// costs no more memory than the document itself.
pub(super) fn check_expansion(text: &str, budget: u64) -> Result<(), String> {
    let mut left = budget;
    let mut de = serde_yaml::Deserializer::from_str(text);
    // Only the first document is read, as the parse that follows reads it.
    if let Some(doc) = de.next() {
        de::DeserializeSeed::deserialize(Walk { left: &mut left }, doc)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct Walk<'a> {
    left: &'a mut u64,
}

const TOO_BIG: &str =
    "its aliases expand it to much more text than the file holds (a YAML alias bomb?)";

impl<'de> de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Walk<'_> {
    fn spend<E: de::Error>(&mut self, n: usize) -> Result<(), E> {
        let n = n as u64 + 1;
        if n > *self.left {
            return Err(E::custom(TOO_BIG));
        }
        *self.left -= n;
        Ok(())
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        self.spend(s.len())
    }
    fn visit_bytes<E: de::Error>(mut self, b: &[u8]) -> Result<(), E> {
        self.spend(b.len())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk { left: self.left })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Walk { left: self.left })?.is_some() {
            map.next_value_seed(Walk { left: self.left })?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag value`): its value counts like any other.
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, Walk { left: self.left })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_pass_and_alias_bombs_do_not() {
        let plain = "a: [1, 2, {b: c}]\nd: !tag {e: f}\n";
        assert!(check_expansion(plain, budget(plain.len())).is_ok());
        let reuse = "x: &x {k: v}\ny: *x\nz: *x\n";
        assert!(check_expansion(reuse, budget(reuse.len())).is_ok());
        let big = "y".repeat(200_000);
        let mut bomb = format!("a: &a {big}\nlist:\n");
        for _ in 0..2000 {
            bomb.push_str("- *a\n");
        }
        let err = check_expansion(&bomb, budget(bomb.len())).unwrap_err();
        assert!(err.contains("alias"), "{err}");
    }
}
