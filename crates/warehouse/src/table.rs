//! A DataFusion table over exactly the files the commit log names, with the Hive
//! partition column `dt` supplied from the log rather than discovered from the path.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{Result, ScalarValue};
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

use crate::{FileAdd, Warehouse};

/// A committed table: file schema + `dt`, and the log's file list.
#[derive(Debug)]
pub struct CommittedTable {
    file_schema: SchemaRef,
    table_schema: SchemaRef,
    files: Vec<PartitionedFile>,
}

impl CommittedTable {
    pub fn new(warehouse: &Warehouse, file_schema: SchemaRef, files: &[FileAdd]) -> Self {
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("dt", DataType::Utf8, false));
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
            file_schema,
            table_schema: Arc::new(Schema::new(fields)),
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
