"""Read crmdq warehouse tables as an outside engine would: through their Delta logs only.

usage: delta_read.py OUT TABLE_DIR...

For each Delta table folder, writes OUT/<name>.deltalake.parquet (Python deltalake,
delta-rs's reader) and OUT/<name>.polars.parquet (Polars' read_delta), and prints one
JSON line per table: name, rows per reader, the table's Delta version and crmdq's
transaction version. The crmdq test compares the rows with what `crmdq sql` returns.
A TABLE_DIR may be an s3:// URL: both readers then take the standard AWS environment
variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), as crmdq does.
"""

import json
import os
import sys

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable

out = sys.argv[1]
for path in sys.argv[2:]:
    name = os.path.basename(path.rstrip("/"))
    dt = DeltaTable(path)
    t = dt.to_pyarrow_table()
    pq.write_table(t, os.path.join(out, f"{name}.deltalake.parquet"))
    p = pl.read_delta(path)
    p.write_parquet(os.path.join(out, f"{name}.polars.parquet"))
    print(
        json.dumps(
            {
                "table": name,
                "deltalake_rows": t.num_rows,
                "polars_rows": p.height,
                "version": dt.version(),
                "crmdq_txn": dt.transaction_version("crmdq"),
            }
        )
    )
# delta-rs's Python runtime may abort while the interpreter shuts down ("terminate called
# without an active exception", seen with S3 tables); everything is written by now.
sys.stdout.flush()
os._exit(0)
