# A database: 200,000 rows inserted into an SQLite file in transactions of 1,000, an index
# built, a scan, the file removed.
import os
import sqlite3
import sys
import tempfile

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
fd, path = tempfile.mkstemp(prefix="pcpemu-sqlite-")
os.close(fd)
db = sqlite3.connect(path)
db.execute("create table t (k integer, v text)")
for i in range(0, n, 1000):
    db.executemany("insert into t values (?, ?)", ((j, "x" * (j % 200)) for j in range(i, i + 1000)))
    db.commit()
db.execute("create index tk on t (k)")
db.execute("select count(*), sum(length(v)) from t").fetchone()
db.close()
os.unlink(path)
