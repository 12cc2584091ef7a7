//! A DataFusion table over exactly the files the commit log names, with the Hive
//! partition column `dt` supplied from the log rather than discovered from the path.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::SessionContext;

use crate::{FileAdd, Snapshot, Warehouse, WarehouseError};

/// A committed table: file schema + `dt`, and the log's file list.
#[derive(Debug)]
pub struct CommittedTable {
    file_schema: SchemaRef,
    table_schema: SchemaRef,
    files: Vec<PartitionedFile>,
    /// Where the files are: the local file system, or an object store that the scan
    /// registers in the session under its URL.
    store_url: ObjectStoreUrl,
    store: Option<Arc<dyn object_store::ObjectStore>>,
}

impl CommittedTable {
    /// The table schema: the file schema plus `dt`.
    fn with_dt(file_schema: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("dt", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }

    pub fn new(warehouse: &Warehouse, file_schema: SchemaRef, files: &[FileAdd]) -> Self {
        let files = files
            .iter()
            .map(|f| {
                PartitionedFile::new(warehouse.scan_location(&f.path), f.bytes)
                    .with_partition_values(vec![ScalarValue::Utf8(Some(f.dt.clone()))])
            })
            .collect();
        let (store_url, store) = warehouse.scan_store();
        CommittedTable {
            table_schema: Self::with_dt(&file_schema),
            file_schema,
            files,
            store_url,
            store,
        }
    }
}

/// Whether `e` reads no column but `dt`.
fn on_dt_only(e: &Expr) -> bool {
    let cols = e.column_refs();
    !cols.is_empty() && cols.iter().all(|c| c.name == "dt")
}

impl CommittedTable {
    /// The files whose `dt` passes every filter on `dt` alone (all of them without one).
    fn pruned(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<&PartitionedFile>> {
        let Some(filter) = conjunction(filters.iter().filter(|f| on_dt_only(f)).cloned()) else {
            return Ok(self.files.iter().collect());
        };
        // The filter is evaluated once per distinct dt, on a one-column batch.
        let dt_schema = Arc::new(Schema::new(vec![Field::new("dt", DataType::Utf8, false)]));
        let df_schema = DFSchema::try_from(dt_schema.as_ref().clone())?;
        let filter = filter
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => Transformed::yes(Expr::Column(
                        datafusion::common::Column::new_unqualified(c.name),
                    )),
                    e => Transformed::no(e),
                })
            })?
            .data;
        let filter = state.create_physical_expr(filter, &df_schema)?;
        let dts: std::collections::BTreeSet<&str> = self.files.iter().filter_map(file_dt).collect();
        let dts: Vec<&str> = dts.into_iter().collect();
        let batch = arrow::array::RecordBatch::try_new(
            dt_schema,
            vec![Arc::new(arrow::array::StringArray::from(dts.clone()))],
        )?;
        let keep = filter.evaluate(&batch)?.into_array(batch.num_rows())?;
        let keep = keep
            .as_any()
            .downcast_ref::<arrow::array::BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("a dt filter is not boolean".into()))?;
        let kept: std::collections::HashSet<&str> = dts
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
            .map(|(_, d)| *d)
            .collect();
        Ok(self
            .files
            .iter()
            .filter(|f| file_dt(f).is_none_or(|d| kept.contains(d)))
            .collect())
    }
}

/// A file's `dt` partition value.
fn file_dt(f: &PartitionedFile) -> Option<&str> {
    match f.partition_values.first() {
        Some(ScalarValue::Utf8(Some(d))) => Some(d.as_str()),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for CommittedTable {
    fn schema(&self) -> SchemaRef {
        self.table_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on `dt` alone prune files by their partition value (the filter is still
    /// applied to the rows: `Inexact`).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if on_dt_only(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let files = self.pruned(state, filters)?;
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.table_schema.project(p)?),
                None => self.table_schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(vec![Arc::new(Field::new("dt", DataType::Utf8, false))])
            .build();
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        let source = ParquetSource::new(table_schema).with_table_parquet_options(options);
        let target = state.config_options().execution.target_partitions.max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len())];
        for (i, f) in files.into_iter().enumerate() {
            let n = groups.len();
            groups[i % n].push(f.clone());
        }
        if let Some(store) = &self.store {
            state
                .runtime_env()
                .register_object_store(self.store_url.as_ref(), Arc::clone(store));
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The warehouse's latest committed state, shared by long-running readers (`serve`):
/// each [`current`](LiveSnapshot::current) call folds in entries committed since the last
/// one, so a new commit becomes visible to the next query without a restart.
#[derive(Debug)]
pub struct LiveSnapshot {
    warehouse: Warehouse,
    snap: tokio::sync::Mutex<Arc<Snapshot>>,
}

impl LiveSnapshot {
    pub async fn open(warehouse: Warehouse) -> Result<Arc<LiveSnapshot>, WarehouseError> {
        let snap = warehouse.snapshot().await?;
        Ok(Arc::new(LiveSnapshot {
            warehouse,
            snap: tokio::sync::Mutex::new(Arc::new(snap)),
        }))
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The latest committed state: one folder listing when nothing changed; otherwise the
    /// new log entries only are read and folded into a copy.
    pub async fn current(&self) -> Result<Arc<Snapshot>, WarehouseError> {
        let mut guard = self.snap.lock().await;
        if self.warehouse.latest_version().await? > guard.version {
            let mut next = Snapshot::clone(&guard);
            self.warehouse.refresh(&mut next).await?;
            *guard = Arc::new(next);
        }
        Ok(guard.clone())
    }
}

/// A committed table whose file list is taken from the [`LiveSnapshot`] at each scan.
#[derive(Debug)]
pub struct LiveTable {
    live: Arc<LiveSnapshot>,
    name: String,
    file_schema: SchemaRef,
    table_schema: SchemaRef,
}

impl LiveTable {
    pub fn new(live: Arc<LiveSnapshot>, name: &str, file_schema: SchemaRef) -> Self {
        LiveTable {
            live,
            name: name.to_string(),
            table_schema: CommittedTable::with_dt(&file_schema),
            file_schema,
        }
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.table_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snap = self
            .live
            .current()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = CommittedTable::new(
            &self.live.warehouse,
            self.file_schema.clone(),
            snap.files_of(&self.name),
        );
        table.scan(state, projection, filters, limit).await
    }
}

/// Register `name` in `ctx` as the committed files of `files`.
pub fn register_table(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    name: &str,
    file_schema: SchemaRef,
    files: &[FileAdd],
) -> Result<()> {
    ctx.register_table(
        name,
        Arc::new(CommittedTable::new(warehouse, file_schema, files)),
    )?;
    Ok(())
}
