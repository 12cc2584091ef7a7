//! A DataFusion table over exactly the files the commit log names, with the Hive
//! partition column `dt` supplied from the log rather than discovered from the path.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableType};
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
                let abs = warehouse.abs(&f.path);
                let loc = abs.to_string_lossy().trim_start_matches('/').to_string();
                PartitionedFile::new(loc, f.bytes)
                    .with_partition_values(vec![ScalarValue::Utf8(Some(f.dt.clone()))])
            })
            .collect();
        CommittedTable {
            table_schema: Self::with_dt(&file_schema),
            file_schema,
            files,
        }
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

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
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
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(self.files.len())];
        for (i, f) in self.files.iter().enumerate() {
            let n = groups.len();
            groups[i % n].push(f.clone());
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
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
