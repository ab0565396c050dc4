//! Input rows as readers hand them to the index: a timestamp and the raw values of the fields the
//! schema needs, in the slots a [`RowLayout`] assigns.

use crate::schema::Schema;

/// A raw input value, typed as the input format typed it. Conversion to a dimension's type happens
/// in the index, so every reader treats values the same way.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    String(String),
    /// A list (JSON array, delimited multi-value, Parquet repeated field), elements as text.
    Strings(Vec<String>),
    Long(i64),
    Double(f64),
}

impl Value {
    /// Sets this slot to `text`, reusing the slot's string buffer when it has one.
    #[inline]
    pub fn set_str(&mut self, text: &str) {
        if let Value::String(s) = self {
            s.clear();
            s.push_str(text);
        } else {
            *self = Value::String(text.to_owned());
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// One parsed input row. `values[slot]` holds the field `RowLayout::fields[slot]`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InputRow {
    pub timestamp_ms: i64,
    pub values: Vec<Value>,
}

/// Which input fields a reader extracts, and where each lands in [`InputRow::values`]:
/// dimensions first (slot = dimension index), then metric input fields, then extra fields
/// (e.g. those a transform filter reads). A field used twice has one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLayout {
    pub fields: Vec<String>,
    /// For each metric, the slot of its input field (`None` for `count`).
    pub metric_slots: Vec<Option<usize>>,
}

impl RowLayout {
    pub fn new(schema: &Schema, extra_fields: &[String]) -> RowLayout {
        let mut fields: Vec<String> = schema.dimensions.iter().map(|d| d.name.clone()).collect();
        let slot_of =
            |name: &str, fields: &mut Vec<String>| match fields.iter().position(|f| f == name) {
                Some(i) => i,
                None => {
                    fields.push(name.to_owned());
                    fields.len() - 1
                }
            };
        let metric_slots = schema
            .metrics
            .iter()
            .map(|m| m.field_name.as_deref().map(|f| slot_of(f, &mut fields)))
            .collect();
        for extra in extra_fields {
            slot_of(extra, &mut fields);
        }
        RowLayout {
            fields,
            metric_slots,
        }
    }

    pub fn slot(&self, field: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == field)
    }

    /// An empty row with one `Null` per slot, for readers to fill and reuse.
    pub fn empty_row(&self) -> InputRow {
        InputRow {
            timestamp_ms: 0,
            values: vec![Value::Null; self.fields.len()],
        }
    }
}
