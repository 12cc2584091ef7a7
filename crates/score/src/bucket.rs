//! `crmdq_bucket(record_id, n)`: which of `n` buckets a record id falls in, by a stable hash
//! (FNV-1a, 64-bit), so that the review pass can take the warehouse a bucket of records
//! at a time with every version of a record in one bucket. A NULL id is in bucket 0.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The bucket of `id` among `n` (n ≥ 1).
pub fn bucket_of(id: &str, n: u64) -> u64 {
    fnv1a(id.as_bytes()) % n.max(1)
}

/// FNV-1a, 64-bit, of `bytes`.
pub(crate) fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bucket {
    signature: Signature,
}

impl ScalarUDFImpl for Bucket {
    fn name(&self) -> &'static str {
        "crmdq_bucket"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if *n >= 1 => *n as u64,
            other => {
                return datafusion::common::exec_err!(
                    "crmdq_bucket: the bucket count must be a positive integer, got {other:?}"
                );
            }
        };
        let ids = args.args[0].clone().into_array(args.number_rows)?;
        let ids = arrow::compute::cast(&ids, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let out: Int64Array = (0..ids.len())
            .map(|i| {
                let b = if ids.is_valid(i) {
                    bucket_of(ids.value(i), n)
                } else {
                    0
                };
                Some(b as i64)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The UDF.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Bucket {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: a change of hash would move records between buckets (harmless for the
        // numbers, which do not depend on the buckets, but it should be deliberate).
        assert_eq!(bucket_of("C-1", 7), bucket_of("C-1", 7));
        assert_eq!(bucket_of("", 5), 0xcbf2_9ce4_8422_2325 % 5);
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            counts[bucket_of(&format!("C-{i}"), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        assert_eq!(bucket_of("anything", 1), 0);
    }
}
