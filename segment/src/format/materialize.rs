//! Full materialization of a segment back into [`SegmentColumns`]: for merges (which re-apply
//! roll-up over several segments) and tests. Verifies the whole file first, so corrupt data is
//! never carried into a new segment.

use super::{DimensionReader, MetricReader, Segment, StringColumn};
use crate::columns::{
    DimensionColumn, DimensionData, MetricColumn, MetricData, SegmentColumns, StringRows,
};
use crate::error::{Result, SegmentError};

impl Segment {
    /// Materializes every column (after verifying the whole file): for merges and tests.
    pub fn to_columns(&self) -> Result<SegmentColumns> {
        self.verify()?;
        let mut out = SegmentColumns {
            time: self.time()?.to_vec(),
            dimensions: Vec::with_capacity(self.meta().schema.dimensions.len()),
            metrics: Vec::with_capacity(self.meta().schema.metrics.len()),
        };
        for dim in &self.meta().schema.dimensions {
            let reader = self
                .dimension(&dim.name)?
                .ok_or_else(|| SegmentError::Schema(format!("dimension {} vanished", dim.name)))?;
            let data = match reader {
                DimensionReader::String(column) => {
                    let (dictionary, rows) = materialize_strings(&column)?;
                    DimensionData::String { dictionary, rows }
                }
                DimensionReader::Long { values, nulls } => DimensionData::Long {
                    values: values.to_vec(),
                    nulls: nulls.clone(),
                },
                DimensionReader::Double { values, nulls } => DimensionData::Double {
                    values: values.to_vec(),
                    nulls: nulls.clone(),
                },
            };
            out.dimensions.push(DimensionColumn {
                name: dim.name.clone(),
                data,
            });
        }
        for metric in &self.meta().schema.metrics {
            let reader = self
                .metric(&metric.name)?
                .ok_or_else(|| SegmentError::Schema(format!("metric {} vanished", metric.name)))?;
            let data = match reader {
                MetricReader::Long(values) => MetricData::Long(values.to_vec()),
                MetricReader::Double(values) => MetricData::Double(values.to_vec()),
                MetricReader::Sketch(values) => {
                    let mut rows = Vec::with_capacity(values.len());
                    values.for_each(|_, bytes| rows.push(bytes.to_vec()));
                    MetricData::Sketch(rows)
                }
            };
            out.metrics.push(MetricColumn {
                name: metric.name.clone(),
                kind: metric.kind,
                data,
            });
        }
        Ok(out)
    }
}

fn materialize_strings(column: &StringColumn<'_>) -> Result<(Vec<Option<String>>, StringRows)> {
    let mut dictionary = Vec::with_capacity(column.dictionary_len());
    column.for_each_value(|_, value| dictionary.push(value.map(str::to_string)))?;
    let rows = if column.is_multi_value() {
        let mut offsets = Vec::with_capacity(column.num_rows() + 1);
        let mut ids = Vec::new();
        offsets.push(0u32);
        column.for_each_row(|_, row| {
            ids.extend_from_slice(row);
            offsets.push(ids.len() as u32);
        });
        StringRows::Multi { offsets, ids }
    } else {
        let mut ids = vec![0u32; column.num_rows()];
        column.decode_ids(0, &mut ids)?;
        StringRows::Single(ids)
    };
    Ok((dictionary, rows))
}
