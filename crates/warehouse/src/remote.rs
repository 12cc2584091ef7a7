//! Object-store warehouses: building the store for an `s3://`, `gs://` or `az://` URL, and
//! telling `deltalake` how to commit there.

use std::sync::{Arc, Once};

use deltalake_core::logstore::{
    LogStore, LogStoreFactory, StorageConfig, default_logstore, logstore_factories,
};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;

use crate::{Location, WarehouseError};

fn open_err(url: &str, message: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Open {
        path: url.into(),
        source: std::io::Error::other(message.to_string()),
    }
}

/// The warehouse's root URL (ending in `/`) and its storage from the top (the bucket or
/// container). Options are object_store's configuration keys; the standard environment
/// variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) fill in what they do not give.
pub(crate) fn stores(at: &Location) -> Result<(url::Url, Arc<dyn ObjectStore>), WarehouseError> {
    let Location::Url { url: text, options } = at else {
        return Err(open_err(&at.to_string(), "not an object-store URL"));
    };
    at.check().map_err(|m| open_err(text, m))?;
    let mut url = url::Url::parse(text).map_err(|e| open_err(text, e))?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let (scheme, _) =
        object_store::ObjectStoreScheme::parse(&url).map_err(|e| open_err(text, e))?;
    let bad_key =
        |k: &str, e: object_store::Error| open_err(text, format!("storage option `{k}`: {e}"));
    // Each cloud's builder: the URL, crmdq's retry bound, then the options given.
    macro_rules! build {
        ($builder:expr) => {{
            let mut b = $builder.with_url(url.as_str()).with_retry(retry());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| bad_key(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| open_err(text, e))?) as Arc<dyn ObjectStore>
        }};
    }
    let top = match scheme {
        object_store::ObjectStoreScheme::AmazonS3 => build!(AmazonS3Builder::from_env()),
        object_store::ObjectStoreScheme::GoogleCloudStorage => {
            build!(GoogleCloudStorageBuilder::from_env())
        }
        object_store::ObjectStoreScheme::MicrosoftAzure => {
            build!(MicrosoftAzureBuilder::from_env())
        }
        other => {
            return Err(open_err(
                text,
                format!("{other:?} is not an object store crmdq writes to"),
            ));
        }
    };
    register_log_stores();
    Ok((url, top))
}

/// How long one request is retried before its error reaches crmdq: 15 s (object_store's
/// default is up to 10 retries over 3 minutes). A longer outage is crmdq's to ride out —
/// `run` pauses consumption and probes with its own backoff — and a consumer blocked in one
/// request for minutes would miss its group's `max.poll.interval.ms`.
const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 6,
        retry_timeout: RETRY_TIMEOUT,
        ..Default::default()
    }
}

/// `deltalake`'s own log store, which commits a Delta version with a create-if-absent PUT
/// (`If-None-Match: *` on S3): what crmdq's commit log relies on too. `deltalake-core`
/// registers it for `file://` and `memory://` only (the cloud crates add locking
/// variants); crmdq hands it the store it built.
#[derive(Debug, Default)]
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &url::Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factories = logstore_factories();
        for scheme in crmdq_config::warehouse::URL_SCHEMES {
            if let Ok(u) = url::Url::parse(&format!("{scheme}://")) {
                factories
                    .entry(u)
                    .or_insert_with(|| Arc::new(ConditionalPutLogStores));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str, options: &[(&str, &str)]) -> Location {
        Location::Url {
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Every scheme crmdq documents builds its store from the URL and options (no request
    /// is made); the root URL ends in `/`; a key object_store does not know is named.
    #[test]
    fn each_cloud_builds_from_its_url_and_options() {
        let s3 = stores(&at(
            "s3://lake/crm/wh",
            &[("aws_region", "eu-west-1"), ("aws_skip_signature", "true")],
        ))
        .unwrap();
        assert_eq!(s3.0.as_str(), "s3://lake/crm/wh/");
        let gs = stores(&at("gs://lake/crm", &[("google_skip_signature", "true")])).unwrap();
        assert_eq!(gs.0.as_str(), "gs://lake/crm/");
        let az = stores(&at(
            "az://container/crm",
            &[
                ("azure_storage_account_name", "acct"),
                ("azure_skip_signature", "true"),
            ],
        ))
        .unwrap();
        assert_eq!(az.0.as_str(), "az://container/crm/");
        let e = stores(&at("s3://lake/wh", &[("aws_colour", "blue")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("aws_colour"), "{e}");
        let e = stores(&at("ftp://host/wh", &[])).unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
    }
}
